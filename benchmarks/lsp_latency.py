"""The language server as an editor sees it: request latency at 10k and 100k functions, and the time
from saving a file to the change being searchable.

    python benchmarks/lsp_latency.py [--repo PATH] [--model PATH] [--base 5000] [--scales 10000,100000]

A base tree of about `--base` functions is copied from `--repo` (default: the Python standard library)
and indexed once; each scale is then reached by copying that tree under new directories and
re-indexing, which embeds nothing new (the chunks' content hashes are known). For each scale a real
`codesearch lsp` is started over stdio with pygls' client; the figures are round trips as the client
measures them: codesearch/search (hybrid), workspace/symbol, codesearch/similar (by code), and
didSave -> first codesearch/search that finds the new function. Then, at the first scale, hybrid
search latency while the server indexes `--fresh` new functions in the background (files it has not
seen, copied into the tree; the watcher finds them), with the daemon's defaults (lower priority, half
the cores, yielding to queries) and again with `daemon_nice = 0` and all cores, for comparison.
Without --model it uses the shipped default model, or a random-weight model of the default recipe's
shape (benchmarks/engine.py): the speed of a model depends on its shape, not its weights.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient
from pygls.uris import from_fs_path

sys.path.insert(0, str(Path(__file__).parent))
from engine import QUERIES, percentiles, random_model  # noqa: E402

from codesearch.chunking import chunk_text  # noqa: E402
from codesearch.config import Settings  # noqa: E402
from codesearch.files import SkipFile, read_source, walk  # noqa: E402
from codesearch.indexer import build_index  # noqa: E402
from codesearch.model import ModelFolder, default_model_path  # noqa: E402

SIMILAR_CODE = "def load(path):\n    with open(path) as f:\n        return json.load(f)\n"


def copy_base(source: Path, target: Path, functions: int, skip: int = 0) -> tuple[int, int]:
    """Copy code files of `source` (after the first `skip` of them) into `target` until they hold about
    `functions` functions: (functions, files read)."""
    count = 0
    files = walk(source, extra_ignores=["site-packages/", "dist-packages/", "test/", "tests/"]).files
    read = skip
    for file in files[skip:]:
        read += 1
        try:
            text, _ = read_source(file)
        except SkipFile:
            continue
        count += len(chunk_text(text, file.language, file.path).chunks)
        dest = target / file.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file.abs_path, dest)
        if count >= functions:
            break
    return count, read


async def request(client: LanguageClient, method: str, params) -> tuple[float, object]:
    started = time.perf_counter()
    result = await asyncio.wait_for(client.protocol.send_request_async(method, params), timeout=120)
    return time.perf_counter() - started, result


async def serve_and_measure(
    repo: Path, model: Path, rounds: int, saves: int, fresh: tuple[Path, Path, int, int] | None = None
) -> None:
    client = LanguageClient("codesearch-bench", "1")
    await client.start_io(sys.executable, "-m", "codesearch", "lsp")
    try:
        started = time.perf_counter()
        await client.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(),
                root_uri=from_fs_path(str(repo)),
                workspace_folders=[types.WorkspaceFolder(from_fs_path(str(repo)), "repo")],
                initialization_options={"model": str(model), "debounceMs": 50},
            )
        )
        client.initialized(types.InitializedParams())
        while True:
            _, status = await request(client, "codesearch/status", {})
            folder = status.folders[0]
            if folder.indexed and folder.state == "idle":
                break
            await asyncio.sleep(0.1)
        print(f"  server ready (started, opened the index, checked the tree) in {time.perf_counter() - started:.1f}s: "
              f"{folder.chunks} functions")

        for label, method, make in () if not rounds else (
            ("codesearch/search hybrid", "codesearch/search", lambda q: {"query": q, "k": 10}),
            ("codesearch/search lexical", "codesearch/search", lambda q: {"query": q, "k": 10, "mode": "lexical"}),
            ("workspace/symbol", types.WORKSPACE_SYMBOL, lambda q: types.WorkspaceSymbolParams(query=q)),
            ("codesearch/similar (code)", "codesearch/similar", lambda q: {"code": SIMILAR_CODE, "k": 10}),
        ):
            await request(client, method, make(QUERIES[0]))  # warm up
            samples = [(await request(client, method, make(QUERIES[i % len(QUERIES)])))[0] for i in range(rounds)]
            print(f"  {label}: {percentiles(samples)}")

        edited = next(f for f in sorted(repo.rglob("*.py")) if f.stat().st_size > 2000)
        original = edited.read_text()
        waits = []
        for trial in range(saves):
            name = f"zzqx_saved_marker_{trial}"
            edited.write_text(original + f"\n\ndef {name}():\n    return {trial}\n")
            saved = time.perf_counter()
            client.text_document_did_save(
                types.DidSaveTextDocumentParams(types.TextDocumentIdentifier(from_fs_path(str(edited))))
            )
            while True:
                _, found = await request(client, "codesearch/search", {"query": name, "k": 1, "mode": "lexical"})
                if found.hits and found.hits[0].name == name:
                    break
                await asyncio.sleep(0.01)
            waits.append(time.perf_counter() - saved)
        if saves:
            edited.write_text(original)
            print(f"  save -> searchable (debounce 50 ms, {saves} saves): median {statistics.median(waits):.2f}s, "
                  f"max {max(waits):.2f}s")
        if fresh is not None:
            await measure_during_indexing(client, repo, *fresh)
        await client.shutdown_async(None)
        client.exit(None)
    finally:
        await client.stop()


async def measure_during_indexing(client: LanguageClient, repo: Path, source: Path, target: Path, functions: int,
                                  skip: int) -> None:
    """Hybrid search round trips while the server embeds `functions` new functions in the background."""
    count, _ = copy_base(source, target, functions, skip)
    started = time.perf_counter()
    samples: list[float] = []
    busy_seen = False
    i = 0
    while True:
        _, status = await request(client, "codesearch/status", {})
        folder = status.folders[0]
        busy = folder.state != "idle" or folder.pending > 0
        busy_seen = busy_seen or busy
        if busy_seen and not busy:
            break
        if not busy_seen and time.perf_counter() - started > 30:
            raise RuntimeError("the server never started indexing the new files")
        if busy:
            seconds, _ = await request(client, "codesearch/search", {"query": QUERIES[i % len(QUERIES)], "k": 10})
            samples.append(seconds)
            i += 1
    print(f"  during a background index of {count} new functions ({time.perf_counter() - started:.0f}s): "
          f"codesearch/search hybrid {percentiles(samples)} over {len(samples)} requests")
    shutil.rmtree(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", default=sysconfig.get_paths()["stdlib"])
    parser.add_argument("--model")
    parser.add_argument("--base", type=int, default=5000, help="functions in the tree that is embedded")
    parser.add_argument("--scales", default="10000,100000", help="index sizes to measure, in functions")
    parser.add_argument("--requests", type=int, default=50, help="requests of each kind per scale")
    parser.add_argument("--saves", type=int, default=5)
    parser.add_argument("--fresh", type=int, default=2000, help="new functions indexed in the background (0: skip)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="codesearch-lsp-bench-"))
    try:
        repo = work / "repo"
        base, used = copy_base(Path(args.repo), repo / "copy0", args.base)
        model = Path(args.model) if args.model else default_model_path() or random_model(work / "model" / "m", repo)
        folder = ModelFolder.read(model)
        print(f"model: {folder.model_id} ({folder.dimension} dims); base tree: {base} functions of {args.repo}")
        settings = Settings(model=str(model))
        report = build_index(repo, settings)
        print(f"base index: {report.chunks} functions in {report.seconds:.0f}s")
        copies = 1
        for scale in sorted(int(s) for s in args.scales.split(",")):
            while copies * base < scale:
                shutil.copytree(repo / "copy0", repo / f"copy{copies}")
                copies += 1
            report = build_index(repo, settings)
            print(f"{report.chunks} functions (re-index of the copies: {report.seconds:.0f}s, "
                  f"{report.chunks_embedded} embedded)")
            asyncio.run(serve_and_measure(repo, model, args.requests, args.saves))
            if args.fresh and scale == min(int(s) for s in args.scales.split(",")):
                fresh = (Path(args.repo), repo / "fresh", args.fresh, used)
                for config in ("", f"daemon_nice = 0\ndaemon_threads = {os.cpu_count()}\n"):
                    if config:
                        (repo / ".codesearch.toml").write_text(config)
                        print("  ... again with daemon_nice = 0 and all cores for indexing:")
                    asyncio.run(serve_and_measure(repo, model, 0, 0, fresh))
                (repo / ".codesearch.toml").unlink(missing_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
