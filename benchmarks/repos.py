"""Search quality on real repositories: packages fetched from PyPI, npm and Debian at pinned versions.

    python benchmarks/repos.py [--repos NAME,...] [--split tune|heldout|all] [--json] [--cache DIR]

Each `benchmarks/repos/*.toml` names one package (registry, name, version, sha256 of the download)
and 15 queries written by hand: 5 "semantic" (what the code does), 5 "architecture" (where or how
something is organised) and 5 "symbol" (an exact identifier), with the files that answer them and a
`split` ("tune" or "heldout": weights may be tuned on "tune" only; figures are given for both).

The script downloads each package with the registry's own client into a cache outside the
repository (default ~/.cache/codesearch-bench/repos), checks its sha256, unpacks it, indexes it once
with the shipped default model (later runs update the same index incrementally) and runs every query
through codesearch's `hybrid`, `semantic` and `lexical` modes and through plain BM25 (bm25s, k1 1.5,
b 0.75) over the same chunks' identifier-split text. Scores are file level: a hit counts when its
path is one of the relevant files, only the first hit of each file counts, and NDCG@10 and MRR@10
are taken over the top 10 hits. Printed per category, per language and overall.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from codesearch.config import Settings
from codesearch.errors import CodesearchError
from codesearch.indexer import build_index
from codesearch.search import Index

HERE = Path(__file__).resolve().parent / "repos"
CATEGORIES = ("semantic", "architecture", "symbol")
MODES = ("hybrid", "semantic", "lexical")
METHODS = MODES + ("bm25",)
K = 10
DEBIAN_SOURCES = "deb-src http://deb.debian.org/debian bookworm main\n"


@dataclass(frozen=True)
class Query:
    text: str
    category: str
    split: str
    relevant: tuple[str, ...]  # paths relative to the package root, optionally "path:START-END"

    @property
    def files(self) -> frozenset[str]:
        return frozenset(r.split(":", 1)[0] for r in self.relevant)


@dataclass(frozen=True)
class Repo:
    name: str
    language: str
    registry: str  # pypi | npm | debian-source | debian-binary
    package: str
    version: str
    sha256: str
    subdir: str = ""  # the folder indexed, relative to the package root ("" = all of it)
    queries: tuple[Query, ...] = field(default_factory=tuple)


def load_repos(folder: Path = HERE) -> list[Repo]:
    repos = []
    for path in sorted(folder.glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        source = data["source"]
        queries = tuple(Query(q["text"], q["category"], q["split"], tuple(q["relevant"])) for q in data["query"])
        for q in queries:
            assert q.category in CATEGORIES and q.split in ("tune", "heldout") and q.relevant, (path, q)
        repos.append(Repo(path.stem, data["language"], source["registry"], source["name"], source["version"],
                          source["sha256"], data.get("subdir", ""), queries))
    return repos


# --- fetching ------------------------------------------------------------------------------------

def _run(cmd: list[str], cwd: Path) -> None:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")


def _apt_options(cache: Path) -> list[str]:
    """apt-get reading a deb-src list of its own, kept in the cache (the system's apt setup is not touched)."""
    apt = cache / "apt"
    if not (apt / "sources.list").exists():
        for sub in ("lists/partial", "cache/archives/partial"):
            (apt / sub).mkdir(parents=True, exist_ok=True)
        (apt / "sources.list").write_text(DEBIAN_SOURCES, encoding="utf-8")
    options = [f"-oDir::Etc::SourceList={apt / 'sources.list'}", "-oDir::Etc::SourceParts=/dev/null",
               f"-oDir::State::Lists={apt / 'lists'}", f"-oDir::Cache={apt / 'cache'}"]
    if not any((apt / "lists").glob("*Sources*")):
        _run(["apt-get", *options, "update"], apt)
    return options


def download(repo: Repo, cache: Path) -> Path:
    """The package's file in `cache/downloads`, fetched with its registry's client if not there yet."""
    downloads = cache / "downloads" / repo.name
    found = [p for p in downloads.glob("*") if p.is_file()] if downloads.exists() else []
    if not found:
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            work = Path(tmp)
            spec = f"{repo.package}=={repo.version}"
            if repo.registry == "pypi":
                _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", spec], work)
            elif repo.registry == "npm":
                _run(["npm", "pack", "-q", f"{repo.package}@{repo.version}"], work)
            elif repo.registry == "debian-source":
                # Only the upstream tarball: some mirrors lack the .debian.tar, which is not needed.
                _run(["apt-get", *_apt_options(cache), "source", "--download-only", "--tar-only",
                      f"{repo.package}={repo.version}"], work)
            elif repo.registry == "debian-binary":
                _run(["apt-get", "download", f"{repo.package}={repo.version}"], work)
            else:
                raise ValueError(f"unknown registry {repo.registry}")
            found = [p for p in work.iterdir() if p.is_file() and (repo.registry != "debian-source" or ".orig." in p.name)]
            if len(found) != 1:
                raise RuntimeError(f"{repo.name}: expected one downloaded file, got {[p.name for p in found]}")
            downloads.mkdir(parents=True, exist_ok=True)
            shutil.move(found[0], downloads / found[0].name)
        found = [downloads / found[0].name]
    digest = hashlib.sha256(found[0].read_bytes()).hexdigest()
    if digest != repo.sha256:
        raise RuntimeError(f"{repo.name}: sha256 of {found[0].name} is {digest}, pinned {repo.sha256}")
    return found[0]


def unpack(repo: Repo, archive: Path, cache: Path) -> Path:
    """The package root: the archive unpacked, its single top folder (if any) stripped."""
    target = cache / "src" / f"{repo.name}-{repo.version}"
    if (target / ".complete").exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    if archive.suffix == ".deb":
        _run(["dpkg-deb", "-x", str(archive), str(partial)], partial)
    else:
        with tarfile.open(archive) as tar:
            tar.extractall(partial, filter="data")
    entries = list(partial.iterdir())
    single = len(entries) == 1 and entries[0].is_dir() and archive.suffix != ".deb"
    root = entries[0] if single else partial  # a .deb keeps its absolute layout (usr/...)
    root.rename(target)
    shutil.rmtree(partial, ignore_errors=True)
    (target / ".complete").write_text("", encoding="utf-8")  # a dot file: the walker leaves it out
    return target


# --- scoring -------------------------------------------------------------------------------------

def file_scores(paths: list[str], relevant: frozenset[str], k: int = K) -> tuple[float, float]:
    """NDCG@k and MRR@k at the file level: only the first hit of each file counts (later ones gain 0)."""
    seen: set[str] = set()
    dcg, rr = 0.0, 0.0
    for rank, path in enumerate(paths[:k], start=1):
        if path in seen:
            continue
        seen.add(path)
        if path in relevant:
            dcg += 1.0 / math.log2(rank + 1)
            rr = rr or 1.0 / rank
    ideal = sum(1.0 / math.log2(r + 1) for r in range(1, min(len(relevant), k) + 1))
    return dcg / ideal, rr


class BM25Chunks:
    """Plain BM25 (bm25s, k1 1.5, b 0.75) over the index's chunks, on the same identifier-split text
    (the `lexical` column) that codesearch's full-text search reads."""

    def __init__(self, index: Index) -> None:
        import bm25s

        from codesearch.lexical import identifier_tokens

        self._tokens = identifier_tokens
        table = index.store.chunks.to_arrow()
        columns = set(table.column_names)
        text_column = "lexical" if "lexical" in columns else "code"
        seen: dict[str, int] = {}
        self.paths: list[str] = []
        texts: list[str] = []
        for cid, path, text in zip(table["chunk_id"].to_pylist(), table["path"].to_pylist(),
                                   table[text_column].to_pylist()):
            if cid in seen:  # windows of one chunk: join their text
                texts[seen[cid]] += " " + text
                continue
            seen[cid] = len(texts)
            self.paths.append(path)
            texts.append(text)
        self.retriever = bm25s.BM25(k1=1.5, b=0.75)
        self.empty = not texts
        if texts:
            self.retriever.index([self._tokens(t) or ["_"] for t in texts], show_progress=False)

    def search(self, text: str, k: int = K) -> list[str]:
        tokens = self._tokens(text)
        if self.empty or not tokens:
            return []
        docs, _ = self.retriever.retrieve([tokens], k=min(k, len(self.paths)), show_progress=False)
        return [self.paths[int(i)] for i in docs[0]]


# --- running -------------------------------------------------------------------------------------

def check(repo: Repo, cache: Path) -> list[str]:
    """Fetch and unpack `repo`; the annotation's problems: relevant files that are not there, or
    outside the indexed folder, and symbol queries whose last name is not in any relevant file."""
    root = unpack(repo, download(repo, cache), cache)
    problems = []
    for q in repo.queries:
        for path in q.files:
            if not (root / path).is_file() or not path.startswith(repo.subdir):
                problems.append(f"{q.text!r}: no file {path}")
        if q.category == "symbol":
            name = q.text.replace("::", ".").replace("#", ".").split(".")[-1]
            if not any(name in (root / p).read_text(errors="replace") for p in q.files if (root / p).is_file()):
                problems.append(f"{q.text!r}: {name} not in {sorted(q.files)}")
    return problems


def evaluate(repo: Repo, cache: Path, splits: set[str], log) -> tuple[list[dict], dict]:
    root = unpack(repo, download(repo, cache), cache)
    indexed = root / repo.subdir if repo.subdir else root
    prefix = f"{repo.subdir.rstrip('/')}/" if repo.subdir else ""
    settings = Settings(index_dir=str(cache / "index" / f"{repo.name}-{repo.version}"), confirm_above=0)
    started = time.perf_counter()
    try:
        report = build_index(indexed, settings)
    except CodesearchError as exc:  # e.g. an index made by another codesearch version: it is only a cache
        log(f"{repo.name}: rebuilding the cached index ({exc})")
        shutil.rmtree(settings.index_dir)
        report = build_index(indexed, settings)
    index = Index.open(indexed, settings)
    status = index.status()
    info = {"repo": repo.name, "language": repo.language, "files": status.files, "chunks": status.chunks,
            "languages": status.languages, "index_s": round(time.perf_counter() - started, 1),
            "embedded": report.chunks_embedded}
    log(f"{repo.name}: {status.files} files, {status.chunks} chunks {dict(status.languages)} "
        f"({report.chunks_embedded} embedded in {info['index_s']} s)")
    bm25 = BM25Chunks(index)
    rows = []
    for q in repo.queries:
        if q.split not in splits:
            continue
        ranked = {mode: [prefix + h.path for h in index.search(q.text, K, mode=mode)] for mode in MODES}
        ranked["bm25"] = [prefix + p for p in bm25.search(q.text, K)]
        for method, paths in ranked.items():
            ndcg, rr = file_scores(paths, q.files)
            rows.append({"repo": repo.name, "language": repo.language, "query": q.text, "category": q.category,
                         "split": q.split, "method": method, "ndcg": ndcg, "mrr": rr, "top": paths[:3]})
    return rows, info


def summarise(rows: list[dict]) -> dict:
    """Mean NDCG@10 and MRR@10 per method, overall, per category, per language and per split."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        for key in (("all",), ("category", row["category"]), ("language", row["language"]),
                    ("split", row["split"]), ("repo", row["repo"])):
            groups[(row["method"], *key)].append(row)
    return {" ".join(key): {"ndcg": float(np.mean([r["ndcg"] for r in group])),
                            "mrr": float(np.mean([r["mrr"] for r in group])), "queries": len(group)}
            for key, group in groups.items()}


def table(summary: dict, rows: list[dict], infos: list[dict]) -> str:
    def own(info: dict) -> int:  # functions in the repository's own language (the rest: tests, bindings...)
        return info["languages"].get(info["language"], 0)

    def cell(method: str, *key: str, metric: str = "ndcg") -> str:
        found = summary.get(" ".join((method, *key)))
        return f"{found[metric]:.3f}" if found else "-"

    splits = sorted({r["split"] for r in rows}, reverse=True)
    queries = len({(r["repo"], r["query"]) for r in rows})
    head = ["method", "NDCG@10 all", "MRR@10 all", *(f"NDCG {s}" for s in splits), *CATEGORIES]
    out = [f"{queries} queries, {len(infos)} repositories; NDCG@10 unless marked", "",
           "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for m in METHODS:
        out.append("| " + " | ".join([m, cell(m, "all"), cell(m, "all", metric="mrr"), *(cell(m, "split", s) for s in splits),
                                      *(cell(m, "category", c) for c in CATEGORIES)]) + " |")
    out += ["", "| language | repositories | functions in the language / all | " + " | ".join(METHODS) + " |",
            "| --- | --- | --- |" + " --- |" * len(METHODS)]
    for language in sorted({i["language"] for i in infos}):
        mine = [i for i in infos if i["language"] == language]
        out.append(f"| {language} | {len(mine)} | {sum(own(i) for i in mine)} / {sum(i['chunks'] for i in mine)} | "
                   + " | ".join(cell(m, "language", language) for m in METHODS) + " |")
    out += ["", "| language | repository | functions in the language / all | " + " | ".join(METHODS) + " |",
            "| --- | --- | --- |" + " --- |" * len(METHODS)]
    for info in sorted(infos, key=lambda i: (i["language"], i["repo"])):
        out.append(f"| {info['language']} | {info['repo']} | {own(info)} / {info['chunks']} | "
                   + " | ".join(cell(m, "repo", info["repo"]) for m in METHODS) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repos", default="", help="comma-separated names (file stems in benchmarks/repos)")
    parser.add_argument("--split", choices=("tune", "heldout", "all"), default="all")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/codesearch-bench/repos"))
    parser.add_argument("--check", action="store_true", help="only fetch, unpack and check the annotations")
    args = parser.parse_args(argv)
    repos = load_repos()
    if args.repos:
        wanted = set(args.repos.split(","))
        unknown = wanted - {r.name for r in repos}
        if unknown:
            parser.error(f"unknown repositories: {', '.join(sorted(unknown))}")
        repos = [r for r in repos if r.name in wanted]
    cache = Path(args.cache).expanduser().resolve()
    cache.mkdir(parents=True, exist_ok=True)
    splits = {"tune", "heldout"} if args.split == "all" else {args.split}
    if args.check:
        bad = 0
        for repo in repos:
            problems = check(repo, cache)
            bad += len(problems)
            print(f"{repo.name}: {len(repo.queries)} queries, " + ("ok" if not problems else "; ".join(problems)))
        return 1 if bad else 0
    rows, infos, failed = [], [], {}
    for repo in repos:
        try:
            got, info = evaluate(repo, cache, splits, lambda m: print(m, file=sys.stderr, flush=True))
        except (RuntimeError, CodesearchError) as exc:
            failed[repo.name] = str(exc)
            print(f"{repo.name}: {exc}", file=sys.stderr)
            continue
        rows += got
        infos.append(info)
    summary = summarise(rows)
    if args.json:
        print(json.dumps({"summary": summary, "repos": infos, "failed": failed, "queries": rows}, indent=1))
    else:
        print(table(summary, rows, infos))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
