"""(query, code) pairs from source trees: the engine's walk and chunker, then filter, dedupe, split.

    sources -> repositories -> walk + chunk -> functions with docstrings
            -> query = first sentence of the docstring, code = the function without its docstring
               (and code_full = with it, as the engine embeds it, where they differ)
            -> drop trivial and test functions -> dedupe (exact, near) -> decontaminate (bench)
            -> split by repository -> one BM25 hard negative per pair -> pairs-{train,valid}.jsonl

A repository is one source of the recipe (or one match of a glob): the split never puts one on
both sides, so validation measures projects the model has not seen. The training repositories'
files (less any holding a bench function) are also written as corpus-train.jsonl for the tokenizer
and pretraining. Every dropped function and file is counted by reason in stats.json.
"""

from __future__ import annotations

import glob
import importlib.metadata
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

import numpy as np

from codesearch.chunking import Chunk, chunk_text, code_without_docstring, language_for_path
from codesearch.errors import CodesearchError
from codesearch.files import SkipFile, SourceFile, looks_generated, read_source, walk
from codesearch.lexical import identifier_tokens
from trainer.dedupe import BenchIndex, NearDuplicateIndex, decontaminate, normalised_hash, shingles
from trainer.fetch import fetch
from trainer.jsonl import write_json, write_jsonl
from trainer.recipe import DataConfig

# Embeds texts as "query" or "code": (texts, kind) -> float32 [N, D], rows L2-normalised.
EmbedFn = Callable[[list[str], str], np.ndarray]


@dataclass(frozen=True)
class Repository:
    name: str
    root: Path  # a directory, or a single source file
    version: str = ""  # the installed distribution's version, when the recipe pins one


# ----------------------------------------------------------------------------- sources


def resolve_sources(sources: list[dict], download_dir: Path) -> tuple[list[Repository], list[str]]:
    """The recipe's sources as repositories (sorted by name), and notes on optional ones not found.

    Version pins of `path` sources are checked against the installed distribution named like the
    repository; pypi, npm and deb sources are downloaded at their pin into `download_dir` (trainer.fetch),
    and a deb's `include` globs pick the repositories inside it.
    """
    repos: dict[str, Repository] = {}
    notes: list[str] = []
    for source in sources:
        if "kind" in source:
            try:
                root = fetch(source["kind"], source["spec"], download_dir, sdist=source["sdist"],
                             archive=source.get("archive", ""))
            except CodesearchError as exc:
                if not source["optional"]:
                    raise
                notes.append(str(exc))
                continue
            if source.get("include"):
                matches = _included(root, source["include"], source["exclude"])
                if not matches:
                    patterns = ", ".join(source["include"])
                    raise CodesearchError(f"source {source['spec']}: {patterns} matches nothing in the package")
                found = [Repository(f"{source['repo']}-{m.name}", m, source["version"]) for m in matches]
            else:
                found = [Repository(source["repo"], root, source["version"])]
        elif "glob" in source:
            matches = _repository_roots(map(Path, glob.glob(source["glob"])), source["exclude"])
            if not matches:
                if source["optional"]:
                    notes.append(f"no match for {source['glob']}")
                    continue
                raise CodesearchError(f"source {source['glob']}: matches no directory or source file")
            found = [Repository(m.name, m) for m in matches]
        else:
            root = Path(source["path"])
            if not root.exists():
                if source["optional"]:
                    notes.append(f"missing {root}")
                    continue
                raise CodesearchError(f"source {root}: no such file or directory")
            found = [Repository(source["repo"], root, _installed_version(source["repo"], source["version"], notes))]
        for repo in found:
            if repo.name in repos:
                raise CodesearchError(f"two sources are both named repository {repo.name!r}: give one a `repo` name")
            repos[repo.name] = repo
    return [repos[name] for name in sorted(repos)], notes


def _included(root: Path, patterns: list[str], exclude: list[str]) -> list[Path]:
    """The repositories that `patterns` (globs relative to `root`) pick inside it."""
    base = root.resolve()
    return _repository_roots((m for pattern in patterns for m in root.glob(pattern)
                              if m.resolve().is_relative_to(base)), exclude)


def _repository_roots(matches, exclude: list[str]) -> list[Path]:
    """Glob matches that can be repositories, sorted: directories and source files, less hidden
    and excluded names."""
    return sorted({m for m in matches if not m.name.startswith(".") and not any(fnmatch(m.name, x) for x in exclude)
                   and (m.is_dir() or language_for_path(m.name))})


def _installed_version(dist: str, pinned: str, notes: list[str]) -> str:
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return pinned
    if pinned and version != pinned:
        notes.append(f"{dist}: recipe pins {pinned}, found {version}")
    return version


def source_files(repo: Repository, cfg: DataConfig, skipped: Counter) -> list[SourceFile]:
    """The files of a repository that the engine would index (a single-file repository is its file)."""
    languages = cfg.languages or None
    if repo.root.is_dir():
        result = walk(repo.root, extra_ignores=cfg.ignore, languages=languages, max_file_bytes=cfg.max_file_bytes)
        skipped.update(result.skipped)
        return result.files
    language = language_for_path(repo.root.name)
    if language is None or (languages and language not in languages):
        return []
    st = repo.root.stat()
    with open(repo.root, "rb") as f:
        if looks_generated(f.read(4096)):
            skipped["generated"] += 1
            return []
    return [SourceFile(repo.root.name, repo.root, st.st_size, st.st_mtime_ns, language)]


# ----------------------------------------------------------------------------- one function -> one pair

_FIELD_LINE = re.compile(r"^(?:[:@]\w+|\w+\s*:\s*$|(?:Args|Arguments|Parameters|Returns?|Raises|Yields|Example|Examples|Note|Notes)\s*:?\s*$)")
_ROLE = re.compile(r":[\w:.-]+:`([^`]*)`")  # reST roles, :func:`foo` -> foo
_INLINE_TAG = re.compile(r"\{@\w+\s+([^}]*)\}")  # JSDoc/Javadoc {@link Foo} -> Foo
_XML_TAG = re.compile(r"<[^<>]{1,80}>")  # C# <see cref="x"/>, HTML <b>
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")
_ABBREVIATIONS = {"e.g", "i.e", "etc", "vs", "cf", "approx", "resp"}
_BOILERPLATE = re.compile(
    r"^(?:todo|fixme|xxx|hack|deprecated|auto-?generated|generated\b|missing docstring|insert description"
    r"|description\b|docstring\b|undocumented|no doc|overrides?\b|inherit|see\b|copyright|license|spdx"
    r"|initialize self|implements?\b|-\*-|noqa|pylint|type:)",
    re.IGNORECASE,
)
_BANNER = re.compile(r"[=\-*#~_+/]{4,}")  # "===== Helper methods =====" section comments
_SIGNATURE = re.compile(r"^[\w.]+\(.*\)")  # "add_argument(dest, ...)": a call signature, not a description
_STOP = {"the", "a", "an", "of", "to", "for", "and", "or", "is", "this", "it", "in", "on", "by", "with"}
_TEST_DIRS = {"test", "tests", "testing", "__tests__", "testdata", "spec", "specs"}
_TEST_FILE = re.compile(r"(?:^test_.*|.*_test\.\w+|.*\.(?:test|spec)\.\w+|.*Tests?\.(?:java|cs|kt)|.*_spec\.rb)$")
_TEST_NAME = re.compile(r"(?:^|\.)(?:test(?:_\w*|[A-Z0-9]\w*)?|Test[A-Z0-9_]\w*|\w+_test)$")  # not "testament"


def first_sentence(docstring: str) -> str:
    """The docstring's first sentence, on one line, without markup; stops at a parameter list."""
    lines = []
    for line in docstring.strip().split("\n"):
        line = line.strip()
        if not line or _FIELD_LINE.match(line):
            if lines:
                break
            continue
        lines.append(line)
    text = " ".join(" ".join(lines).split())
    text = _INLINE_TAG.sub(r"\1", _ROLE.sub(r"\1", text))
    text = " ".join(_XML_TAG.sub(" ", text).replace("``", "").replace("`", "").split())
    for match in _SENTENCE_END.finditer(text):
        if text[: match.start()].rsplit(" ", 1)[-1].lower() not in _ABBREVIATIONS:
            return text[: match.end()]
    return text


def without_name_prefix(query: str, name: str) -> str:
    """A kernel-doc summary without its leading "name - " or "name(): " (the name is in the code)."""
    short = re.escape(name.rsplit(".", 1)[-1])
    return re.sub(rf"^{short}\s*(?:\(\))?\s*(?:-+|:)\s+", "", query, count=1)


def trivial_query(query: str, name: str, cfg: DataConfig) -> str | None:
    """Why a query is not worth training on ("short_query", ...), or None if it is."""
    words = re.findall(r"[A-Za-z]{2,}", query)
    if len(words) < cfg.min_query_words:
        return "short_query"
    if len(query) > cfg.max_query_chars:
        return "long_query"
    if _BOILERPLATE.match(query) or _BANNER.search(query):
        return "boilerplate_query"
    if _SIGNATURE.match(query):
        return "signature_query"
    if sum(c.isascii() for c in query) < 0.8 * len(query):
        return "non_english_query"
    name_tokens = set(identifier_tokens(name))
    if {w.lower() for w in words} - _STOP <= name_tokens:
        return "name_only_query"  # "Get value." for get_value says nothing the name does not
    return None


def is_test(chunk: Chunk) -> bool:
    parts = chunk.path.split("/")
    return bool(_TEST_DIRS & set(parts[:-1])) or bool(_TEST_FILE.match(parts[-1])) or bool(_TEST_NAME.search(chunk.name))


def pair_from_chunk(chunk: Chunk, repo: str, cfg: DataConfig) -> tuple[dict | None, str]:
    """A training pair from one chunk, or (None, reason it was dropped)."""
    if chunk.kind not in ("function", "method"):
        return None, "class"
    if not chunk.docstring.strip():
        return None, "no_docstring"
    if is_test(chunk):
        return None, "test"
    query = without_name_prefix(first_sentence(chunk.docstring), chunk.name)
    reason = trivial_query(query, chunk.name, cfg)
    if reason:
        return None, reason
    code = code_without_docstring(chunk)
    if chunk.language == "python" and code == chunk.code:
        return None, "comment_not_docstring"  # a comment above a Python def is often a section banner
    if sum(1 for line in code.splitlines() if line.strip()) < cfg.min_code_lines:
        return None, "short_code"
    if len(code) > cfg.max_code_chars:
        return None, "long_code"
    pair = {"query": query, "code": code, "repo": repo, "path": chunk.path, "name": chunk.name,
            "language": chunk.language, "start_line": chunk.start_line}
    if code != chunk.code:
        pair["code_full"] = chunk.code  # as the engine embeds it, docstring included
    return pair, "kept"


def extract(repos: list[Repository], cfg: DataConfig, counts: dict[str, Counter]) -> tuple[list[dict], list[dict]]:
    """All candidate pairs, and every readable file ({repo, path, text, functions: their code})."""
    pairs, files = [], []
    for repo in repos:
        for file in source_files(repo, cfg, counts["skipped_files"]):
            try:
                text, _ = read_source(file, cfg.max_file_bytes)
            except SkipFile as skip:
                counts["skipped_files"][skip.reason] += 1
                continue
            result = chunk_text(text, file.language, file.path)
            counts["files"]["parsed_with_errors" if result.had_errors else "parsed"] += 1
            functions = [c for c in result.chunks if c.kind != "class"]
            files.append({"repo": repo.name, "path": file.path, "text": text,
                          "functions": [code_without_docstring(c) for c in functions]})
            for chunk in result.chunks:
                pair, reason = pair_from_chunk(chunk, repo.name, cfg)
                counts["chunks"][reason] += 1
                if pair is not None:
                    pairs.append(pair)
    return pairs, files


# ----------------------------------------------------------------------------- dedupe, split


def dedupe(pairs: list[dict], threshold: float) -> tuple[list[dict], dict[str, int]]:
    """Keep the first of each group of exact (normalised text) or near (Jaccard >= threshold) duplicate codes."""
    seen: set[str] = set()
    near = NearDuplicateIndex(threshold)
    kept, counts = [], {"exact": 0, "near": 0}
    for i, pair in enumerate(pairs):
        digest = normalised_hash(pair["code"])
        if digest in seen:
            counts["exact"] += 1
            continue
        seen.add(digest)
        if near.add_unless_similar(i, shingles(pair["code"])) is not None:
            counts["near"] += 1
            continue
        kept.append(pair)
    return kept, counts


def split_by_repository(pairs: list[dict], fraction: float, seed: int,
                        pinned: list[str] | None = None) -> tuple[list[dict], list[dict], list[str]]:
    """(train, valid, validation repos): whole repositories, shuffled with `seed`, are moved to
    validation until it holds about `fraction` of the pairs (a repository that would overshoot it
    by half is passed over). `pinned` names the validation repositories instead, so that a corpus
    can grow without moving its split."""
    sizes = Counter(p["repo"] for p in pairs)
    if pinned:
        valid_repos = set(pinned) & set(sizes)
        if not valid_repos:
            raise CodesearchError(f"valid_repos: none of {sorted(pinned)} has pairs")
        return _split_off(pairs, valid_repos)
    if fraction <= 0:
        return list(pairs), [], []
    if len(sizes) < 2:
        raise CodesearchError(
            f"cannot split by repository: all pairs come from {len(sizes)} repository; add sources or set valid_fraction = 0"
        )
    order = sorted(sizes)
    random.Random(seed).shuffle(order)
    target = fraction * len(pairs)
    chosen: list[str] = []
    taken = 0
    for repo in order:
        if taken >= target:
            break
        if taken + sizes[repo] <= 1.5 * target and len(chosen) < len(sizes) - 1:
            chosen.append(repo)
            taken += sizes[repo]
    if not chosen:  # every repository is bigger than the target: take the smallest
        chosen = [min(sizes, key=lambda r: (sizes[r], r))]
    return _split_off(pairs, set(chosen))


def _split_off(pairs: list[dict], valid_repos: set[str]) -> tuple[list[dict], list[dict], list[str]]:
    train = [p for p in pairs if p["repo"] not in valid_repos]
    valid = [p for p in pairs if p["repo"] in valid_repos]
    return train, valid, sorted(valid_repos)


# ----------------------------------------------------------------------------- hard negatives


def mine_hard_negatives(pairs: list[dict], method: str = "bm25", embed: EmbedFn | None = None, *,
                        depth: int = 10, seed: int = 0) -> list[dict]:
    """Each pair with a "negative": the best-ranked other code of the same language for its query,
    never the positive nor an exact duplicate of it. Ranked by BM25 over identifier tokens ("bm25")
    or by cosine with `embed` ("model"); a pair whose top `depth` are all excluded, or the only one
    of its language, gets a random other code.

    Mined over all languages at once, 35-40% of the Go, Java, C and JavaScript pairs of the default
    corpus got a negative in another language, which the language alone tells apart: no longer hard.
    Each language is also a smaller BM25 index: 128k pairs took 9.4 min this way with a training run
    beside it, against about 20 min in one index."""
    by_language: dict[str, list[int]] = {}
    for i, pair in enumerate(pairs):
        by_language.setdefault(pair.get("language", ""), []).append(i)
    if len(by_language) < 2:
        return _mine(pairs, method, embed, depth, seed)
    out: list[dict] = [{}] * len(pairs)  # each place filled below
    lonely = []
    for indices in by_language.values():
        if len(indices) < 2:
            lonely += indices
            continue
        for i, row in zip(indices, _mine([pairs[i] for i in indices], method, embed, depth, seed)):
            out[i] = row
    rng = random.Random(seed)
    for i in lonely:
        out[i] = _with_negative(pairs[i], pairs[rng.choice([j for j in range(len(pairs)) if j != i])])
    return out


def _mine(pairs: list[dict], method: str, embed: EmbedFn | None, depth: int, seed: int) -> list[dict]:
    """`mine_hard_negatives` within one list of pairs, whatever their languages."""
    if len(pairs) < 2:
        return [dict(p, negative="") for p in pairs]
    codes = [p["code"] for p in pairs]
    queries = [p["query"] for p in pairs]
    k = min(depth + 1, len(codes))
    if method == "bm25":
        import bm25s

        retriever = bm25s.BM25()
        retriever.index([identifier_tokens(c) for c in codes], show_progress=False)
        ranked = retriever.retrieve([identifier_tokens(q) for q in queries], k=k, show_progress=False).documents
    elif method == "model":
        if embed is None:
            raise ValueError("method='model' needs an embed function")
        q, c = embed(queries, "query"), embed(codes, "code")  # (N, D) each
        ranked = np.concatenate([np.argsort(-(q[i : i + 1024] @ c.T), axis=1)[:, :k] for i in range(0, len(q), 1024)])
    else:
        raise ValueError(f"unknown hard negative method {method!r}: use bm25 or model")
    digests = [normalised_hash(c) for c in codes]
    rng = random.Random(seed)
    out = []
    for i, pair in enumerate(pairs):
        j = next((int(j) for j in ranked[i] if j != i and digests[j] != digests[i]), None)
        if j is None:
            j = rng.choice([x for x in range(len(codes)) if digests[x] != digests[i]] or [(i + 1) % len(codes)])
        out.append(_with_negative(pair, pairs[j]))
    return out


def _with_negative(pair: dict, other: dict) -> dict:
    """`pair` with `other`'s code (and its code as written, if any) as its hard negative."""
    row = dict(pair, negative=other["code"])
    row.pop("negative_full", None)
    if "code_full" in other:
        row["negative_full"] = other["code_full"]
    return row


# ----------------------------------------------------------------------------- the stage


def build_dataset(cfg: DataConfig, out_dir: Path, bench_dir: Path | None, *, log: Callable[[str], None] = print) -> dict:
    """Write pairs-train.jsonl, pairs-valid.jsonl, corpus-train.jsonl and stats.json to `out_dir`.

    stats.json is written last: the stage is done when it exists. Returns the stats.
    """
    out_dir = Path(out_dir)
    started = time.perf_counter()
    counts: dict[str, Counter] = {"files": Counter(), "skipped_files": Counter(), "chunks": Counter()}
    repos, notes = resolve_sources(cfg.sources, out_dir / "sources")
    for note in notes:
        log(f"data: {note}")
    log(f"data: {len(repos)} repositories")
    pairs, files = extract(repos, cfg, counts)
    log(f"data: {sum(counts['files'].values())} files, {sum(counts['chunks'].values())} chunks, {len(pairs)} candidate pairs")
    pairs, dup_counts = dedupe(pairs, cfg.near_dup_threshold)
    log(f"data: dedupe dropped {dup_counts['exact']} exact and {dup_counts['near']} near duplicates")

    decontamination: dict = {"skipped": True}
    bench = None
    if cfg.decontaminate:
        if bench_dir is None:
            raise CodesearchError("decontamination needs the bench folder: set [eval] bench_dir or --bench, or [data] decontaminate = false")
        bench = BenchIndex(bench_dir, cfg.decontaminate_threshold)
        pairs, decontamination = decontaminate(pairs, bench_dir, threshold=cfg.decontaminate_threshold, index=bench)
        log(f"data: decontamination dropped {decontamination['exact']} exact and {decontamination['near']} near copies of bench code")

    train, valid, valid_repos = split_by_repository(pairs, cfg.valid_fraction, cfg.seed, cfg.valid_repos)
    if not train:
        raise CodesearchError("no training pairs left: add sources or loosen the filters")
    if cfg.hard_negatives == "bm25":
        train = mine_hard_negatives(train, "bm25", seed=cfg.seed)
        valid = mine_hard_negatives(valid, "bm25", seed=cfg.seed)

    corpus, contaminated_files = [], 0
    for file in files:
        if file["repo"] in valid_repos:
            continue
        if bench is not None and any(bench.match(code) for code in file["functions"]):
            contaminated_files += 1
            continue
        corpus.append({"repo": file["repo"], "path": file["path"], "text": file["text"]})

    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / "pairs-train.jsonl", train)
    write_jsonl(out_dir / "pairs-valid.jsonl", valid)
    write_jsonl(out_dir / "corpus-train.jsonl", corpus)
    per_repo = Counter(p["repo"] for p in train + valid)
    stats = {
        "repositories": {r.name: {"root": str(r.root), "version": r.version, "pairs": per_repo[r.name],
                                  "split": "valid" if r.name in valid_repos else "train"} for r in repos},
        "notes": notes,
        "files": dict(counts["files"]),
        "skipped_files": dict(counts["skipped_files"]),
        "chunks": dict(counts["chunks"]),  # by what became of them: "kept" or why not
        "dedupe": dup_counts,
        "decontamination": decontamination,
        "pairs": {"train": len(train), "valid": len(valid)},
        "languages": {"train": dict(Counter(p["language"] for p in train)),
                      "valid": dict(Counter(p["language"] for p in valid))},
        "corpus": {"files": len(corpus), "chars": sum(len(f["text"]) for f in corpus),
                   "dropped_for_bench_code": contaminated_files},
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(out_dir / "stats.json", stats)
    log(f"data: {len(train)} train / {len(valid)} valid pairs (valid repositories: {', '.join(valid_repos) or 'none'})")
    return stats
