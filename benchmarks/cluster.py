"""Org scale: indexing throughput on one process vs a local Ray cluster, and ANN vs exact vector search.

    python benchmarks/cluster.py index [--repo PATH] [--model PATH] [--functions 600]
    python benchmarks/cluster.py ann [--sizes 100000,300000,1000000] [--queries 50]

`index` prints functions/s for a full index of the same tree: one process (1 and 2 ONNX threads), and
Ray Data with 1 and 2 embedding actors (1 thread each) on a local 2-CPU Ray cluster, plus the cost of
starting Ray. Without --repo it indexes a copy of a few standard-library packages, cut to about
--functions functions; without --model, a random-weight model of the default recipe's shape
(benchmarks/engine.py: speed depends on a model's shape, not its weights).

`ann` fills a store with synthetic 256-d unit vectors (clustered: 2,000 centres plus noise, closer to
real embeddings than uniform noise; `--uniform` for the worst case), then prints per size: p50/p95
latency of the exact in-memory search, of LanceDB's flat scan, and of the IVF_PQ index at the search
settings `ann.maintain` chose, with the index's build time and recall@10 against exact search.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

from codesearch import ann
from codesearch.config import Settings
from codesearch.indexer import build_index
from codesearch.model import ModelFolder, default_model_path
from codesearch.store import SCHEMA_VERSION, FileState, IndexMeta, Store

STDLIB_PACKAGES = ("json", "email", "http", "logging", "asyncio", "xml", "concurrent", "importlib", "unittest")


def percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    return f"p50 {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms"


# --- indexing throughput ---------------------------------------------------------------------------


def small_repo(target: Path, functions: int) -> None:
    """Standard-library packages copied until about `functions` functions (counted by `def `)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    count = 0
    for package in STDLIB_PACKAGES:
        for file in sorted((stdlib / package).rglob("*.py")):
            if "test" in file.parts[-2:] or count >= functions:
                continue
            dest = target / package / file.relative_to(stdlib / package)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, dest)
            count += file.read_text(errors="replace").count("def ")


def bench_index(args: argparse.Namespace) -> None:
    import ray

    from benchmarks.engine import random_model
    from codesearch.cluster import build_index_on_cluster

    work = Path(tempfile.mkdtemp(prefix="codesearch-cluster-"))
    try:
        repo = work / "repo"
        if args.repo:
            shutil.copytree(args.repo, repo, ignore=shutil.ignore_patterns(".codesearch", ".git"))
        else:
            small_repo(repo, args.functions)
        model = Path(args.model) if args.model else default_model_path() or random_model(work / "model" / "m", repo)
        folder = ModelFolder.read(model)
        print(f"model: {folder.model_id} ({folder.dimension} dims, max {folder.max_length} tokens)")
        base = Settings(model=str(model), confirm_above=0)

        def line(label: str, report) -> None:
            print(f"{label}: {report.chunks_embedded} functions in {report.seconds:.1f}s: "
                  f"{report.embedded_per_s:.1f} functions/s", flush=True)

        for threads in (1, 2):
            settings = dataclasses.replace(base, threads=threads, index_dir=str(work / f"single-{threads}"))
            line(f"single process, {threads} ONNX thread(s)", build_index(repo, settings))
        started = time.perf_counter()
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        print(f"ray start (local, 2 CPUs): {time.perf_counter() - started:.1f}s")
        for workers in (1, 2):
            settings = dataclasses.replace(base, threads=1, index_dir=str(work / f"ray-{workers}"))
            line(f"ray, {workers} embedding actor(s) x 1 thread", build_index_on_cluster(repo, settings, workers=workers))
        again = build_index_on_cluster(repo, settings, workers=2)
        print(f"ray, no-change re-run: {again.chunks_embedded} embedded in {again.seconds:.2f}s")
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- ANN vs exact ----------------------------------------------------------------------------------


def synthetic(n: int, dim: int, uniform: bool, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if uniform:
        data = rng.normal(size=(n, dim)).astype(np.float32)
    else:
        centres = rng.normal(size=(2000, dim)).astype(np.float32)
        data = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.normal(size=(n, dim)).astype(np.float32)
    return data / np.linalg.norm(data, axis=1, keepdims=True)


def fill(path: Path, vectors: np.ndarray) -> Store:
    """A store holding `vectors` as window-0 rows of functions, 1,000 to a file, committed in batches."""
    import pyarrow as pa

    from codesearch.store import FILE_SCHEMA, chunk_schema

    store = Store.open(path, create=True)
    store.reset(IndexMeta(SCHEMA_VERSION, "synthetic", vectors.shape[1], 512, 64, time.time()))
    step = 100_000
    for start in range(0, len(vectors), step):
        part = vectors[start : start + step]
        ids = [f"r{start + i}" for i in range(len(part))]
        n = len(part)
        columns = {
            "id": [f"{i}:0" for i in ids], "chunk_id": ids, "window": [0] * n,
            "path": [f"f{(start + i) // 1000}.py" for i in range(n)], "language": ["python"] * n,
            "kind": ["function"] * n, "name": ids, "signature": [""] * n, "docstring": [""] * n,
            "start_line": [1] * n, "end_line": [2] * n, "code": [""] * n, "content_hash": ids, "lexical": ids,
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(part.reshape(-1)), vectors.shape[1]),
            "repo": ["synthetic"] * n,
        }
        store.chunks.add(pa.table(columns, schema=chunk_schema(vectors.shape[1])))
    row = dict(dataclasses.asdict(FileState("f.py", 1, 1, "", "python", 1)), repo="synthetic")
    store.files.add(pa.Table.from_pylist([row], schema=FILE_SCHEMA))
    return store


def timed(fn, queries: np.ndarray) -> tuple[list[float], list[list[str]]]:
    fn(queries[0])  # warm up (loads the matrix, opens the index)
    samples, ids = [], []
    for q in queries:
        started = time.perf_counter()
        rows = fn(q)
        samples.append(time.perf_counter() - started)
        ids.append([r["chunk_id"] for r in rows])
    return samples, ids


def recall(found: list[list[str]], truth: list[list[str]]) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def bench_ann(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="codesearch-ann-"))
    try:
        for n in (int(s) for s in args.sizes.split(",")):
            vectors = synthetic(n, 256, args.uniform)
            started = time.perf_counter()
            store = fill(work / f"n{n}", vectors)
            print(f"{n:,} x 256 ({'uniform' if args.uniform else 'clustered'}): written in "
                  f"{time.perf_counter() - started:.0f}s", flush=True)
            queries = ann.sample_queries(store.chunks, 256, args.queries, seed=1)
            exact_t, truth = timed(lambda q: store.vector_search(q, 10, None), queries)
            print(f"  exact in memory: {percentiles(exact_t)}", flush=True)
            flat_t, flat = timed(lambda q: store.vector_search(q, 10, "window = 0"), queries[: max(5, args.queries // 5)])
            print(f"  LanceDB flat scan (prefiltered, exact): {percentiles(flat_t)}", flush=True)
            started = time.perf_counter()
            found = ann.maintain(store, min_rows=0)
            built = time.perf_counter() - started
            print(f"  IVF_PQ built and measured in {built:.0f}s: recall@10 {found.recall:.3f} at nprobes "
                  f"{found.nprobes}, refine_factor {found.refine_factor} (trusted: {found.trusted})", flush=True)
            reader = Store.open(store.path)  # queries as the CLI makes them, hit columns included
            for nprobes, refine in ann.LADDER:
                reader._ann = (reader.tables, dataclasses.replace(found, nprobes=nprobes, refine_factor=refine))
                ann_t, got = timed(lambda q: reader.vector_search(q, 10, None), queries)
                print(f"  IVF_PQ nprobes {nprobes}, refine {refine}: {percentiles(ann_t)}, "
                      f"recall@10 {recall(got, truth):.3f}", flush=True)
            shutil.rmtree(work / f"n{n}", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    index = commands.add_parser("index")
    index.add_argument("--repo")
    index.add_argument("--model")
    index.add_argument("--functions", type=int, default=600)
    vectors = commands.add_parser("ann")
    vectors.add_argument("--sizes", default="100000,300000,1000000")
    vectors.add_argument("--queries", type=int, default=50)
    vectors.add_argument("--uniform", action="store_true")
    args = parser.parse_args()
    bench_index(args) if args.command == "index" else bench_ann(args)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
