"""Engine throughput and latency on a real tree (default: a copy of the Python standard library).

    python benchmarks/engine.py [--repo PATH] [--model PATH] [--scale 100000] [--queries 50]

Prints: files/s and functions/s chunked, functions/s embedded, index size, full index time,
no-change re-index time, time until a one-file edit is searchable, and query latency p50/p95 for
semantic, lexical and hybrid search (also at `--scale` functions, by replicating the index's rows).
Without --model it uses the shipped default model, or else a random-weight model of the default
recipe's shape exported by the trainer (the speed of a model depends on its shape, not its weights).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

from codesearch.chunking import chunk_text
from codesearch.config import Settings
from codesearch.files import SkipFile, read_source, walk
from codesearch.indexer import build_index
from codesearch.model import Encoder, ModelFolder, default_model_path
from codesearch.search import Index

QUERIES = [
    "parse json", "retry with backoff", "read a file line by line", "compress data with gzip",
    "format a date", "open a socket connection", "split a path into parts", "sort a list of tuples",
    "escape html characters", "decode base64", "spawn a subprocess and wait", "compute md5 hash",
    "parse command line arguments", "walk a directory tree", "send an email", "match a regular expression",
    "convert string to integer", "create a temporary file", "lock a thread", "serialize to xml",
]


def random_model(out: Path, repo: Path) -> Path:
    """A random-weight model of the default CPU recipe's shape (BaseConfig defaults, PMA 256, int8),
    exported by the trainer: the speed of a model depends on its shape, not on its weights."""
    import torch

    from trainer.export import export_onnx
    from trainer.model import BaseConfig, Encoder, EncoderConfig, build_base
    from trainer.tokenizer import special_ids, train_bpe

    texts = []
    for file in walk(repo).files[:2000]:
        try:
            texts.append(read_source(file)[0])
        except SkipFile:
            continue
    out.parent.mkdir(parents=True, exist_ok=True)
    tok = train_bpe(texts, vocab_size=16384, out_path=out.parent / "tokenizer.json")
    ids = special_ids(tok)
    torch.manual_seed(0)
    base = build_base(BaseConfig(vocab_size=tok.get_vocab_size()), pad_token_id=ids["pad"], eos_token_id=ids["eos"])
    encoder = Encoder(base, EncoderConfig(pooling="pma", dimension=256, pma_heads=8))
    export_onnx(encoder, out.parent / "tokenizer.json", out, model_id="random-default-shape", max_length=512,
                query_prefix="query: ", code_prefix="", quantize="int8", card="random weights, for speed only")
    return out


def percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    return f"p50 {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms"


def copy_code(source: Path, target: Path) -> None:
    """Copy the code files of `source` (what codesearch would read, less installed packages) into `target`."""
    for file in walk(source, extra_ignores=["site-packages/", "dist-packages/"]).files:
        dest = target / file.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file.abs_path, dest)


def bench_chunking(repo: Path) -> list[str]:
    started = time.perf_counter()
    walked = walk(repo)
    texts = []
    chunks = 0
    for file in walked.files:
        try:
            text, _ = read_source(file)
        except SkipFile:
            continue
        chunks += len(chunk_text(text, file.language, file.path).chunks)
        texts.append(text)
    seconds = time.perf_counter() - started
    print(f"chunking: {len(walked.files)} files, {chunks} functions in {seconds:.1f}s: "
          f"{len(walked.files) / seconds:.0f} files/s, {chunks / seconds:.0f} functions/s")
    return texts


def sample_functions(repo: Path, size: int) -> tuple[list[str], list[str]]:
    """`size` functions and methods of `repo` (no classes), picked at random with a fixed seed, and
    their languages."""
    codes: list[tuple[str, str]] = []
    for file in walk(repo).files:
        try:
            text, _ = read_source(file)
        except SkipFile:
            continue
        codes.extend((c.code, c.language) for c in chunk_text(text, file.language, file.path).chunks if c.kind != "class")
    rng = np.random.default_rng(0)
    picked = [codes[i] for i in rng.choice(len(codes), size=min(size, len(codes)), replace=False)]
    return [code for code, _ in picked], [language for _, language in picked]


def bench_embedding(encoder: Encoder, repo: Path, sample: int) -> None:
    picked, languages = sample_functions(repo, sample)
    lengths = sorted(len(ids) for ids in encoder.tokenize(picked, encoder.folder.code_prefix))
    started = time.perf_counter()
    encoder.embed_texts(picked, kind="code", languages=languages)
    seconds = time.perf_counter() - started
    print(f"embedding: {len(picked)} functions (median {lengths[len(lengths) // 2]} tokens) in {seconds:.1f}s: "
          f"{len(picked) / seconds:.0f} functions/s on {encoder.providers[0]}")


def bench_queries(index: Index, label: str, rounds: int) -> None:
    codes = [hit.code for query in QUERIES for hit in index.search(query, 3, mode="lexical")]
    for what, ask, inputs in (("query", index.search, QUERIES), ("clone query (similar --code)", index.similar, codes)):
        for mode in ("semantic", "lexical", "hybrid"):
            ask(inputs[0], 10, mode=mode)  # warm up
            samples = []
            for i in range(rounds):
                started = time.perf_counter()
                ask(inputs[i % len(inputs)], 10, mode=mode)
                samples.append(time.perf_counter() - started)
            print(f"{what} {mode} at {label}: {percentiles(samples)}")


def scale_up(index_root: Path, settings: Settings, target: int) -> Index:
    """Replicate the index's rows under new paths until it holds `target` functions."""
    index = Index.open(index_root, settings)
    rows = index.store.chunks.to_arrow().to_pylist()
    have = index.store.counts()["chunks"]
    copy = 0
    while have < target:
        copy += 1
        batch = []
        for row in rows:
            new = dict(row, path=f"copy{copy}/{row['path']}")
            new["chunk_id"] = f"{copy}-{row['chunk_id']}"
            new["id"] = f"{copy}-{row['id']}"
            batch.append(new)
        paths = sorted({r["path"] for r in batch})
        index.store.replace_files(paths, batch, [])
        have += sum(1 for r in batch if r["window"] == 0)
    index.store.finish()
    return Index.open(index_root, settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", default=sysconfig.get_paths()["stdlib"])
    parser.add_argument("--model")
    parser.add_argument("--scale", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--embed-sample", type=int, default=1000)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="codesearch-bench-"))
    try:
        repo = work / "repo"
        copy_code(Path(args.repo), repo)
        print(f"repo: code files of {args.repo}")
        model = Path(args.model) if args.model else default_model_path() or random_model(work / "model" / "m", repo)
        folder = ModelFolder.read(model)
        print(f"model: {folder.model_id} ({folder.dimension} dims, max {folder.max_length} tokens)")
        bench_chunking(repo)
        settings = Settings(model=str(model))
        bench_embedding(Encoder(folder), repo, args.embed_sample)

        report = build_index(repo, settings)
        size = sum(f.stat().st_size for f in (repo / ".codesearch").rglob("*") if f.is_file())
        print(f"full index: {report.files} files, {report.chunks} functions in {report.seconds:.1f}s "
              f"({report.embedded_per_s:.0f} functions/s), index {size / 1e6:.1f} MB")
        again = build_index(repo, settings)
        print(f"no-change re-index: {again.seconds:.2f}s")

        edited = next(f for f in sorted(repo.rglob("*.py")) if f.stat().st_size > 2000)
        marker = "def zzqx_fresh_marker_function():\n    return 'codesearch benchmark'\n"
        started = time.perf_counter()
        edited.write_text(edited.read_text() + "\n\n" + marker)
        build_index(repo, settings)
        index = Index.open(repo, settings)
        found = index.search("zzqx fresh marker function", 1, mode="lexical")
        seconds = time.perf_counter() - started
        assert found and found[0].name == "zzqx_fresh_marker_function"
        print(f"one-file edit searchable after: {seconds:.2f}s (re-index + query)")

        bench_queries(index, f"{report.chunks} functions", args.queries)
        if args.scale > report.chunks:
            big = scale_up(repo, settings, args.scale)
            bench_queries(big, f"{big.store.counts()['chunks']} functions", args.queries)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
