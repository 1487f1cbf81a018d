"""The walk against git itself where the repository reaches beyond the walk: rules above the root,
the global excludes file, nested repositories, `--tracked-only`; and the data formats left out."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from codesearch.errors import CodesearchError
from codesearch.files import walk
from tests.test_files import GIT_ENV, make_tree


def git(root: Path, *args: str, env: dict | None = None) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, env=env or GIT_ENV, capture_output=True, text=True
    ).stdout


def git_lists(root: Path, *options: str, env: dict | None = None) -> set[str]:
    """The .py paths `git ls-files` lists from `root` (relative to it, as the walk gives them)."""
    out = git(root, "ls-files", "-z", *(options or ("--others", "--cached", "--exclude-standard")), env=env)
    return {p for p in out.split("\0") if p.endswith(".py")}


def walked(root: Path, **options) -> set[str]:
    return {f.path for f in walk(root, **options).files}


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """Point git (ours and the test's) at a global config file the test may write to."""
    config = tmp_path / "gitconfig"
    config.write_text("")
    env = {**GIT_ENV, "GIT_CONFIG_GLOBAL": str(config), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    for name in ("GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM", "HOME", "XDG_CONFIG_HOME"):
        monkeypatch.setenv(name, env[name])
    return env, config


def test_rules_above_the_root_apply_as_git_applies_them(tmp_path, isolated):
    env, _ = isolated
    top = tmp_path / "top"
    git(tmp_path, "init", "-q", str(top), env=env)
    make_tree(top, {
        ".gitignore": "*.gen.py\nsrc/app/cache/\n/src/app/rooted.py\n",
        ".git/info/exclude": "local.py\n",
        "src/.gitignore": "app/drop.py\n!app/keep.gen.py\n",
        "src/app/a.py": "", "src/app/x.gen.py": "", "src/app/keep.gen.py": "", "src/app/drop.py": "",
        "src/app/cache/c.py": "", "src/app/rooted.py": "", "src/app/sub/rooted.py": "", "src/app/local.py": "",
    })
    root = top / "src" / "app"
    expected = {"a.py", "keep.gen.py", "sub/rooted.py"}
    assert git_lists(root, env=env) == expected
    assert walked(root) == expected


def test_the_global_excludes_file_is_read_configured_or_at_its_default_place(tmp_path, isolated):
    env, config = isolated
    git(tmp_path, "init", "-q", str(tmp_path / "repo"), env=env)
    root = make_tree(tmp_path / "repo", {"a.py": "", "scratch.py": "", "notes_local.py": "", "sub/scratch.py": ""})
    default = tmp_path / "xdg" / "git" / "ignore"
    default.parent.mkdir(parents=True)
    default.write_text("scratch.py\n")
    assert git_lists(root, env=env) == walked(root) == {"a.py", "notes_local.py"}
    configured = tmp_path / "my-excludes"
    configured.write_text("*_local.py\n")
    config.write_text(f"[core]\n\texcludesFile = {configured}\n")  # replaces the default place
    assert git_lists(root, env=env) == walked(root) == {"a.py", "scratch.py", "sub/scratch.py"}


def test_global_excludes_do_not_apply_outside_a_repository(tmp_path, isolated):
    default = tmp_path / "xdg" / "git" / "ignore"
    default.parent.mkdir(parents=True)
    default.write_text("*.py\n")
    root = make_tree(tmp_path / "plain", {"a.py": ""})
    assert walked(root) == {"a.py"}


def test_nested_repositories_are_left_out_and_counted(tmp_path, isolated):
    env, _ = isolated
    root = tmp_path / "repo"
    git(tmp_path, "init", "-q", str(root), env=env)
    # A .git file naming no repository does not make one, for git or for us.
    make_tree(root, {"a.py": "", "lib/b.py": "", "bogus/.git": "gitdir: /elsewhere\n", "bogus/c.py": ""})
    git(tmp_path, "init", "-q", str(root / "vendored_clone"), env=env)
    git(tmp_path, "init", "-q", f"--separate-git-dir={tmp_path / 'sub.git'}", str(root / "submodule"), env=env)
    make_tree(root, {"vendored_clone/d.py": "", "submodule/e.py": ""})
    assert (root / "submodule" / ".git").is_file()
    assert git_lists(root, env=env) == walked(root) == {"a.py", "lib/b.py", "bogus/c.py"}
    skipped = walk(root).skipped_paths
    assert ("vendored_clone/", "nested repository") in skipped and ("submodule/", "nested repository") in skipped


def test_a_tree_of_repositories_outside_git_is_walked_into(tmp_path, isolated):
    env, _ = isolated
    git(tmp_path, "init", "-q", str(tmp_path / "all" / "one"), env=env)
    make_tree(tmp_path / "all", {"one/a.py": "", "one/.gitignore": "b.py\n", "one/b.py": "", "two/c.py": ""})
    assert walked(tmp_path / "all") == {"one/a.py", "two/c.py"}


def test_tracked_only_lists_exactly_what_git_tracks(tmp_path, isolated):
    env, _ = isolated
    root = tmp_path / "repo"
    git(tmp_path, "init", "-q", str(root), env=env)
    make_tree(root, {
        ".gitignore": "forced.py\n", "a.py": "", "sub/b.py": "", "forced.py": "", "new.py": "",
        ".codesearchignore": "sub/skip.py\n", "sub/skip.py": "", "notes.txt": "",
    })
    git(root, "add", "a.py", "sub/b.py", "sub/skip.py", ".gitignore", env=env)
    git(root, "add", "-f", "forced.py", env=env)  # tracked although ignored: git lists it
    assert git_lists(root, "--cached", env=env) == {"a.py", "sub/b.py", "forced.py", "sub/skip.py"}
    result = walk(root, tracked_only=True)
    assert {f.path for f in result.files} == {"a.py", "sub/b.py", "forced.py"}  # .codesearchignore still applies
    assert ("new.py", "untracked") in result.skipped_paths
    assert walked(root / "sub", tracked_only=True) == {"b.py", "skip.py"}  # relative to it; .codesearchignore above it unread


def test_tracked_only_outside_git_is_a_clear_error(tmp_path, isolated):
    with pytest.raises(CodesearchError, match="not inside a git repository"):
        walk(make_tree(tmp_path / "plain", {"a.py": ""}), tracked_only=True)


@pytest.mark.parametrize("name", ["data.json", "events.jsonl", "config.yaml", "ci.yml", "table.csv", "t.tsv"])
def test_data_formats_are_counted_not_indexed(tmp_path, name):
    make_tree(tmp_path, {name: "{}\n", "a.py": ""})
    result = walk(tmp_path)
    assert [f.path for f in result.files] == ["a.py"]
    assert result.skipped_paths == [(name, "data format")]


def test_ignored_data_is_not_counted_as_data(tmp_path):
    make_tree(tmp_path, {".gitignore": "*.json\n", "x.json": "{}", "a.py": ""})
    assert walk(tmp_path).skipped_paths == []
    assert os.path.exists(tmp_path / "x.json")
