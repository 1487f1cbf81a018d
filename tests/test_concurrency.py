"""Readers and the writer at once: the language server re-indexes while CLI processes query.

A real `codesearch lsp` (tiny model, 50 ms debounce) serves a copy of the sample repository. Four
processes (tests/query_loop.py) run the CLI's query command in a loop, each query opening the index
afresh as `codesearch query --json` does, while the test creates, rewrites and deletes source files
(saved atomically, as editors do; every version holds new uniquely named functions) and tells the
server, which re-indexes them. Then:

- every query exited 0 (hits) or 1 (none), never 2, and printed complete JSON Lines: every line
  parses, the summary comes last and counts the hits, ranks run 1..n;
- every hit is a function of a version its file had at some moment (its code at its lines);
- once the server is idle, every function on disk is found by name in lexical mode (no lost update)
  and no function of a replaced or deleted version is.

CI writes for 10 s; `pytest --slow tests/test_concurrency.py` writes for 60 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import string
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from lsprotocol import types
from pygls.lsp.client import LanguageClient
from pygls.uris import from_fs_path

SAMPLE_REPO = Path(__file__).parent / "fixtures" / "sample_repo"
READER = Path(__file__).parent / "query_loop.py"
READERS = 4
EDITED_SAMPLES = ("py/jsonutil.py", "go/stack.go")  # sample files that get functions appended, never deleted

# One function per language; {name} is unique to the version, {n} varies the body.
FUNCTIONS = {
    "py": 'def {name}(items):\n    """Probe {n}: keep the items above {n}."""\n    return [x for x in items if x > {n}]\n',
    "js": "function {name}(items) {{\n  // keep the items above {n}\n  return items.filter((x) => x > {n});\n}}\n",
    "go": "func {name}(items []int) int {{\n\t// count the items above {n}\n\tcount := 0\n\tfor _, x := range items {{\n"
          "\t\tif x > {n} {{\n\t\t\tcount++\n\t\t}}\n\t}}\n\treturn count\n}}\n",
    "rs": "fn {name}(items: &[i64]) -> usize {{\n    // count the items above {n}\n"
          "    items.iter().filter(|x| **x > {n}).count()\n}}\n",
}
HEADERS = {"go": "package live\n\n"}


@dataclass
class Writer:
    """The editor's side: saves new versions of files (each with new uniquely named functions) and
    remembers every text every file has had, and which functions are on disk now."""

    repo: Path
    staging: Path  # outside the repository: files are written here, then renamed into place
    rng: random.Random
    versions: dict[str, list[str]] = field(default_factory=dict)  # path -> every text it has had
    on_disk: dict[str, list[str]] = field(default_factory=dict)  # path -> its written functions now
    removed: set[str] = field(default_factory=set)  # functions written once, on disk no more
    serial: int = 0

    def __post_init__(self) -> None:
        for path in self.repo.rglob("*"):
            if path.is_file():
                self.versions[path.relative_to(self.repo).as_posix()] = [path.read_text()]

    def step(self) -> tuple[str, bool]:
        """Create, rewrite or delete one file: (its path, whether it still exists)."""
        live = [p for p in self.on_disk if p.startswith("live/")]
        roll = self.rng.random()
        if len(live) < 3 or roll < 0.4:
            ext = self.rng.choice(sorted(FUNCTIONS))
            self.serial += 1
            return self.save(f"live/m{self.serial}.{ext}"), True
        if roll < 0.8:
            return self.save(self.rng.choice(live + list(EDITED_SAMPLES))), True
        path = self.rng.choice(live)
        (self.repo / path).unlink()
        self.removed.update(self.on_disk.pop(path))
        return path, False

    def save(self, path: str) -> str:
        ext = path.rsplit(".", 1)[1]
        names = [self.unique_name() for _ in range(self.rng.randint(1, 3))]
        body = "\n".join(FUNCTIONS[ext].format(name=name, n=self.rng.randint(0, 999)) for name in names)
        if path in EDITED_SAMPLES:
            text = self.versions[path][0] + "\n\n" + body
        else:
            text = HEADERS.get(ext, "") + body
        staged = self.staging / "save.tmp"
        staged.write_text(text)
        os.replace(staged, self.repo / path)  # atomic, as editors save
        self.removed.update(self.on_disk.get(path, []))
        self.on_disk[path] = names
        self.versions.setdefault(path, []).append(text)
        return path

    def unique_name(self) -> str:
        while True:
            name = "probe_" + "".join(self.rng.choices(string.ascii_lowercase, k=6))
            if all(name not in names for names in self.on_disk.values()) and name not in self.removed:
                return name


@pytest.mark.parametrize("seconds", [10, pytest.param(60, marks=pytest.mark.slow)])
def test_cli_queries_while_the_server_reindexes(tmp_path, tiny_model, run, capsys, seconds):
    repo = tmp_path / "repo"
    shutil.copytree(SAMPLE_REPO, repo, ignore=shutil.ignore_patterns(".codesearch"))
    (repo / "live").mkdir()
    (tmp_path / "staging").mkdir()
    writer = Writer(repo, tmp_path / "staging", random.Random(seconds))

    server_log, window = asyncio.run(_serve_while_writing(repo, tiny_model, writer, tmp_path, seconds))

    assert "Traceback" not in server_log and "failed" not in server_log, server_log[-3000:]
    overlapping = 0
    for i in range(READERS):
        records = [json.loads(line) for line in (tmp_path / f"reader{i}.jsonl").read_text().splitlines()]
        during = [r for r in records if r["started"] < window[1] and r["ended"] > window[0]]
        assert during, f"reader {i} ran no query while files were written"
        overlapping += len(during)
        for record in records:
            _check_answer(record, writer.versions)

    # No lost update: the index holds exactly the functions on disk.
    for path, names in writer.on_disk.items():
        for name in names:
            assert (path, name) in _lexical(run, repo, name), f"{name} ({path}) is not in the index"
    for name in writer.removed:
        assert name not in {n for _, n in _lexical(run, repo, name)}, f"{name} was removed but is still found"
    with capsys.disabled():
        print(f"\n{overlapping} queries during {seconds} s of writes; {len(writer.removed)} functions replaced or deleted, "
              f"{sum(map(len, writer.on_disk.values()))} on disk")


def _check_answer(record: dict, versions: dict[str, list[str]]) -> None:
    """One query's output is whole and true to some version of each file it names."""
    where = f"{record['argv']} -> {record['code']}: {record['err'].strip()}"
    assert record["code"] in (0, 1), where
    assert record["out"].endswith("\n"), where
    lines = [json.loads(line) for line in record["out"].splitlines()]
    *hits, summary = lines
    assert summary["type"] == "summary" and summary["hits"] == len(hits), where
    assert record["code"] == (0 if hits else 1), where
    assert [(h["type"], h["rank"]) for h in hits] == [("hit", rank) for rank in range(1, len(hits) + 1)], where
    for hit in hits:
        texts = versions.get(hit["path"])
        assert texts, f"{where}: a hit in {hit['path']}, a file that never existed"
        if hit["kind"] == "file":  # a file's summary (its names and opening comment) stands at line 1
            assert hit["line"] == 1 and hit["name"] == hit["path"], where
            continue
        assert any(_holds(text, hit) for text in texts), f"{where}: {hit['name']} is at no version of {hit['path']}"


def _holds(text: str, hit: dict) -> bool:
    """Whether `hit`'s code is in `text` on the lines it names."""
    lines = "\n".join(text.splitlines()[hit["line"] - 1 : hit["end_line"]])
    return hit["code"] in lines and hit["code"].count("\n") == hit["end_line"] - hit["line"]


def _lexical(run, repo: Path, name: str) -> set[tuple[str, str]]:
    code, out, err = run("query", name, "--mode", "lexical", "--json", "-k", "10", "--root", str(repo))
    assert code in (0, 1), err
    return {(row["path"], row["name"]) for row in map(json.loads, out.splitlines()) if row["type"] == "hit"}


async def _serve_while_writing(
    repo: Path, model: Path, writer: Writer, tmp: Path, seconds: float
) -> tuple[str, tuple[float, float]]:
    """Start the server and the readers, write for `seconds`, stop the readers, wait for the server to
    index the last change: (the server's stderr, (when writing started, when it ended))."""
    client = LanguageClient("codesearch-test", "1")
    await client.start_io(sys.executable, "-m", "codesearch", "lsp")
    log: list[bytes] = []
    drain = asyncio.create_task(_drain(client._server.stderr, log))  # a full pipe would block the server
    stop = tmp / "stop"
    readers: list[subprocess.Popen] = []
    try:
        await client.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(),
                root_uri=from_fs_path(str(repo)),
                workspace_folders=[types.WorkspaceFolder(from_fs_path(str(repo)), "repo")],
                initialization_options={"model": str(model), "debounceMs": 50, "codeLens": False},
            )
        )
        client.initialized(types.InitializedParams())
        await _settled(client, timeout=120)
        env = {**os.environ, "CODESEARCH_THREADS": "1"}
        for i in range(READERS):
            with open(tmp / f"reader{i}.jsonl", "w") as out:
                readers.append(subprocess.Popen(
                    [sys.executable, str(READER), str(stop), str(repo), str(model), str(i)], stdout=out, env=env,
                ))
        await _until(lambda: all((tmp / f"reader{i}.jsonl").stat().st_size for i in range(READERS)), timeout=120)

        started = time.time()
        while time.time() - started < seconds:
            path, exists = writer.step()
            uri = from_fs_path(str(repo / path))
            if exists:
                client.text_document_did_save(types.DidSaveTextDocumentParams(types.TextDocumentIdentifier(uri)))
            else:
                change = types.FileEvent(uri, types.FileChangeType.Deleted)
                client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams([change]))
            await asyncio.sleep(writer.rng.uniform(0.05, 0.4))
        ended = time.time()
        stop.touch()
        for reader in readers:
            assert await asyncio.to_thread(reader.wait, 120) == 0
        await _settled(client, timeout=120)
        await client.shutdown_async(None)
        client.exit(None)
    finally:
        stop.touch()
        for reader in readers:
            if reader.poll() is None:
                reader.kill()
        await client.stop()
        drain.cancel()
    return b"".join(log).decode(errors="replace"), (started, ended)


async def _settled(client: LanguageClient, timeout: float) -> None:
    """Wait until the server has an index, is idle, has nothing pending and nothing stale, twice in a row."""
    calm, folder = 0, None
    deadline = time.monotonic() + timeout
    while calm < 2:
        if time.monotonic() > deadline:
            raise AssertionError(f"the server did not settle in {timeout}s: {folder}")
        status = await asyncio.wait_for(client.protocol.send_request_async("codesearch/status", {}), timeout=60)
        folder = status.folders[0]
        quiet = folder.indexed and folder.state == "idle" and folder.pending == 0 and folder.staleFiles == 0
        calm = calm + 1 if quiet else 0
        await asyncio.sleep(0.3)


async def _until(check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout}s")
        await asyncio.sleep(0.1)


async def _drain(stream: asyncio.StreamReader, into: list[bytes]) -> None:
    while chunk := await stream.read(65536):
        into.append(chunk)
