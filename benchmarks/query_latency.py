"""What a query costs the model: loading a model folder, and embedding one natural-language query.

    python benchmarks/query_latency.py FOLDER [FOLDER ...] [--queries 200] [--rounds 2]

Each folder is loaded (`codesearch.model.Encoder`, both graphs where it has a query tower) and embeds
the same queries one at a time (default: CoSQA's dev queries from ../shared/bench, else a built-in
list), the folders taking turns for `--rounds` rounds in one run, so their ratios hold whatever else
the machine is doing. Prints load time and the p50 / p95 of one query's embedding per folder and round.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from codesearch.model import Encoder, ModelFolder  # noqa: E402

BENCH_QUERIES = HERE.parent.parent / "shared" / "bench" / "cosqa" / "queries-dev.jsonl"
FALLBACK = ["parse json", "retry with backoff", "read a file line by line", "sort a dict by value",
            "python check if a directory exists", "convert a string to a datetime"]


def queries(n: int) -> list[str]:
    if BENCH_QUERIES.is_file():
        with open(BENCH_QUERIES, encoding="utf-8") as f:
            return [json.loads(line)["query"] for line in f if line.strip()][:n]
    return (FALLBACK * (n // len(FALLBACK) + 1))[:n]


def measure(folder: Path, texts: list[str]) -> tuple[float, float, float]:
    """Load time (ms), and p50 / p95 (ms) of embedding each text alone."""
    started = time.perf_counter()
    encoder = Encoder(ModelFolder.read(folder), device="cpu", threads=2)
    load = time.perf_counter() - started
    encoder.embed_query("warm up")
    times = []
    for text in texts:
        started = time.perf_counter()
        encoder.embed_query(text)
        times.append(time.perf_counter() - started)
    return load * 1000, float(np.median(times)) * 1000, float(np.percentile(times, 95)) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    texts = queries(args.queries)
    print(f"{len(texts)} queries, one at a time, 2 threads")
    for round_ in range(1, args.rounds + 1):
        for folder in args.folders:
            load, p50, p95 = measure(folder, texts)
            tower = "query tower" if ModelFolder.read(folder).query_model else "one graph"
            print(f"round {round_}  {folder} ({tower}): load {load:.0f} ms, query p50 {p50:.2f} ms, p95 {p95:.2f} ms")


if __name__ == "__main__":
    main()
