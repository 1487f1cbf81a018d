"""Where `codesearch index` writes: the enclosing index from a subdirectory, and an index folder that
git ignores by itself."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from codesearch.indexdir import GIT_IGNORE


def test_index_from_a_subdirectory_updates_the_enclosing_index(run, repo, monkeypatch):
    assert run("index", str(repo))[0] == 0
    (repo / "py" / "fresh.py").write_text("def freshly_added_helper():\n    return 1\n", encoding="utf-8")
    monkeypatch.chdir(repo / "py")
    code, out, err = run("index", "--json")
    assert code == 0, err
    assert not (repo / "py" / ".codesearch").exists()  # no second, nested index
    assert json.loads(out)["root"] == str(repo.resolve()) and json.loads(out)["files_changed"] == 1
    code, out, _ = run("query", "freshly added helper", "--root", str(repo), "--json", "--mode", "lexical")
    assert "freshly_added_helper" in out
    code, _, err = run("index", str(repo / "go"))
    assert code == 0 and f"updating the index of {repo.resolve()}" in err


def test_a_nested_repository_keeps_an_index_of_its_own(run, repo):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    assert run("index", str(repo))[0] == 0
    nested = repo / "vendored_tool"
    nested.mkdir()
    (nested / "tool.py").write_text("def tool():\n    return 2\n", encoding="utf-8")
    subprocess.run(["git", "init", "-q", str(nested)], check=True)
    assert run("index", str(nested))[0] == 0
    assert (nested / ".codesearch").is_dir()


def test_the_index_folder_is_ignored_by_git(run, repo):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    assert run("index", str(repo))[0] == 0
    assert (repo / ".codesearch" / GIT_IGNORE).read_text(encoding="utf-8").splitlines()[-1] == "*"
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=repo,
                            capture_output=True, text=True, check=True).stdout
    assert ".codesearch" not in status and "py/retry.py" in status
    os.unlink(repo / ".codesearch" / GIT_IGNORE)  # an index made before: it gains one on the next write
    assert run("index", str(repo))[0] == 0
    assert (repo / ".codesearch" / GIT_IGNORE).is_file()
