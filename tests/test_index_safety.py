"""A damaged, old or foreign index is named as such and rebuilt on request; codesearch writes and
deletes nothing outside its index folder; the index is private; the LSP server listens on no port
unless asked, and then only on loopback."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codesearch.store import generations


def _tree(repo: Path) -> dict[str, tuple[str, int]]:
    """Every file and folder outside .codesearch: content digest (or "dir") and mtime."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(repo):
        dirnames[:] = [d for d in dirnames if d != ".codesearch"]
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = path.relative_to(repo).as_posix()
            digest = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
            out[rel] = (digest, path.stat().st_mtime_ns)
    return out


def _generation(repo: Path) -> Path:
    meta = json.loads((repo / ".codesearch" / "meta.json").read_text())
    return repo / ".codesearch" / meta["tables"]


def _truncate_data(repo: Path) -> None:
    for path in (_generation(repo) / "chunks.lance" / "data").iterdir():
        with open(path, "r+b") as f:
            f.truncate(max(0, path.stat().st_size // 3))


def _drop_versions(repo: Path) -> None:
    for path in (_generation(repo) / "chunks.lance" / "_versions").iterdir():
        path.unlink()


def _garble_meta(repo: Path) -> None:
    (repo / ".codesearch" / "meta.json").write_text("{not json", encoding="utf-8")


def _old_schema(repo: Path) -> None:
    meta_path = repo / ".codesearch" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["schema"] = 1
    meta_path.write_text(json.dumps(meta), encoding="utf-8")


def _remove_tables(repo: Path) -> None:
    import shutil

    shutil.rmtree(_generation(repo))


DAMAGE = [
    # (how the index is damaged, what `query` says, whether a plain `index` repairs it by itself)
    (_truncate_data, "is damaged", False),
    (_drop_versions, "is damaged", False),
    (_garble_meta, "damaged meta.json", False),
    (_remove_tables, "is damaged", False),
    (_old_schema, "another codesearch version", True),
]


@pytest.mark.parametrize("damage, message, self_repairs", DAMAGE, ids=[d[0].__name__.strip("_") for d in DAMAGE])
def test_damaged_index_is_named_and_rebuilt_on_request(run, repo, damage, message, self_repairs):
    assert run("index", str(repo))[0] == 0
    before = _tree(repo)
    damage(repo)

    code, out, err = run("query", "parse json", "--root", str(repo))
    assert code == 2 and out == ""
    assert message in err and "codesearch index" in err and "internal error" not in err
    assert len(err.strip().splitlines()) == 1

    code, _, err = run("index", str(repo))
    if self_repairs:
        assert code == 0 and "rebuilding" in err
    else:
        assert code == 2 and "--rebuild" in err and len(err.strip().splitlines()) == 1
        code, _, err = run("index", str(repo), "--rebuild")
        assert code == 0, err
    code, out, _ = run("query", "parse json", "--root", str(repo), "--json")
    assert code == 0 and json.loads(out.splitlines()[0])["name"]
    assert _tree(repo) == before  # nothing outside .codesearch was written or deleted


def test_index_made_with_another_model_is_named(run, repo, other_model):
    assert run("index", str(repo))[0] == 0
    code, _, err = run("query", "parse json", "--root", str(repo), "--model", str(other_model))
    assert code == 2 and "built with model" in err and "codesearch index" in err
    code, _, err = run("index", str(repo), "--model", str(other_model))
    assert code == 0 and "model changed" in err
    assert run("query", "parse json", "--root", str(repo), "--model", str(other_model))[0] == 0


def test_rebuild_keeps_serving_the_old_index_until_it_is_done(run, repo, settings):
    """Between `begin` and `finish`, readers see the old generation; afterwards the new one."""
    from codesearch.indexer import _open_store, IndexReport
    from codesearch.model import resolve_model
    from codesearch.search import Index

    assert run("index", str(repo))[0] == 0
    old = Index.open(repo, settings).store.tables
    report = IndexReport(root=str(repo), index_path=str(repo / ".codesearch"), model_id="")
    store, empty = _open_store(repo / ".codesearch", resolve_model(settings.model), settings, True, report)
    assert empty and store.tables != old and len(generations(repo / ".codesearch")) == 2
    reader = Index.open(repo, settings)
    assert reader.store.tables == old and reader.search("parse json", k=1)  # still the old one
    store.finish()
    assert Index.open(repo, settings).store.tables == store.tables
    assert (repo / ".codesearch" / old / "retired").exists()  # deleted a minute later, by a later run


def test_a_foreign_index_dir_is_never_written(run, repo):
    user_dir = repo / "notes"
    user_dir.mkdir()
    (user_dir / "db").mkdir()
    (user_dir / "db" / "keep.txt").write_text("mine", encoding="utf-8")
    (user_dir / "meta.txt").write_text("mine too", encoding="utf-8")
    (repo / ".codesearch.toml").write_text('index_dir = "notes"\n', encoding="utf-8")
    before = _tree(repo)
    for argv in (("index", str(repo)), ("index", str(repo), "--rebuild")):
        code, _, err = run(*argv)
        assert code == 2 and "not a codesearch index" in err
    assert _tree(repo) == before
    assert sorted(p.name for p in user_dir.iterdir()) == ["db", "meta.txt"]


def test_an_index_dir_left_without_its_marker_is_not_adopted(run, repo):
    # `rm -rf .codesearch` racing a writer can leave generation files without the marker: only a
    # marker codesearch wrote and can verify claims a folder, so another process tells the user to
    # delete the rest (the process that was writing takes its own folder back: see below).
    assert run("index", str(repo))[0] == 0
    index = repo / ".codesearch"
    for name in ("CACHEDIR.TAG", "meta.json"):
        (index / name).unlink()
    before = _tree(repo)
    done = subprocess.run([sys.executable, "-m", "codesearch", "index", str(repo)], capture_output=True, text=True)
    assert done.returncode == 2 and "not a codesearch index" in done.stderr and str(index) in done.stderr
    assert _tree(repo) == before


def test_index_folder_and_generations_are_private(run, repo):
    old_umask = os.umask(0o022)
    try:
        assert run("index", str(repo))[0] == 0
    finally:
        os.umask(old_umask)
    index = repo / ".codesearch"
    assert index.stat().st_mode & 0o777 == 0o700
    for folder in generations(index):
        assert folder.stat().st_mode & 0o077 == 0
    assert "codesearch" in (index / "CACHEDIR.TAG").read_text()


# --- the language server's sockets ----------------------------------------------------------------


def _listening(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state that process `pid` holds (Linux /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                address, port = local.split(":")
                if width == 8:
                    address = socket.inet_ntoa(bytes.fromhex(address)[::-1])
                found.append((address, int(port, 16)))
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("transport", ["stdio", "tcp", "socket"])
def test_language_server_listens_only_when_asked_and_only_on_loopback(repo, tiny_model, tmp_path, transport):
    """stdio listens nowhere; --tcp on loopback only, with its token in a user-only file; --socket on no
    TCP port at all, but on a user-only Unix socket (README: "Who may connect to the language server")."""
    port = _free_port()
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    argv = [sys.executable, "-m", "codesearch", "lsp"] + {
        "stdio": [], "tcp": ["--tcp", "--port", str(port)], "socket": ["--socket"]}[transport]
    env = {**os.environ, "CODESEARCH_MODEL": str(tiny_model), "CODESEARCH_THREADS": "1",
           "XDG_RUNTIME_DIR": str(runtime)}
    proc = subprocess.Popen(argv, cwd=repo, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env)
    listening = {"stdio": None, "tcp": runtime / "codesearch" / f"lsp-{port}.token",
                 "socket": runtime / "codesearch" / "lsp.sock"}[transport]
    try:
        deadline = time.monotonic() + 120
        sockets: list = []
        while time.monotonic() < deadline and proc.poll() is None:
            sockets = _listening(proc.pid)
            if listening is not None and listening.exists() or listening is None and time.monotonic() > deadline - 110:
                break  # stdio: give it 10 s to misbehave
            time.sleep(0.2)
        assert proc.poll() is None
        sockets = _listening(proc.pid)
        assert sockets == ([("127.0.0.1", port)] if transport == "tcp" else [])
        if listening is not None:
            assert oct(listening.lstat().st_mode & 0o777) == oct(0o600)
            assert oct(listening.parent.lstat().st_mode & 0o777) == oct(0o700)
    finally:
        proc.kill()
        proc.wait()
