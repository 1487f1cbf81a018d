"""The Neovim client against the real server: a headless Neovim runs `:CodeSearch` and
`:CodeSearchSimilar` in a copy of the sample repository and the quickfix list is read back."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

NVIM = shutil.which("nvim")
PLUGIN = Path(__file__).parents[1] / "lsp" / "nvim"


def nvim_version() -> tuple[int, ...]:
    first = subprocess.run([NVIM, "--version"], capture_output=True, text=True, timeout=30).stdout.split("\n")[0]
    return tuple(int(part) for part in re.findall(r"\d+", first)[:2])  # "NVIM v0.7.2" -> (0, 7)


pytestmark = [
    pytest.mark.skipif(NVIM is None, reason="nvim is not installed (Debian/Ubuntu: apt-get install -y neovim)"),
    pytest.mark.skipif(NVIM is not None and nvim_version() < (0, 7), reason="the plugin needs Neovim 0.7 or newer"),
]

# What a user's init.lua would hold, with the server run by this interpreter.
INIT_LUA = """\
vim.opt.runtimepath:prepend({plugin})
require("codesearch").setup({{ cmd = {cmd}, init_options = {{ model = {model} }} }})
"""

# Open a file, run one command, wait for the quickfix list, write it out as JSON, quit.
RUN_LUA = """\
vim.cmd("edit " .. {file})
vim.api.nvim_win_set_cursor(0, {{ {line}, 4 }})
vim.cmd({command})
local filled = vim.wait({wait_ms}, function() return #vim.fn.getqflist() > 0 end, 100)
local items = {{}}
for _, item in ipairs(vim.fn.getqflist()) do
  table.insert(items, {{
    filename = vim.api.nvim_buf_get_name(item.bufnr), lnum = item.lnum, col = item.col, text = item.text,
  }})
end
local out = assert(io.open({out}, "w"))
out:write(vim.json.encode({{ filled = filled, items = items, messages = vim.fn.execute("messages") }}))
out:close()
vim.cmd("qall!")
"""


def lua_string(text: str) -> str:
    assert "]==]" not in text
    return f"[==[{text}]==]"


def lua_list(items: list[str]) -> str:
    return "{ " + ", ".join(lua_string(item) for item in items) + " }"


def run_nvim(tmp_path: Path, repo: Path, model: Path, file: str, line: int, command: str) -> dict:
    """Run `command` in a headless Neovim opened in `repo`; the quickfix list and messages it left."""
    init = tmp_path / "init.lua"
    init.write_text(INIT_LUA.format(
        plugin=lua_string(str(PLUGIN)),
        cmd=lua_list([sys.executable, "-m", "codesearch", "lsp"]),
        model=lua_string(str(model)),
    ))
    out = tmp_path / "quickfix.json"
    script = tmp_path / "run.lua"
    script.write_text(RUN_LUA.format(
        file=lua_string(file), line=line, command=lua_string(command), wait_ms=90_000, out=lua_string(str(out)),
    ))
    home = tmp_path / "home"  # Neovim's log, state and shada stay out of the real home
    env = {**os.environ, "CODESEARCH_THREADS": "1"}
    env.update({f"XDG_{kind}_HOME": str(home / kind.lower()) for kind in ("CONFIG", "DATA", "STATE", "CACHE")})
    result = subprocess.run(
        [NVIM, "--headless", "--clean", "-u", str(init), "-c", f"luafile {script}"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=150,
    )
    logs = "\n".join(path.read_text(errors="replace")[-4000:] for path in home.rglob("*.log"))
    assert out.is_file(), f"nvim exited {result.returncode}: {result.stderr[-2000:]}\n{logs}"
    report = json.loads(out.read_text())
    report["log"] = logs
    report["items"] = report["items"] or []  # vim.json writes an empty list as {}
    return report


def test_codesearch_fills_the_quickfix_list_best_hit_first(tmp_path, repo, tiny_model):
    report = run_nvim(tmp_path, repo, tiny_model, "py/jsonutil.py", 1, "CodeSearch parse json")
    assert report["filled"], report["messages"] + report["log"]
    first = report["items"][0]
    assert Path(first["filename"]) == repo / "py" / "jsonutil.py"
    assert (first["lnum"], first["col"]) == (6, 1)
    name, score = first["text"].split()
    assert name == "parse_json" and float(score) > 0


def test_codesearch_similar_lists_other_functions_for_the_one_under_the_cursor(tmp_path, repo, tiny_model):
    report = run_nvim(tmp_path, repo, tiny_model, "py/jsonutil.py", 7, "CodeSearchSimilar")
    assert report["filled"], report["messages"] + report["log"]
    locations = [(Path(item["filename"]), item["lnum"]) for item in report["items"]]
    assert all(path.is_relative_to(repo) and path.is_file() for path, _ in locations)
    assert (repo / "py" / "jsonutil.py", 6) not in locations  # the function itself is not its own clone
