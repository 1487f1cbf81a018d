"""`codesearch index --dry-run` and the question before a big first index, as a user meets them."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from codesearch.chunking import chunk_text
from codesearch.cli import main
from codesearch.files import read_source, walk
from codesearch.indexer import walk_options
from codesearch.model import Encoder, ModelFolder
from codesearch.plan import LanguagePlan, plan_index
from conftest import SAMPLE_REPO


@pytest.fixture(scope="module")
def encoder(tiny_model) -> Encoder:
    return Encoder(ModelFolder.read(tiny_model), threads=1)


@pytest.fixture
def messy_repo(repo) -> Path:
    """The sample repository plus one file of each kind the walk passes over."""
    (repo / "blob.py").write_bytes(b"\x00\x01binary")
    (repo / ".gitignore").write_text("secret.py\n")
    (repo / "secret.py").write_text("def hidden():\n    return 1\n")
    (repo / "node_modules" / "left-pad").mkdir(parents=True)
    (repo / "node_modules" / "left-pad" / "index.js").write_text("function leftPad() {}\n")
    (repo / "package-lock.json").write_text("{}\n")
    return repo


def test_plan_counts_what_the_walk_and_the_chunker_give(repo, settings, encoder):
    plan = plan_index(repo, settings, encoder=encoder, sample_files=1000)
    expected: dict[str, Counter] = defaultdict(Counter)
    for file in walk(repo, **walk_options(settings)).files:
        text, _ = read_source(file)
        expected[file.language].update(
            files=1, bytes=file.size, functions=len(chunk_text(text, file.language, file.path).chunks)
        )
    assert plan.languages == {
        name: LanguagePlan(c["files"], c["bytes"], c["functions"]) for name, c in expected.items()
    }
    assert plan.estimate.functions == sum(c["functions"] for c in expected.values()) == 33
    assert plan.sampled_files == len(plan.files) == 12 and not plan.index_exists
    assert plan.estimate.functions_per_s > 0 and plan.estimate.seconds > 0 and plan.estimate.provider in ("CPU", "CUDA")
    assert "all 12 files" in plan.estimate.note
    assert plan.largest_dirs[0].path == "py/" and plan.largest_dirs[0].files == 2


def test_a_sample_is_scaled_by_size_and_spread_across_languages(tmp_path, repo, settings):
    (tmp_path / "same").mkdir()
    for n in range(30):  # 30 files of the same size, 2 functions each
        code = f"def a{n:02}():\n    return 1\n\ndef b{n:02}():\n    return 2\n"
        (tmp_path / "same" / f"m{n:02}.py").write_text(code)
    plan = plan_index(tmp_path / "same", settings, sample_files=10, measure=False)
    assert plan.sampled_files == 10 and plan.estimate.functions == 60

    first = plan_index(repo, settings, sample_files=3, measure=False)
    again = plan_index(repo, settings, sample_files=3, measure=False)
    assert first.sampled_files == 3 and first.languages == again.languages
    assert all(lang.functions > 0 for lang in first.languages.values())  # unsampled ones scaled too


def test_dry_run_json_lists_every_file_and_skip_and_writes_nothing(messy_repo, tiny_model):
    # A fresh interpreter, to see that a dry run never imports lancedb (it takes seconds).
    script = (
        "import sys; from codesearch.cli import main; code = main(sys.argv[1:]); "
        "print('lancedb imported' if 'lancedb' in sys.modules else 'no lancedb', file=sys.stderr); sys.exit(code)"
    )
    env = {**os.environ, "CODESEARCH_MODEL": str(tiny_model), "CODESEARCH_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", script, "index", str(messy_repo), "--dry-run", "--json"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0 and proc.stderr.strip() == "no lancedb"
    plan = json.loads(proc.stdout)
    walked = walk(messy_repo)
    assert plan["files"] == [{"path": f.path, "language": f.language, "bytes": f.size} for f in walked.files]
    assert {row["path"]: row["reason"] for row in plan["skipped"]} == {
        "blob.py": "binary", "secret.py": "ignored", "node_modules/": "vendored/build dir",
        "package-lock.json": "lock file",
    }
    assert plan["skipped_counts"] == {"binary": 1, "ignored": 1, "vendored/build dir": 1, "lock file": 1}
    python_bytes = sum(f.size for f in walked.files if f.language == "python")
    assert plan["languages"]["python"] == {"files": 2, "bytes": python_bytes, "functions": 9}
    assert plan["root"] == str(messy_repo.resolve()) and plan["index_exists"] is False
    assert {"path", "files", "bytes"} == plan["largest_dirs"][0].keys()
    estimate = plan["estimate"]
    assert estimate["functions"] == 33 and estimate["functions_per_s"] > 0 and estimate["seconds"] > 0
    assert not (messy_repo / ".codesearch").exists()


def test_dry_run_prints_a_table_by_language(messy_repo, run):
    code, out, err = run("index", str(messy_repo), "--dry-run")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == f"{messy_repo.resolve()}: no index yet"
    assert lines[1].split() == ["language", "files", "size", "est.", "functions"]
    assert next(line for line in lines if line.startswith("python")).split()[1:2] == ["2"]
    assert next(line for line in lines if line.startswith("total")).split()[1] == "12"
    skipped = next(line for line in lines if line.startswith("skipped: ")).removeprefix("skipped: ")
    assert set(skipped.split(", ")) == {"1 binary", "1 ignored", "1 lock file", "1 vendored/build dir"}
    assert "largest directories:" in out and "  py/" in out
    assert "estimate: ~33 functions, about " in out and "functions/s measured on " in out
    assert not (messy_repo / ".codesearch").exists()


@pytest.mark.parametrize("json_output", [True, False])
def test_without_a_model_the_time_is_unknown_and_the_dry_run_still_works(repo, run, monkeypatch, json_output):
    monkeypatch.setenv("CODESEARCH_MODEL", str(repo / "no-such-model"))
    code, out, err = run("index", str(repo), "--dry-run", *(["--json"] if json_output else []))
    assert code == 0 and err == ""
    if json_output:
        estimate = json.loads(out)["estimate"]
        assert estimate["functions"] == 33 and estimate["seconds"] is None and estimate["functions_per_s"] is None
        assert "time unknown" in estimate["note"] and "not a codesearch model folder" in estimate["note"]
    else:
        assert "estimate: ~33 functions; time unknown: not a codesearch model folder" in out


def test_tracked_only_plans_just_what_git_tracks(repo, run):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "py"], check=True)
    code, out, _ = run("index", str(repo), "--dry-run", "--json", "--tracked-only")
    plan = json.loads(out)
    assert code == 0 and {f["path"] for f in plan["files"]} == {"py/jsonutil.py", "py/retry.py"}
    assert plan["skipped_counts"]["untracked"] == 10


# --- the question before a big first index, in a real terminal -----------------------------------------


def _in_terminal(argv: list[str], env: dict, answer: bytes | None = None, stdin_is_terminal: bool = True):
    """Run the CLI with stdout and stderr (and stdin) on a pseudo-terminal, typing `answer` (or
    pressing Ctrl-C for b"^C") when it asks; returns the exit code and everything the terminal showed."""
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "codesearch", *argv], env=env,
        stdin=slave if stdin_is_terminal else subprocess.DEVNULL, stdout=slave, stderr=slave,
    )
    os.close(slave)
    shown, answered, deadline = b"", False, time.monotonic() + 300  # eight at once on a busy machine
    while True:
        if answer is not None and not answered and b"[y/N]" in shown:
            if answer == b"^C":
                proc.send_signal(signal.SIGINT)
            else:
                os.write(master, answer)
            answered = True
        ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            proc.kill()
            raise AssertionError(f"no end in sight; the terminal shows: {shown.decode(errors='replace')}")
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the process and its children closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    return proc.wait(timeout=30), shown.decode(errors="replace")


# Each run starts a fresh interpreter, and an indexing one imports lancedb (seconds): the runs are
# started all at once, each on its own copy of the sample repository, and the tests read their results.
TERMINAL_RUNS = {
    # id: (extra argv, stdin is a terminal, extra environment, what is typed at the question)
    "n": ([], True, {}, b"n\n"),
    "enter": ([], True, {}, b"\n"),
    "eof": ([], True, {}, b"\x04"),
    "ctrl-c": ([], True, {}, b"^C"),
    "y": ([], True, {}, b"y\n"),
    "--yes": (["--yes"], True, {}, None),
    "stdin-not-a-terminal": ([], False, {}, None),
    "under-the-threshold": ([], True, {"CODESEARCH_CONFIRM_ABOVE": "33"}, None),
}


@pytest.fixture(scope="module")
def terminal_runs(tiny_model, tmp_path_factory) -> dict[str, tuple[int, str, Path]]:
    """Every run of TERMINAL_RUNS: its exit code, what the terminal showed, and its repository."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR")}
    env.update(CODESEARCH_MODEL=str(tiny_model), CODESEARCH_THREADS="1", CODESEARCH_CONFIRM_ABOVE="1", COLUMNS="120")

    def one(name: str) -> tuple[int, str, Path]:
        argv, stdin_is_terminal, extra_env, answer = TERMINAL_RUNS[name]
        repo = shutil.copytree(SAMPLE_REPO, tmp_path_factory.mktemp("terminal") / "repo")
        code, shown = _in_terminal(["index", str(repo), *argv], {**env, **extra_env}, answer, stdin_is_terminal)
        return code, shown, repo

    # A shell that started this run in the background (`cmd &` without job control) leaves SIGINT
    # ignored, and an ignored signal stays ignored across exec: the "ctrl-c" child would never see its
    # Ctrl-C. A handled one is reset to the default at exec, so handle it while the children start.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with ThreadPoolExecutor(len(TERMINAL_RUNS)) as pool:
            return dict(zip(TERMINAL_RUNS, pool.map(one, TERMINAL_RUNS)))
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("name", ["n", "enter", "eof", "ctrl-c"])
def test_anything_but_yes_indexes_nothing(terminal_runs, name):
    code, shown, repo = terminal_runs[name]
    assert code == 1, shown
    assert "est. functions" in shown and "Index 12 files (~33 functions, about " in shown
    assert shown.rstrip().endswith("codesearch: nothing indexed") and "Traceback" not in shown
    assert not (repo / ".codesearch" / "meta.json").exists()


def test_yes_indexes(terminal_runs, run):
    code, shown, repo = terminal_runs["y"]
    assert code == 0 and "[y/N]" in shown and "indexed 12 files, 33 functions" in shown, shown
    code, out, _ = run("index", str(repo), "--dry-run", "--json")
    assert code == 0 and json.loads(out)["index_exists"] is True


@pytest.mark.parametrize("name", ["--yes", "stdin-not-a-terminal", "under-the-threshold"])
def test_no_question_without_need(terminal_runs, name):
    code, shown, repo = terminal_runs[name]
    assert code == 0 and "[y/N]" not in shown and "indexed 12 files, 33 functions" in shown, shown


# The child blocks SIGINT on its main thread, so the Ctrl-C lands on a helper thread while the main
# thread waits for input: Python has noted the signal, but no read() was interrupted. This is the state
# a Ctrl-C leaves when it arrives after the interpreter's last check and before readline's read().
_LATE_CTRL_C = """
import os, signal, threading, time
from codesearch.cli import _read_answer
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
def press():
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    time.sleep(0.3)
    os.kill(os.getpid(), signal.SIGINT)
threading.Thread(target=press, daemon=True).start()
try:
    _read_answer()
except KeyboardInterrupt:
    print("interrupted")
"""


def test_a_ctrl_c_that_misses_the_read_still_ends_the_question():
    read_end, write_end = os.pipe()  # stdin that never gets an answer
    try:
        done = subprocess.run([sys.executable, "-c", _LATE_CTRL_C], stdin=read_end, capture_output=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("the question still waits for an answer 30 s after Ctrl-C")
    finally:
        os.close(read_end)
        os.close(write_end)
    assert done.stdout.decode().strip() == "interrupted", done.stderr.decode()
