"""What the CLI prints from a repository it does not trust (issue 24, items 7, 8 and 11).

File names, function names and code are data: text output prints them exactly as plain text (a file
named `[red]oops[/red].py` is not Rich markup), never lets their control characters reach the
terminal (they are shown escaped, on a terminal or not), and `--json` keeps them exact. Bad input is
one stderr line and exit 2, never taken for a damaged index.
"""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest

from codesearch.languages import LANGUAGES

FUNCTION = (
    "def helper_total(items):\n"
    '    """Sum twice each item; [bold]not markup[/bold] :smile:."""\n'
    "    total = 0\n"
    "    for item in items:\n"
    "        total += item * 2\n"
    "    return total\n"
)
# Names Rich would read as markup (`[/b]` closes a tag that is not open: MarkupError) or as an emoji code.
BRACKET_NAMES = ("x[b]y.py", "[br].py", "a[/b].py", "[red]oops[/red].py", ":smile:.py")
TICK_NAME = "tick`|pipe.py"  # a Markdown code span and table cell would end early on it


@pytest.fixture
def bracket_repo(tmp_path) -> Path:
    """A repository whose root and files have markup-like names, one copy of FUNCTION in each, and
    a binary file (skipped) with such a name."""
    root = tmp_path / "[w]ork"
    for name in (*BRACKET_NAMES, TICK_NAME):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(FUNCTION)
    (root / "[bin]ary.py").write_bytes(b"\x00\x01[/x]")
    return root


def test_every_text_command_prints_markup_like_names_exactly(bracket_repo, run, monkeypatch):
    """Item 7: `x[/]y`-style names crashed query, similar, clones and --dry-run with a MarkupError,
    and `[br].py` printed as `.py`."""
    locations = [f"{name}:1" for name in BRACKET_NAMES]

    def ok(*argv: str) -> str:
        """stdout and stderr of a command that must succeed."""
        code, out, err = run(*argv)
        assert code == 0 and "internal error" not in err and "Traceback" not in err, (argv, err)
        return out + err

    printed = ok("index", "--dry-run", "--show-skipped", str(bracket_repo))
    assert "  a[/" in printed and "  [red]oops[/" in printed and "  [bin]ary.py" in printed
    assert f"{bracket_repo}: no index yet" in printed
    assert "  [bin]ary.py" in ok("index", "--show-skipped", str(bracket_repo))
    monkeypatch.chdir(bracket_repo)
    printed = ok("query", "helper total", "-k", "10")
    assert all(location in printed for location in locations)
    assert "[bold]not markup[/bold] :smile:." in printed  # the snippet, as written
    printed = ok("similar", "x[b]y.py:2", "-k", "10")
    assert "similar to helper_total (x[b]y.py:1)" in printed
    assert all(location in printed for location in locations if not location.startswith("x[b]y"))
    assert all(location in ok("similar", "--code", FUNCTION, "-k", "10") for location in locations)
    printed = ok("clones", "--min-lines", "1")
    assert all(f"{name}:1-6" in printed for name in BRACKET_NAMES)
    printed = ok("clones", "--min-lines", "1", "--format", "markdown")
    assert all(f"| `{name}:1` |" in printed for name in BRACKET_NAMES)
    assert "| ``tick`\\|pipe.py:1`` |" in printed
    assert f"index:     {bracket_repo / '.codesearch'}" in ok("status")


# --- control characters ------------------------------------------------------------------------

CLIPBOARD = "\x1b]52;c;cHduZWQ=\x07"  # OSC 52: write "pwned" to the clipboard
HOSTILE_NAME = f"{CLIPBOARD}.py"
HOSTILE_CODE = (
    "def clip_board(value):\n"
    f'    banner = "{CLIPBOARD}\x1b[2J\x1b]0;title\x07\x9b31m"\n'
    "    total = value + 1\n"
    "    return banner, total\n"
)
# What Rich itself writes to a terminal: colours, and the progress bar's cursor hiding and line clearing.
RICH_SEQUENCES = re.compile(r"\x1b\[[0-9;]*m|\x1b\[\?25[lh]|\x1b\[2K|\x1b\[[0-9]*A")


@pytest.fixture
def hostile_repo(tmp_path, run) -> Path:
    """A repository with a file named with an OSC 52 clipboard write holding code full of escape
    sequences, an ordinary copy of it, a binary file (skipped) with a hostile name, and a file name
    holding a newline; indexed."""
    root = tmp_path / "hostile"
    root.mkdir()
    (root / HOSTILE_NAME).write_text(HOSTILE_CODE)
    (root / "plain.py").write_text(HOSTILE_CODE.replace("clip_board", "clip_other"))
    (root / f"bin{CLIPBOARD}.py").write_bytes(b"\x00\x01")
    (root / "new\nline.py").write_text("def newline_name():\n    return 1\n")
    code, _, err = run("index", str(root))
    assert code == 0, err
    return root


def on_terminal(argv: list[str], cwd: Path, model: Path) -> tuple[int, str]:
    """Run the real `codesearch` with stdout and stderr on a pseudo-terminal: (exit code, what the
    terminal received)."""
    master, slave = pty.openpty()
    env = {**os.environ, "CODESEARCH_MODEL": str(model), "CODESEARCH_THREADS": "1", "TERM": "xterm-256color",
           "COLUMNS": "200"}
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(name, None)
    proc = subprocess.Popen([sys.executable, "-m", "codesearch", *argv], cwd=cwd, env=env,
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    received = bytearray()
    try:
        while select.select([master], [], [], 300)[0]:  # a safety net against a hang, not a timing
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            received += data
    finally:
        os.close(master)
        code = proc.wait(timeout=60)
    return code, received.decode("utf-8", "replace")


def assert_nothing_reaches_the_terminal(screen: str) -> None:
    """After Rich's own colour and cursor sequences, no control character but line ends is left."""
    left = RICH_SEQUENCES.sub("", screen)
    assert not re.search(r"[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f]", left), repr(left)


def test_escape_sequences_from_the_repository_never_reach_a_terminal(hostile_repo, tiny_model):
    """Item 11: a file name with an OSC 52 clipboard write, and code that clears the screen and sets the
    title, reached the terminal raw through query, similar, clones, status and --show-skipped."""
    shown = r"\x1b]52;c;cHduZWQ=\x07"
    commands = [
        (["query", "clip board", "-k", "2"], [f"{shown}.py:1", r"\x1b[2J\x1b]0;title\x07\x9b31m"]),
        (["similar", f"{HOSTILE_NAME}:2", "-k", "1"], [f"similar to clip_board ({shown}.py:1)"]),
        (["clones", "--min-lines", "1", "--min-overlap", "0.1"], [f"{shown}.py:1-4"]),
        (["status"], ["hostile/.codesearch"]),
        (["index", ".", "--show-skipped"], [f"  bin{shown}.py"]),
        (["index", ".", "--dry-run", "--show-skipped"], [f"  bin{shown}.py"]),
    ]
    for argv, expected in commands:
        code, screen = on_terminal(argv, hostile_repo, tiny_model)
        assert code == 0, (argv, screen)
        assert_nothing_reaches_the_terminal(screen)
        plain = RICH_SEQUENCES.sub("", screen)
        assert all(text in plain for text in expected), (argv, plain)


def test_json_keeps_names_and_code_exact_on_a_terminal(hostile_repo, tiny_model):
    """Item 11: JSON is escaped by its own rules (no raw control bytes) and parses back to the exact text."""
    code, screen = on_terminal(["query", "clip board", "-k", "2", "--json"], hostile_repo, tiny_model)
    assert code == 0
    assert_nothing_reaches_the_terminal(screen)
    hits = [json.loads(line) for line in screen.splitlines() if line.strip()][:-1]
    hostile = next(hit for hit in hits if hit["name"] == "clip_board")
    assert hostile["path"] == HOSTILE_NAME and hostile["code"] == HOSTILE_CODE.rstrip("\n")
    code, screen = on_terminal(["clones", "--min-lines", "1", "--min-overlap", "0.1", "--format", "json"],
                               hostile_repo, tiny_model)
    assert code == 0
    paths = {m["path"] for g in json.loads(screen)["groups"] for m in g["members"]}
    assert HOSTILE_NAME in paths


def test_text_output_is_escaped_when_piped_too(hostile_repo, run, monkeypatch):
    """Item 11: text piped into `less -R` or `cat` reaches a terminal all the same, so text output is
    always escaped; errors that name a path are escaped as well."""
    monkeypatch.chdir(hostile_repo)
    code, out, err = run("query", "clip board", "-k", "2")
    assert code == 0 and "\x1b" not in out and "\x07" not in out
    assert r"\x1b]52;c;cHduZWQ=\x07.py:1" in out and r'banner = "\x1b]52' in out
    code, out, err = run("query", "newline name", "--mode", "lexical", "-k", "1")
    assert code == 0 and r"new\x0aline.py:1  newline_name" in out
    code, out, err = run("similar", f"{HOSTILE_NAME}:99")
    assert code == 2 and "\x1b" not in err and r"no indexed function at \x1b]52;c;cHduZWQ=\x07.py:99" in err
    code, out, err = run("clones", "--min-lines", "1", "--min-overlap", "0.1", "--format", "markdown")
    assert code == 0 and "\x1b" not in out and r"| `\x1b]52;c;cHduZWQ=\x07.py:1` |" in out


# --- bad input -----------------------------------------------------------------------------------


@pytest.fixture
def indexed(repo, run, monkeypatch) -> Path:
    code, out, err = run("index", str(repo))
    assert code == 0, err
    monkeypatch.chdir(repo)
    return repo


SUPPORTED = f"(supported: {', '.join(LANGUAGES)})"


@pytest.mark.parametrize(
    "argv, exit_code, message",
    [
        (["query", "x", "-k", "99999999999"], 2, "k must be at most 10,000 (got 99,999,999,999)"),
        (["query", "x", "-k", "10001"], 2, "k must be at most 10,000"),
        (["query", "x", "-k", "0"], 2, "k must be at least 1"),
        (["query", "x", "-k", "-5"], 2, "k must be at least 1"),
        (["similar", "--code", "def f(): pass", "-k", "99999999999"], 2, "k must be at most 10,000"),
        (["similar", "py/jsonutil.py:7", "-k", "0"], 2, "k must be at least 1"),
        (["similar", "py/jsonutil.py:99999999999"], 2, "line 99999999999 is out of range"),
        (["similar", "py/jsonutil.py:0"], 2, "line 0 is out of range"),
        (["similar", "py/jsonutil.py:-3"], 2, "expected PATH:LINE with a line number, got 'py/jsonutil.py:-3'"),
        (["similar", "py/jsonutil.py:seven"], 2, "expected PATH:LINE with a line number"),
        (["similar", "py/jsonutil.py:²"], 2, "expected PATH:LINE with a line number, got 'py/jsonutil.py:²'"),
        (["query", "x", "--path", "py/\udcff"], 2, r"path filter 'py/\udcff' is not valid UTF-8"),
        (["query", "x", "--lang", "python\udcff"], 2, r"language 'python\udcff' is not valid UTF-8"),
        (["query", "x", "--repo", "repo\udcff"], 2, r"repository name 'repo\udcff' is not valid UTF-8"),
        (["query", "parse \udcff"], 2, r"query 'parse \udcff' is not valid UTF-8"),
        (["similar", "--code", "def f(): \udcff"], 2, r"code 'def f(): \udcff' is not valid UTF-8"),
        (["similar", "py/\udcff.py:3"], 2, r"path 'py/\udcff.py' is not valid UTF-8"),
        (["similar", "py/jsonutil.py:7", "--path", "\udcff"], 2, "path filter"),
        (["query", "x", "--lang", "cobol"], 2, f"unknown language 'cobol' {SUPPORTED}"),
        (["query", "x", "--lang", "python", "--lang", "Python"], 2, f"unknown language 'Python' {SUPPORTED}"),
        (["similar", "--code", "x = 1", "--lang", "cobol"], 2, f"unknown language 'cobol' {SUPPORTED}"),
        (["clones", "--lang", "cobol"], 2, f"unknown language 'cobol' {SUPPORTED}"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_never_a_damaged_index(indexed, run, argv, exit_code, message):
    """Item 8 (CLI input): each of these used to say the index was damaged, crash, or find nothing."""
    code, out, err = run(*argv)
    assert (code, out) == (exit_code, "")
    assert err.count("\n") == 1 and message in err, err
    assert "damaged" not in err and "internal error" not in err and "Traceback" not in err


def test_non_utf8_arguments_from_a_real_command_line(indexed, tiny_model):
    """Item 8: argv bytes that are not UTF-8, as a shell passes them, are named in one line."""
    env = {**os.environ, "CODESEARCH_MODEL": str(tiny_model), "CODESEARCH_THREADS": "1"}
    for option in (b"--path", b"--lang", b"--repo"):
        proc = subprocess.run([sys.executable, "-m", "codesearch", "query", "x", option, b"caf\xe9"],
                              cwd=indexed, env=env, capture_output=True, timeout=300)
        err = proc.stderr.decode()
        assert proc.returncode == 2 and err.count("\n") == 1, err
        assert r"'caf\udce9' is not valid UTF-8" in err and "damaged" not in err


def test_code_on_stdin_that_is_not_utf8(indexed, run, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"def f():\n    return '\xff'\n"), "utf-8"))
    code, out, err = run("similar", "--code", "-")
    assert code == 2 and err.count("\n") == 1 and "stdin is not UTF-8 text" in err


@pytest.mark.parametrize(
    "option, value",
    [
        ("--path", "py/' OR '1'='1"),
        ("--path", "x' OR 1=1 --"),
        ("--path", "py\\' OR 1=1 --"),
        ("--path", "%"),
        ("--repo", "x' OR '1'='1"),
        ("--repo", "') OR ('1'='1"),
    ],
)
def test_filter_values_are_literals_not_sql(indexed, run, option, value):
    """Quotes in --path and --repo stay inside their SQL literal: they match nothing, find nothing."""
    code, out, _ = run("query", "parse json", "--mode", "lexical", "--json", "--path", "py/")
    assert code == 0 and {json.loads(line)["path"][:3] for line in out.splitlines()[:-1]} == {"py/"}
    code, out, err = run("query", "parse json", "--mode", "lexical", "--json", option, value)
    assert code == 1 and err == "" and json.loads(out)["hits"] == 0
