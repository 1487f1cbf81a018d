"""The `codesearch` command as a user meets it: exit codes, stdout/stderr, `--json` parsed back."""

import json
import os
import subprocess
import sys

import pytest

from codesearch.cli import main


@pytest.fixture
def indexed(repo, run, monkeypatch):
    code, out, err = run("index", str(repo))
    assert code == 0, err
    monkeypatch.chdir(repo)
    return repo


def test_index_prints_a_summary(repo, run):
    code, out, err = run("index", str(repo))
    assert code == 0
    assert "indexed 12 files" in out and "chunks embedded" in out and "skipped: none" in out


def test_index_json_reports_skips_by_reason(repo, run):
    (repo / "blob.py").write_bytes(b"\x00\x01binary")
    (repo / "latin1.py").write_bytes("caf\xe9 = 1\n".encode("latin-1"))
    (repo / "broken.py").write_text("def ok():\n    return 1\n\ndef broken(:\n    pass\n")
    (repo / "huge.py").write_text("x = 1\n" * (10 * 1024 * 1024 // 6))
    (repo / "loop").symlink_to(repo, target_is_directory=True)
    (repo / "outside.py").symlink_to("/etc/hostname")
    code, out, err = run("index", str(repo), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["skipped"] == {
        "binary": 1, "not utf-8": 1, "too large": 1, "symlink": 1, "symlink outside root": 1,
    }
    reasons = {row["path"]: row["reason"] for row in report["skipped_paths"]}
    assert reasons["blob.py"] == "binary" and reasons["latin1.py"] == "not utf-8" and reasons["huge.py"] == "too large"
    assert report["syntax_errors"] == 1
    code, out, _ = run("query", "ok", "--root", str(repo), "--mode", "lexical", "--json")
    assert any(json.loads(line).get("name") == "ok" for line in out.splitlines())


def test_query_output_has_rank_score_location_name_and_snippet(indexed, run):
    code, out, err = run("query", "parse json", "--mode", "lexical", "-k", "2")
    assert code == 0
    first = out.splitlines()[0].split()
    assert first[0] == "1" and float(first[1]) > 0 and first[2] == "py/jsonutil.py:6" and first[3] == "parse_json"
    assert "def parse_json(text):" in out


def test_query_json_is_one_object_per_hit_and_a_summary(indexed, run):
    code, out, err = run("query", "parse json", "--json", "-k", "3", "--lang", "python")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and err == ""
    hits, summary = lines[:-1], lines[-1]
    assert len(hits) == 3 and all(h["type"] == "hit" and h["language"] == "python" for h in hits)
    assert {"rank", "score", "path", "line", "end_line", "name", "kind", "code"} <= hits[0].keys()
    assert summary["type"] == "summary" and summary["hits"] == 3 and summary["mode"] == "hybrid"


def test_no_hits_exits_1(indexed, run):
    code, out, err = run("query", "anything", "--path", "nowhere/*", "--json")
    assert code == 1
    assert json.loads(out.splitlines()[-1])["hits"] == 0


def test_similar_by_location_and_by_stdin(indexed, run, monkeypatch):
    code, out, err = run("similar", "py/jsonutil.py:7", "--json", "-k", "2")
    assert code == 0 and len(out.splitlines()) == 3
    assert json.loads(out.splitlines()[-1])["name"] == "parse_json"
    assert json.loads(out.splitlines()[-1])["mode"] == "hybrid"
    code, out, err = run("similar", "py/jsonutil.py:7", "--json", "-k", "2", "--mode", "semantic")
    assert code == 0 and -1.0 <= json.loads(out.splitlines()[0])["score"] <= 1.0
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO((indexed / "c" / "hash.c").read_text()))
    code, out, err = run("similar", "--code", "-", "-k", "1", "--json")
    assert code == 0 and json.loads(out.splitlines()[0])["name"] == "djb2_hash"


def test_status(indexed, run):
    code, out, err = run("status", "--json")
    status = json.loads(out)
    assert code == 0 and status["files"] == 12 and status["complete"] and status["stale_files"] == 0
    (indexed / "py" / "new.py").write_text("def fresh():\n    return 1\n")
    code, out, err = run("status")
    assert code == 0 and "1 files changed since" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["query", ""], "empty query"),
        (["query", "x", "-k", "0"], "k must be at least 1"),
        (["similar"], "give either PATH:LINE or --code"),
        (["similar", "py/jsonutil.py"], "expected PATH:LINE"),
        (["similar", "py/jsonutil.py:2"], "no indexed function at py/jsonutil.py:2"),
        (["query", "x", "--model", "/nonexistent"], "not a codesearch model folder"),
        (["index", "/nonexistent/dir"], "not a directory"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(indexed, run, argv, message):
    code, out, err = run(*argv)
    assert code == 2
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "the following arguments are required: COMMAND (see codesearch --help)"),
        (["query", "x", "--mode", "fuzzy"], "codesearch query: error: argument --mode: invalid choice: 'fuzzy'"),
        (["similar", "--code", "x", "--mode", "near"], "(see codesearch similar --help)"),
        (["query", "x", "-k", "ten"], "argument -k: invalid int value: 'ten'"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    out, err = capsys.readouterr()
    assert exited.value.code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "usage:" not in err


def test_query_without_an_index_is_a_clear_error(tmp_path, run, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run("query", "parse json")
    assert code == 2 and "no index" in err and "codesearch index" in err


def test_console_script_runs_and_survives_a_closed_pipe(indexed, tiny_model):
    env = {**os.environ, "CODESEARCH_MODEL": str(tiny_model)}
    proc = subprocess.run(
        f"{sys.executable} -m codesearch query 'value' -k 50 --mode lexical | head -1",
        shell=True, cwd=indexed, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.stdout.count("\n") == 1
    assert "Traceback" not in proc.stderr and "Error" not in proc.stderr
