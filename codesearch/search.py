"""Queries over the store: semantic, lexical and hybrid search, and clone (code-to-code) queries."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codesearch.config import Settings, load_settings
from codesearch.errors import CodesearchError
from codesearch.files import walk
from codesearch.languages import LANGUAGES
from codesearch.lexical import lexical_text
from codesearch.model import Encoder, resolve_model
from codesearch.objectstore import open_store
from codesearch.ranking import rerank, symbol_of
from codesearch.store import REPO, SCHEMA_VERSION, Store, glob_to_like, sql_in, sql_str

def candidate_pool(k: int) -> int:
    """How many candidates each ranking of a hybrid query brings to the fusion, for k results."""
    return max(k * 4, 50)


def score_fuse(
    lists: Sequence[Sequence[tuple[Hashable, float]]],
    weights: Sequence[float] | None = None,
    floors: Sequence[float | None] | None = None,
) -> list[tuple[Hashable, float]]:
    """Convex fusion of scored candidate lists, (item, score) best first, one list per retriever
    (an item at most once in a list).

    Each list's scores become z-scores over that list, so a cosine and a BM25 score can be added,
    and an item's fused score is the weighted mean of its z-scores (weights default to 1). An item
    a list lacks scores that list's floor: None (the default) when the list was cut at a length and
    what lies below is unknown, so the lowest score it has; a number when the list holds every item
    that scores above it (all the documents a full-text search matched: the rest score 0), which
    then also joins the list's statistics. A list whose scores are all alike counts 1 for its items
    and 0 for the rest. Unlike reciprocal rank fusion this keeps how far apart the scores are, which
    measured better on held-out pairs and on CoSQA (BENCHMARKS.md). Returns (item, fused score)
    best first; on a tie, the item more (weighted) lists found comes first.
    """
    weights = list(weights or [1.0] * len(lists))
    floors = list(floors or [None] * len(lists))
    if len(weights) != len(lists) or len(floors) != len(lists):
        raise ValueError("one weight and one floor per list")
    normalised: list[tuple[dict[Hashable, float], float]] = []  # per list: z-scores, and the z of an item it lacks
    for scored, floor in zip(lists, floors):
        values = np.array([score for _, score in scored] + ([] if floor is None else [floor]), dtype=np.float64)
        spread = float(values.std()) if len(values) else 0.0
        if spread > 1e-12 * max(1.0, float(np.abs(values).max(initial=0.0))):
            z = (values - values.mean()) / spread
            lacking = float(z[-1] if floor is not None else z.min())
            normalised.append(({item: float(v) for (item, _), v in zip(scored, z)}, lacking))
        else:
            normalised.append(({item: 1.0 for item, _ in scored}, 0.0))
    order: dict[Hashable, None] = {}
    for scored in lists:
        order.update((item, None) for item, _ in scored)
    total = sum(weights) or 1.0
    fused = {item: sum(w * z.get(item, lacking) for w, (z, lacking) in zip(weights, normalised)) / total
             for item in order}
    found = {item: sum(w for w, (z, _) in zip(weights, normalised) if item in z) for item in order}
    return sorted(fused.items(), key=lambda kv: (-kv[1], -found[kv[0]]))


def hybrid_fuse(
    vector: Sequence[tuple[Hashable, float]], fulltext: Sequence[tuple[Hashable, float]], weight: float, complete: bool
) -> list[tuple[Hashable, float]]:
    """A hybrid query's ranking: `score_fuse` of the vector candidates (cosine) and the full-text ones
    (BM25), the model weighted `weight` against full text's 1. `complete`: the full-text search
    returned fewer rows than asked for, so it holds every match and what it lacks scores 0."""
    return score_fuse([vector, fulltext], weights=[weight, 1.0], floors=[None, 0.0 if complete else None])


MODES = ("hybrid", "semantic", "lexical")
MAX_K = 10_000  # hits per query; checked first, since LanceDB fails on a huge limit as if the index were damaged
MAX_LINE = 2**31 - 1  # line numbers are int32 in the store; a larger literal fails the whole predicate
CENTER_PRIOR_ROWS = 100  # an index of n rows subtracts n / (n + this) of its mean vector in a clone query


def clone_center(mean: np.ndarray, rows: int) -> np.ndarray:
    """What a hybrid clone query subtracts from every vector before the cosine: the index's mean
    vector, shrunk while the index is small (in an index of two functions the mean is half of each).
    Measured on OJClone dev (BENCHMARKS.md), centering took the model's MAP@R from 0.27 to 0.34; on
    natural-language queries subtracting the mean lowered MRR, so `search` does not center.
    """
    return mean * (rows / (rows + CENTER_PRIOR_ROWS))


def _check(mode: str, k: int) -> None:
    if mode not in MODES:
        raise CodesearchError(f"unknown mode {mode!r} (use {', '.join(MODES)})")
    check_k(k)


def check_k(k: int) -> None:
    """Refuse a number of hits outside 1..MAX_K."""
    if k < 1:
        raise CodesearchError("k must be at least 1")
    if k > MAX_K:
        raise CodesearchError(f"k must be at most {MAX_K:,} (got {k:,})")


def check_utf8(value: str, what: str) -> None:
    """Refuse text holding lone surrogates (the bytes of a non-UTF-8 argument, as Python decodes them):
    no index holds such text, and LanceDB would fail on it as if the index were damaged."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise CodesearchError(f"{what} {shown!r} is not valid UTF-8") from None


def check_filters(languages: Sequence[str] = (), path: str | None = None, repo: str | None = None) -> None:
    """Check filter values before they reach the store: languages must be supported ones, and every
    value valid UTF-8. (Quotes are harmless: the filter quotes each value as a SQL literal.)"""
    for language in languages:
        if language not in LANGUAGES:
            check_utf8(language, "language")
            raise CodesearchError(f"unknown language {language!r} (supported: {', '.join(LANGUAGES)})")
    if path is not None:
        check_utf8(path, "path filter")
    if repo is not None:
        check_utf8(repo, "repository name")


@dataclass(frozen=True)
class Hit:
    """One search result: a chunk (all its windows shown as one hit)."""

    rank: int
    score: float
    path: str
    start_line: int
    end_line: int
    name: str
    kind: str
    language: str
    signature: str
    docstring: str
    code: str
    chunk_id: str
    repo: str = ""  # the repository the function is in ("" in an index made before repositories were named)
    explain: str = ""  # a hybrid query's signals that moved this hit (ranking.rerank), for --explain


@dataclass(frozen=True)
class IndexStatus:
    root: str
    index_path: str
    model_id: str
    dimension: int
    files: int
    chunks: int
    rows: int
    languages: dict[str, int]
    updated_at: float
    complete: bool
    stale_files: int  # files in scope whose size or mtime differ from the index, or that are new or gone
    repos: dict[str, int] | None = None  # functions per repository, when the index names them


class Index:
    """A repository's index, opened for queries: `Index.open(root).search("parse json")`."""

    def __init__(self, root: Path, settings: Settings, store: Store) -> None:
        self.root = root
        self.settings = settings
        self.store = store
        self._encoder: Encoder | None = None

    @classmethod
    def open(
        cls, root: Path, settings: Settings | None = None, *, live: bool = False, encoder: Encoder | None = None
    ) -> "Index":
        """Open for queries; `live` sees each commit of a concurrent writer, `encoder` shares a loaded model."""
        root = root.resolve()
        settings = settings or load_settings(root)
        store = open_store(settings.index_location(root), live=live)
        if store.meta is None or store.meta.schema != SCHEMA_VERSION:
            raise CodesearchError(
                f"index at {store.path} was made by another codesearch version: run `codesearch index --rebuild`"
            )
        index = cls(root, settings, store)
        if encoder is not None and encoder.folder.model_id == store.meta.model_id:
            index._encoder = encoder
        return index

    @property
    def encoder(self) -> Encoder:
        """The model the index was built with (loaded on first semantic query)."""
        if self._encoder is None:
            folder = resolve_model(self.settings.model)
            if folder.model_id != self.store.meta.model_id:
                raise CodesearchError(
                    f"the index was built with model {self.store.meta.model_id}, but the configured model is "
                    f"{folder.model_id}: run `codesearch index` to rebuild it"
                )
            self._encoder = Encoder(folder, device=self.settings.device, threads=self.settings.threads)
        return self._encoder

    # --- natural language -> code ----------------------------------------------------------------

    def search(
        self,
        text: str,
        k: int = 10,
        *,
        mode: str = "hybrid",
        languages: Sequence[str] = (),
        path: str | None = None,
        repo: str | None = None,
        exclude: Sequence[str] = (),
        include_tests: bool = False,
    ) -> list[Hit]:
        """Functions matching a natural-language (or identifier) query, best first; `repo` keeps one
        repository's functions (in an index several repositories share), `exclude` drops paths
        matching any of its globs. A hybrid query adds the code-aware signals of ranking.py to the
        fusion (`include_tests` turns off the down-ranking of tests, examples and stubs); each hit's
        `explain` says what moved it."""
        if not text.strip():
            raise CodesearchError("empty query")
        check_utf8(text, "query")
        _check(mode, k)
        where = self._filter(languages, path, repo, exclude)
        pool = candidate_pool(k)
        rankings: list[list[tuple[str, float]]] = []  # (chunk id, score) best first, per retriever
        rows: dict[str, dict] = {}
        if mode in ("semantic", "hybrid"):
            vector = self.encoder.embed_query(text)
            hits = _best_per_chunk(self.store.vector_search(vector, pool * 2, where), rows)
            rankings.append([(cid, 1.0 - dist) for cid, dist in hits][:pool])
        if mode in ("lexical", "hybrid"):
            lexical: dict[str, float] = {}
            found = self.store.text_search(lexical_text(text), pool, where)
            for row in found:
                rows.setdefault(row["chunk_id"], row)
                lexical.setdefault(row["chunk_id"], float(row.get("_score", 0.0)))
            rankings.append(list(lexical.items()))
        if mode != "hybrid":
            return [_hit(rank, score, rows[cid]) for rank, (cid, score) in enumerate(rankings[0][:k], start=1)]
        fused = hybrid_fuse(*rankings, self.encoder.folder.hybrid_weight, complete=len(found) < pool)
        symbol = symbol_of(text)
        if symbol is not None:  # its definitions are candidates even where neither retriever found them
            floor = min((score for _, score in fused), default=0.0)
            known = {cid for cid, _ in fused}
            for row in self.store.definitions(symbol.last, where):
                if row["chunk_id"] not in known:
                    rows.setdefault(row["chunk_id"], row)
                    fused.append((row["chunk_id"], floor))
                    known.add(row["chunk_id"])
        ranked = rerank(text, fused, rows, include_tests=include_tests)
        return [_hit(rank, r.score, rows[r.chunk_id], r.explain) for rank, r in enumerate(ranked[:k], start=1)]

    # --- code -> code ----------------------------------------------------------------------------

    def similar(
        self,
        code: str,
        k: int = 10,
        *,
        mode: str = "hybrid",
        languages: Sequence[str] = (),
        path: str | None = None,
        exclude: str | None = None,
        repo: str | None = None,
    ) -> list[Hit]:
        """Functions most like `code` (a clone query), best first; `exclude` is a chunk id to leave out
        (the query itself).

        hybrid    the cosine after subtracting `clone_center` (store.centered_cosine), fused with
                  full-text search for the code's identifiers as a natural-language query is
        semantic  the plain cosine of the nearest windows: the scale near-duplicate thresholds use
        lexical   full-text search alone
        """
        if not code.strip():
            raise CodesearchError("empty code")
        check_utf8(code, "code")
        _check(mode, k)
        where = self._filter(languages, path, repo)
        windows = (np.zeros((0, 0), np.float32) if mode == "lexical"
                   else self.encoder.embed_texts([code], kind="code", overlap=self.settings.window_overlap)[0])
        return self._similar_to(windows, k, where, exclude, mode=mode, code=code)

    def similar_at(
        self, file: str, line: int, k: int = 10, *, mode: str = "hybrid", languages: Sequence[str] = (),
        path: str | None = None, repo: str | None = None,
    ) -> tuple[Hit, list[Hit]]:
        """The function at `file:line` and the functions most like it."""
        _check(mode, k)
        if not 1 <= line <= MAX_LINE:
            raise CodesearchError(f"line {line} is out of range (lines are numbered from 1 to {MAX_LINE:,})")
        rel = _relative(self.root, file)
        check_utf8(rel, "path")
        found = self._this_repo(self.store.chunks_at(rel, line), repo)
        found = [row for row in found if row["kind"] != "file"]  # the summary stands for the file, not a line
        if not found:
            raise CodesearchError(f"no indexed function at {rel}:{line}")
        target = found[0]
        windows = self.store.vectors_of_chunk(target["chunk_id"])
        this = _hit(0, 1.0, target)
        return this, self._similar_to(windows, k, self._filter(languages, path, repo), target["chunk_id"],
                                      mode=mode, code=target["code"])

    def near_duplicates(self, file: str, threshold: float = 0.95, k: int = 10) -> list[tuple[Hit, list[Hit]]]:
        """The functions and methods of `file` that have others at least `threshold` alike (cosine),
        each with those others, best first. Classes, and chunks nested in the same place, do not count."""
        by_chunk: dict[str, list[dict]] = {}
        for row in self._this_repo(self.store.chunk_windows(_relative(self.root, file)), None):
            by_chunk.setdefault(row["chunk_id"], []).append(row)
        found = []
        for cid, rows in by_chunk.items():
            rows.sort(key=lambda r: r["window"])
            this = _hit(0, 1.0, rows[0])
            if this.kind not in ("function", "method"):  # classes, module-level code, file summaries
                continue
            windows = np.asarray([r["vector"] for r in rows], dtype=np.float32)
            alike = [
                hit for hit in self._similar_to(windows, k, None, cid)
                if hit.score >= threshold and hit.kind in ("function", "method") and not _nested(hit, this)
            ]
            if alike:
                found.append((this, alike))
        return sorted(found, key=lambda pair: pair[0].start_line)

    def _similar_to(self, windows: np.ndarray, k: int, where: str | None, exclude: str | None, *,
                    mode: str = "semantic", code: str = "") -> list[Hit]:
        """The functions like the one whose window vectors are `windows` and text is `code` (see `similar`)."""
        pool = candidate_pool(k)
        rows: dict[str, dict] = {}
        rankings: list[list[tuple[str, float]]] = []  # (chunk id, score) best first, per retriever
        if mode in ("semantic", "hybrid"):
            center = clone_center(*self.store.mean_vector()) if mode == "hybrid" else None
            limit = pool * 2 if mode == "hybrid" else k * 3 + 10  # semantic needs only k (near_duplicates' cost)
            best: dict[str, float] = {}
            for vector in windows:
                for cid, dist in _best_per_chunk(self.store.vector_search(vector, limit, where, center), rows):
                    if cid != exclude:
                        best[cid] = max(best.get(cid, -1.0), 1.0 - dist)
            rankings.append(sorted(best.items(), key=lambda kv: -kv[1])[:pool])
        if mode in ("lexical", "hybrid"):
            lexical: dict[str, float] = {}
            found = self.store.text_search(lexical_text(code), pool + 1, where)  # + 1: the query itself
            for row in found:
                if row["chunk_id"] != exclude:
                    rows.setdefault(row["chunk_id"], row)
                    lexical.setdefault(row["chunk_id"], float(row.get("_score", 0.0)))
            rankings.append(list(lexical.items())[:pool])
        if mode == "hybrid":
            ranked = hybrid_fuse(*rankings, self.encoder.folder.hybrid_weight, complete=len(found) < pool + 1)
        else:
            ranked = rankings[0]
        return [_hit(rank, score, rows[cid]) for rank, (cid, score) in enumerate(ranked[:k], start=1)]

    def _this_repo(self, rows: list[dict], repo: str | None) -> list[dict]:
        """The rows of a path that belong to `repo` (default: this root's repository), where an index
        several repositories share has the same path in more than one; all of them if none match."""
        wanted = repo or self.settings.repo(self.root)
        return [r for r in rows if r.get(REPO) == wanted] or rows

    def _filter(
        self, languages: Sequence[str], path: str | None, repo: str | None, exclude: Sequence[str] = ()
    ) -> str | None:
        check_filters(languages, path, repo)
        for glob in exclude:
            check_utf8(glob, "exclude glob")
        where = _filter(languages, path, exclude)
        if repo is None:
            return where
        if not self.store.has_repo_column():
            raise CodesearchError(
                f"the index at {self.store.path} does not name repositories yet (it was made by an older "
                "codesearch): run `codesearch index` to add them"
            )
        return " AND ".join(p for p in (where, f"{REPO} = {sql_str(repo)}") if p)

    # --- status ----------------------------------------------------------------------------------

    def status(self) -> IndexStatus:
        meta = self.store.meta
        counts = self.store.counts()
        repos = self.store.repos()
        if self.settings.repo(self.root) in repos:  # a shared index: this repository's files
            self.store.repo = self.settings.repo(self.root)
        states = self.store.file_states()
        walked = walk(
            self.root,
            extra_ignores=self.settings.ignore,
            languages=self.settings.languages or None,
            max_file_bytes=self.settings.max_file_bytes,
            index_dir=self.settings.index_dir,
        )
        current = {f.path: (f.size, f.mtime_ns) for f in walked.files}
        stale = sum(1 for p, stat in current.items() if p not in states or (states[p].size, states[p].mtime_ns) != stat)
        stale += sum(1 for p in states if p not in current)
        return IndexStatus(
            root=str(self.root),
            index_path=str(self.store.path),
            model_id=meta.model_id,
            dimension=meta.dimension,
            files=counts["files"],
            chunks=counts["chunks"],
            rows=counts["rows"],
            languages=self.store.languages(),
            updated_at=meta.updated_at,
            complete=meta.complete,
            stale_files=stale,
            repos=repos or None,
        )


def _filter(languages: Sequence[str], path: str | None, exclude: Sequence[str] = ()) -> str | None:
    parts = []
    if languages:
        parts.append(sql_in("language", languages))
    if path:
        parts.append(f"path LIKE {sql_str(glob_to_like(path))}")
    parts.extend(f"NOT (path LIKE {sql_str(glob_to_like(glob))})" for glob in exclude)
    return " AND ".join(parts) or None


def _best_per_chunk(found: list[dict], rows: dict[str, dict]) -> list[tuple[str, float]]:
    """Collapse window rows to one per chunk (its nearest window), keeping ranking order."""
    best: dict[str, float] = {}
    for row in found:
        cid = row["chunk_id"]
        if cid not in best:
            best[cid] = float(row["_distance"])
            rows.setdefault(cid, row)
    return list(best.items())


def _hit(rank: int, score: float, row: dict, explain: str = "") -> Hit:
    return Hit(
        rank=rank,
        score=round(float(score), 6) + 0.0,  # + 0.0: no "-0.000" for a fused score of zero
        path=row["path"],
        start_line=int(row["start_line"]),
        end_line=int(row["end_line"]),
        name=row["name"],
        kind=row["kind"],
        language=row["language"],
        signature=row["signature"],
        docstring=row["docstring"],
        code=row["code"],
        chunk_id=row["chunk_id"],
        repo=row.get("repo") or "",
        explain=explain,
    )


def _nested(a: Hit, b: Hit) -> bool:
    """Whether two chunks of one file overlap (a method inside its class, a function inside another)."""
    return a.path == b.path and a.start_line <= b.end_line and b.start_line <= a.end_line


def _relative(root: Path, path: str) -> str:
    """A path given on the command line, as the repo-relative posix path the index stores."""
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = Path.cwd() / candidate
    try:
        return candidate.resolve().relative_to(root).as_posix()
    except ValueError:
        raise CodesearchError(f"{path} is outside the indexed repository {root}") from None
