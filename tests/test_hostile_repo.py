"""A repository is untrusted input: what it commits (an index folder of its own with symlinks, its own
settings, a pathological .gitignore) and what it swaps while it is read must never reach outside it.

The hostile repositories are made the way a user gets them: `git clone` of a local repository that
holds the symlinks (issue: a hostile repository cannot touch anything outside its index).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from codesearch.config import Settings, load_settings
from codesearch.daemon import LiveIndex
from codesearch.errors import CodesearchError
from codesearch.files import IgnoreRules, SkipFile, read_source, walk
from codesearch.indexdir import MARKER, claim_index_dir, verify_index_dir
from codesearch.indexer import build_index
from codesearch.search import Index

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

BASHRC = "export PATH=$HOME/bin:$PATH  # the user's own file\n"
OLD_MARKER = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This folder is a codesearch index (https://bford.info/cachedir/): it can be rebuilt.\n"
)


def _git(cwd: Path, *args: str) -> None:
    env = dict(os.environ, GIT_AUTHOR_NAME="a", GIT_AUTHOR_EMAIL="a@x", GIT_COMMITTER_NAME="a",
               GIT_COMMITTER_EMAIL="a@x", GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env=env)


def _tree(path: Path) -> dict[str, bytes | str]:
    """Every entry below `path`: a file's bytes, a symlink's target."""
    out: dict[str, bytes | str] = {}
    for item in sorted(path.rglob("*")):
        rel = str(item.relative_to(path))
        out[rel] = ("-> " + os.readlink(item)) if item.is_symlink() else item.read_bytes() if item.is_file() else "dir"
    return out


@pytest.fixture
def victim(tmp_path) -> Path:
    """The user's home: files a hostile repository would like to overwrite or read."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text(BASHRC, encoding="utf-8")
    (home / "private.py").write_text("def private_token_reader():\n    return 'mine'\n", encoding="utf-8")
    return home


def _hostile_clone(tmp_path: Path, repo: Path, victim: Path, links: dict[str, str], marker: str | None) -> Path:
    """Commit `.codesearch/` holding `marker` (as CACHEDIR.TAG) and `links` (name -> target) to a
    copy of the sample repository, and return a fresh `git clone` of it."""
    upstream = tmp_path / "upstream"
    shutil.copytree(repo, upstream)
    index = upstream / ".codesearch"
    index.mkdir()
    if marker is not None:
        (index / MARKER).write_text(marker, encoding="utf-8")
    for name, target in links.items():
        (index / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, index / name)
    _git(upstream, "init", "-q")
    _git(upstream, "add", "-A", "-f")
    _git(upstream, "commit", "-q", "-m", "hostile")
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", str(upstream), str(clone))
    assert (clone / ".codesearch" / MARKER).exists() == (marker is not None)
    return clone


# Links to the victim's files, relative as a committed symlink would be (clone/.codesearch/<name>).
def _links(victim: Path, clone_parent: Path) -> dict[str, str]:
    up = os.path.relpath(victim, clone_parent / "clone" / ".codesearch")
    return {
        "write.lock": f"{up}/.bashrc",
        "meta.json.tmp": f"{up}/.bashrc",
        "secret-rules.tmp": f"{up}/.bashrc",
        "CACHEDIR.TAG.tmp": f"{up}/.bashrc",
        "db-000000000000": up,
    }


@pytest.mark.parametrize("marker", [OLD_MARKER, None], ids=["with-marker", "without-marker"])
def test_a_cloned_index_folder_with_symlinks_touches_nothing_outside(run, repo, tmp_path, victim, marker):
    clone = _hostile_clone(tmp_path, repo, victim, _links(victim, tmp_path), marker)
    before, index_before = _tree(victim), _tree(clone / ".codesearch")
    for argv in (("index", str(clone)), ("index", str(clone), "--rebuild"), ("query", "parse", "--root", str(clone)),
                 ("status", str(clone))):
        code, out, err = run(*argv)
        assert code == 2, (argv, out, err)
        assert "symlink" in err and str(clone / ".codesearch") in err, err
        assert len(err.strip().splitlines()) == 1
    assert _tree(victim) == before
    assert _tree(clone / ".codesearch") == index_before  # nothing written into it either


def test_the_language_server_opening_a_hostile_clone_touches_nothing_outside(repo, tmp_path, victim, tiny_model):
    clone = _hostile_clone(tmp_path, repo, victim, _links(victim, tmp_path), OLD_MARKER)
    before = _tree(victim)
    live = LiveIndex(clone, Settings(model=str(tiny_model), threads=1), watch=False)
    live.start()
    try:
        with pytest.raises(CodesearchError, match="symlink"):
            live.sync().result(timeout=120)
    finally:
        live.close()
    assert _tree(victim) == before


def test_an_index_folder_that_came_from_git_is_never_trusted(run, repo, tmp_path, victim):
    # No symlinks at all, and a marker exactly as an older codesearch wrote it: still not ours.
    clone = _hostile_clone(tmp_path, repo, victim, {}, OLD_MARKER)
    (clone / ".codesearch" / "meta.json").write_text("{}", encoding="utf-8")
    _git(clone, "add", "-f", ".codesearch/meta.json")
    code, _, err = run("index", str(clone))
    assert code == 2 and "tracked by git" in err, err
    assert sorted(p.name for p in (clone / ".codesearch").iterdir()) == [MARKER, "meta.json"]


def test_a_marker_made_without_the_users_key_does_not_verify(run, repo, tmp_path):
    assert run("index", str(repo))[0] == 0
    index = repo / ".codesearch"
    verify_index_dir(index)  # ours
    copy = tmp_path / "copy"
    shutil.copytree(repo, copy, symlinks=True)
    verify_index_dir(copy / ".codesearch")  # the user's own copy stays theirs
    text = (index / MARKER).read_text(encoding="utf-8")
    nonce, signature = text.splitlines()[-1].split(": ")[1].split(".")
    forged = text.replace(signature, format(int(signature, 16) ^ 1, "064x"))
    (index / MARKER).write_text(forged, encoding="utf-8")
    with pytest.raises(CodesearchError, match="not made by your codesearch"):
        verify_index_dir(index)
    code, _, err = run("index", str(repo))
    assert code == 2 and "delete it" in err


def test_an_index_folder_that_is_a_symlink_is_refused(run, repo, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, repo / ".codesearch")
    code, _, err = run("index", str(repo))
    assert code == 2 and "is a symlink" in err and str(repo / ".codesearch") in err
    assert list(elsewhere.iterdir()) == []


def test_a_user_folder_holding_a_db_directory_is_never_claimed(run, repo, tmp_path):
    data = tmp_path / "data"
    (data / "db").mkdir(parents=True)
    (data / "db" / "keep.bin").write_bytes(b"user data")
    os.chmod(data, 0o755)
    before = _tree(data)
    for argv in (("index", str(repo), "--index", str(data)), ("index", str(repo), "--index", str(data), "--rebuild")):
        code, _, err = run(*argv)
        assert code == 2 and "not a codesearch index" in err, err
    assert _tree(data) == before
    assert data.stat().st_mode & 0o777 == 0o755  # never chmod'ed


def test_an_empty_folder_is_claimed_without_changing_its_mode(run, repo, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o750)
    os.chmod(mine, 0o750)
    assert run("index", str(repo), "--index", str(mine))[0] == 0
    assert mine.stat().st_mode & 0o777 == 0o750
    verify_index_dir(mine)
    assert run("query", "parse json", "--root", str(repo), "--index", str(mine))[0] == 0


def test_the_lock_and_notes_are_never_opened_through_a_symlink(run, repo, tmp_path, victim):
    # A link planted after the folder was verified (a race): the lock open refuses it and nothing is truncated.
    assert run("index", str(repo))[0] == 0
    os.unlink(repo / ".codesearch" / "write.lock")
    os.symlink(victim / ".bashrc", repo / ".codesearch" / "write.lock")
    from codesearch.indexdir import open_lock

    with pytest.raises(CodesearchError, match="symlink"):
        open_lock(repo / ".codesearch" / "write.lock")
    assert (victim / ".bashrc").read_text(encoding="utf-8") == BASHRC


def test_a_per_user_key_signs_the_marker(run, repo, tmp_path, monkeypatch):
    assert run("index", str(repo))[0] == 0
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "another-user-state"))
    with pytest.raises(CodesearchError, match="not made by your codesearch"):
        verify_index_dir(repo / ".codesearch")  # another user's key does not verify it
    key = tmp_path / "another-user-state" / "codesearch" / "folder-key"
    assert key.stat().st_mode & 0o777 == 0o600


def test_a_repository_config_cannot_move_the_index_outside_it(run, repo, tmp_path):
    outside = tmp_path / "outside"
    for value in (str(outside), "../outside", "s3://attacker/bucket", "."):
        (repo / ".codesearch.toml").write_text(f"index_dir = {json.dumps(value)}\n", encoding="utf-8")
        with pytest.raises(CodesearchError, match="must be a folder inside the repository"):
            load_settings(repo)
        code, _, err = run("index", str(repo))
        assert code == 2 and "inside the repository" in err
    assert not outside.exists()
    (repo / ".codesearch.toml").write_text('index_dir = "build/.idx"\n', encoding="utf-8")
    assert load_settings(repo).index_dir == "build/.idx"


# --- reading files: a file swapped for a symlink after the walk ----------------------------------


def test_a_file_swapped_for_a_symlink_after_the_walk_is_not_read(repo, victim, tmp_path):
    walked = walk(repo)
    file = next(f for f in walked.files if f.path.endswith(".py"))
    os.unlink(file.abs_path)
    os.symlink(victim / "private.py", file.abs_path)
    with pytest.raises(SkipFile) as skip:
        read_source(file)
    assert skip.value.reason == "symlink outside root"


def test_a_directory_swapped_for_a_symlink_after_the_walk_is_not_read(repo, victim):
    walked = walk(repo)
    file = next(f for f in walked.files if f.path.startswith("py/"))
    (victim / "py").mkdir()
    shutil.copy(file.abs_path, victim / file.path)  # the same name outside: only the check can tell
    shutil.rmtree(repo / "py")
    os.symlink(victim / "py", repo / "py")
    with pytest.raises(SkipFile) as skip:
        read_source(file)
    assert skip.value.reason == "symlink outside root"


def test_a_symlink_inside_the_root_is_still_read(repo):
    os.symlink("retry.py", repo / "py" / "retry_link.py")
    walked = walk(repo)
    link = next(f for f in walked.files if f.path == "py/retry_link.py")
    text, _ = read_source(link)
    assert text == (repo / "py" / "retry.py").read_text(encoding="utf-8")


def test_a_swap_during_indexing_never_indexes_outside_content(repo, victim, settings):
    """The swap races the real indexer: whatever wins, the outside function is never in the index."""
    target = repo / "py" / "retry.py"
    stop = threading.Event()

    def swap() -> None:
        original = target.read_bytes()
        while not stop.is_set():
            target.unlink(missing_ok=True)
            os.symlink(victim / "private.py", target)
            time.sleep(0.0005)
            target.unlink(missing_ok=True)
            target.write_bytes(original)

    thread = threading.Thread(target=swap)
    thread.start()
    try:
        for _ in range(3):
            build_index(repo, settings)
            (repo / "py" / "retry.py").touch() if target.exists() else None
    finally:
        stop.set()
        thread.join()
    names = {h.name for h in Index.open(repo, settings).search("private token reader", k=50, mode="lexical")}
    assert "private_token_reader" not in names


# --- a pathological .gitignore ------------------------------------------------------------------


def test_a_pathological_ignore_pattern_matches_in_linear_time(tmp_path):
    # Before: `*a*a*...*b` against a long name took exponential time (5 s at 4 stars, minutes at 5).
    root = tmp_path / "r"
    root.mkdir()
    (root / ".gitignore").write_text("*a" * 40 + "*b\n" + "*a*b.py\n", encoding="utf-8")
    (root / ("a" * 200 + ".py")).write_text("def f():\n    return 1\n", encoding="utf-8")
    (root / ("a" * 100 + "xb.py")).write_text("def g():\n    return 1\n", encoding="utf-8")
    done = {}
    worker = threading.Thread(target=lambda: done.setdefault("result", walk(root)), daemon=True)
    worker.start()
    worker.join(60)  # a generous bound for a hang, not a speed assertion: linear matching takes milliseconds
    assert "result" in done, "the walk did not finish: matching is not bounded"
    result = done["result"]
    assert [f.path for f in result.files] == ["a" * 200 + ".py"]  # `*a*b.py` still ignores the other one
    assert result.skipped["ignored"] == 1


@pytest.mark.parametrize("pattern, path, ignored", [
    ("*a*a*b", "xaYaZb", True), ("*a*a*b", "xab", False), ("*.min.*", "lib/x.min.js", True),
    ("*_test_*.py", "a_test_b.py", True), ("*_test_*.py", "a_test.py", False), ("a*b*c", "abbbc", True),
    ("a*b*c", "acb", False), ("*[ab]?*x*", "zaqx", True), ("*[ab]?*x*", "zax", False),
    ("src/*a*b", "src/qaqb", True), ("src/*a*b", "lib/qaqb", False),
])
def test_rewritten_ignore_patterns_match_as_before(pattern, path, ignored):
    rules = IgnoreRules.parse([pattern])
    assert bool(rules.verdict(path, False)) is ignored


def test_an_ignore_line_with_too_many_globstars_is_skipped_with_a_warning(tmp_path):
    root = tmp_path / "r"
    (root / "a" / "a").mkdir(parents=True)
    (root / ".gitignore").write_text("a/**/a/**/a/**/b\n*.gen.py\n", encoding="utf-8")
    (root / "a" / "a" / "x.py").write_text("def f():\n    return 1\n", encoding="utf-8")
    (root / "y.gen.py").write_text("def g():\n    return 1\n", encoding="utf-8")
    result = walk(root)
    assert (".gitignore:1", "ignore rule too complex") in result.skipped_paths
    assert [f.path for f in result.files] == ["a/a/x.py"]  # the other line still applies


# --- a secret found after it was indexed -------------------------------------------------------------

SECRET = "ACME-" + "0F1E2D3C4B5A6978" + "8796A5B4C3D2E1F0"  # built at run time: this file holds no secret


def _files_holding(folder: Path, needle: str) -> list[str]:
    """Index files whose bytes hold `needle` as written or lower-cased (the full-text index lower-cases)."""
    wanted = (needle.encode(), needle.lower().encode())
    return [str(p.relative_to(folder)) for p in folder.rglob("*")
            if p.is_file() and not p.is_symlink() and any(w in p.read_bytes() for w in wanted)]


def test_rows_of_a_secret_found_after_indexing_are_purged_in_the_same_run(run, repo):
    (repo / "py" / "vendor_key.py").write_text(
        f'def vendor_key():\n    """Our vendor key."""\n    return "{SECRET}"\n', encoding="utf-8"
    )
    assert run("index", str(repo))[0] == 0
    index = repo / ".codesearch"
    assert _files_holding(index, SECRET), "the check must be able to see the key in the index files"
    (repo / ".codesearch.toml").write_text('secret_patterns = ["ACME-[0-9A-F]{32}"]\n', encoding="utf-8")
    code, out, err = run("index", str(repo), "--json")
    assert code == 0, err
    assert json.loads(out)["skipped"].get("secret") == 1
    assert _files_holding(index, SECRET) == []  # no old version, data file or index file keeps it
    code, out, _ = run("query", "vendor key", "--root", str(repo), "--json", "--mode", "lexical")
    assert "vendor_key" not in out
    assert run("query", "parse json", "--root", str(repo))[0] == 0  # the rest is still searchable


# --- a full disk -----------------------------------------------------------------------------------


def test_a_full_disk_is_reported_as_a_full_disk(run, repo, tmp_path):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "small"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (repo / "big").mkdir()
        for i in range(60):  # enough functions that the tables outgrow 256 KiB
            body = "\n".join(f"def f_{i}_{j}(x):\n    return x * {j} + {i}  # {'pad' * 20}\n" for j in range(30))
            (repo / "big" / f"m{i}.py").write_text(body, encoding="utf-8")
        code, _, err = run("index", str(repo), "--index", str(disk / "idx"))
        assert code == 2, err
        assert "no space left" in err and "damaged" not in err and "--rebuild" not in err, err
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_claiming_twice_is_idempotent(tmp_path):
    folder = tmp_path / "idx"
    claim_index_dir(folder)
    marker = (folder / MARKER).read_text(encoding="utf-8")
    claim_index_dir(folder)
    assert (folder / MARKER).read_text(encoding="utf-8") == marker
    assert folder.stat().st_mode & 0o777 == 0o700
    assert sys.platform != "linux" or not any(p.name.endswith(".tmp") for p in folder.iterdir())


def test_the_process_that_made_a_folder_takes_it_back_after_an_rm_racing_its_writes(tmp_path):
    folder = tmp_path / "idx"
    claim_index_dir(folder)
    for entry in list(folder.iterdir()):
        entry.unlink()  # `rm -rf` ...
    (folder / "db-0123456789ab").mkdir()  # ... while this process still wrote a generation
    claim_index_dir(folder)
    verify_index_dir(folder)
    for entry in (folder / MARKER, folder / ".gitignore"):
        entry.unlink()
    (folder / "notes.txt").write_text("a user's file", encoding="utf-8")  # not ours alone: never taken back
    with pytest.raises(CodesearchError, match="not a codesearch index"):
        claim_index_dir(folder)


def test_git_never_runs_a_command_the_repositorys_own_config_names(run, repo, tmp_path):
    # An unpacked archive can carry .git/config: `git ls-files` would run its core.fsmonitor command.
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "x")
    marker = tmp_path / "ran"
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n", encoding="utf-8")
    hook.chmod(0o755)
    _git(repo, "config", "core.fsmonitor", str(hook))
    for argv in (("index", str(repo), "--tracked-only"), ("index", str(repo)), ("status", str(repo)),
                 ("clones", str(repo), "--changed-since", "HEAD")):
        code, _, err = run(*argv)
        assert code in (0, 1), (argv, err)
    assert not marker.exists()
