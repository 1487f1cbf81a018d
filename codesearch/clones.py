"""Clone groups: functions that are copies of each other, found from the index alone.

Three detectors feed one graph of function pairs:

- token hashing (clone types 1 and 2): each function's code is lexed, comments dropped, identifiers
  and literals abstracted, and hashed; equal hashes are copies whatever their names and constants.
- token overlap (type 3, copies edited after the copy): the same abstracted tokens cut into 4-grams;
  pairs whose 4-gram sets overlap at least `min_overlap` (Jaccard), found by prefix filtering (each
  function's rarest 4-grams index it, so only functions sharing one are compared), not all pairs.
- embeddings (types 3 and 4, and 1-2 again): a nearest-neighbour self-join over the stored vectors,
  keeping pairs at least `min_similarity` alike. A function with several windows scores its best window.

Groups are the connected components of the pairs. A class is left out when a method inside it is
already paired (the innermost functions are reported), and a function never pairs with its own
nested functions. A group is identified by its members' content hashes, so baselines survive
unrelated line shifts.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import subprocess
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from codesearch.chunking import DEFINITION_KINDS
from codesearch.errors import CodesearchError

# Chosen on benchmarks/clones.py (see BENCHMARKS.md): the lowest value with no unrelated pair on the
# planted fixture; renamed and edited copies score above it, rewrites mostly below.
DEFAULT_MIN_SIMILARITY = 0.95
DEFAULT_MIN_LINES = 5
# Jaccard of abstracted token 4-grams: the planted edited copies of tests/fixtures/clones_repo (renamed,
# a statement added) overlap 0.65-0.74, its unrelated functions 0.21 at most; in asyncio's sources the
# pairs at 0.6-0.7 are copy-pasted siblings (IocpProactor.recv/recvfrom, the transports' _fatal_error).
DEFAULT_MIN_OVERLAP = 0.6
SHINGLE = 4  # tokens per shingle of the overlap detector
MIN_SHINGLES = 20  # fewer (a function of a few statements) is left to hashing: too little to call an edit
COMMON_SHINGLE = 500  # a shingle in more functions than this is boilerplate: it proposes no pairs
NEIGHBOURS = 20  # nearest rows kept per window row in the self-join: a function copied more often than
# this still forms one group, because copies link through each other
EXACT_JOIN_ROWS = 20_000  # up to this many window rows the join is exact (blocked matrix products)
_BLOCK = 1024  # query rows per matrix product: 1024 x 100k float32 scores is 400 MB at most


@dataclass(frozen=True)
class CloneMember:
    path: str
    start_line: int
    end_line: int
    name: str
    kind: str
    language: str
    content_hash: str


@dataclass(frozen=True)
class CloneGroup:
    fingerprint: str   # sha1 of the members' sorted distinct content hashes
    kind: str          # "exact" (type 1), "renamed" (type 2), "edited" (token overlap: type 3),
                       # "similar" (embeddings only: types 3-4)
    similarity: float  # the lowest embedding similarity among the group's pairs (1.0 for hashed copies)
    members: tuple[CloneMember, ...]  # sorted by path and line; the first is the group's location


@dataclass(frozen=True)
class CloneOptions:
    min_similarity: float = DEFAULT_MIN_SIMILARITY
    min_overlap: float = DEFAULT_MIN_OVERLAP  # token 4-gram Jaccard for an edited copy (above 1: off)
    min_lines: int = DEFAULT_MIN_LINES
    languages: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()     # globs (or path prefixes) a function must match one of
    excludes: tuple[str, ...] = ()  # globs (or path prefixes) that leave a function out
    cross_language: bool = False
    changed_since: str | None = None  # git revision: keep groups with a function changed since it
    baseline: Path | None = None      # known groups, left out of the report
    under: str = ""  # a repo-relative directory or file the functions must be in ("": everywhere)


@dataclass
class CloneReport:
    groups: list[CloneGroup]  # what to report: in scope, changed (if asked), not in the baseline
    all_groups: list[CloneGroup]  # every group in scope, what --write-baseline records
    functions: int            # functions compared
    unchanged: int = 0        # groups left out by changed_since
    baselined: int = 0        # groups left out as known in the baseline
    seconds: float = 0.0
    options: CloneOptions = field(default_factory=CloneOptions)


def find_clones(index, options: CloneOptions = CloneOptions()) -> CloneReport:
    """Every clone group in `index` (a codesearch.search.Index) under `options`."""
    started = time.perf_counter()
    if not 0.0 < options.min_similarity <= 1.0:
        raise CodesearchError(f"--min-similarity must be in (0, 1], got {options.min_similarity}")
    if not 0.0 < options.min_overlap:
        raise CodesearchError(f"--min-overlap must be above 0 (above 1 turns it off), got {options.min_overlap}")
    if options.min_lines < 1:
        raise CodesearchError(f"--min-lines must be at least 1, got {options.min_lines}")
    baseline = read_baseline(options.baseline) if options.baseline else None
    changed = changed_lines(index.root, options.changed_since) if options.changed_since else None

    functions, owner, vectors = _load(index.store, options)
    pairs = similar_pairs(vectors, owner, options.min_similarity,
                          [f["language"] for f in functions] if not options.cross_language else None)
    for (a, b) in hashed_pairs(functions, options.cross_language):
        pairs[(a, b)] = 1.0
    edited = set()
    if options.min_overlap <= 1.0:
        windows = _windows_of(owner)
        for a, b in edited_pairs(functions, options.min_overlap, options.cross_language):
            if (a, b) not in pairs:
                pairs[(a, b)] = _best_cosine(vectors[windows(a)], vectors[windows(b)])
                edited.add((a, b))
    pairs = _innermost(pairs, functions)
    groups = _groups(pairs, functions, edited)

    report = CloneReport(groups=groups, all_groups=groups, functions=len(functions), options=options)
    if changed is not None:
        report.groups = [g for g in report.groups if any(_touched(m, changed) for m in g.members)]
        report.unchanged = len(groups) - len(report.groups)
    if baseline is not None:
        kept = [g for g in report.groups if not _known(g, baseline)]
        report.baselined = len(report.groups) - len(kept)
        report.groups = kept
    report.seconds = time.perf_counter() - started
    return report


# --- loading -------------------------------------------------------------------------------------


def _load(store, options: CloneOptions) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """The functions in scope (window-0 rows), and for each of their vector rows: owner index, vector."""
    ids, matrix = store._vector_matrix()
    columns = ["id", "chunk_id", "window", "path", "language", "kind", "name", "start_line", "end_line",
               "code", "content_hash"]
    rows = store.chunks.search().select(columns).limit(None).to_arrow().to_pylist()
    functions: list[dict] = []
    by_chunk: dict[str, int] = {}
    for row in rows:
        if row["window"] == 0 and _in_scope(row, options):
            by_chunk[row["chunk_id"]] = len(functions)
            functions.append(row)
    position = {row_id: i for i, row_id in enumerate(ids)}
    picked = [(position[row["id"]], by_chunk[row["chunk_id"]]) for row in rows
              if row["chunk_id"] in by_chunk and row["id"] in position]
    picked.sort()
    at = np.fromiter((p for p, _ in picked), dtype=np.int64, count=len(picked))
    owner = np.fromiter((o for _, o in picked), dtype=np.int64, count=len(picked))
    return functions, owner, matrix[at]


def _in_scope(row: dict, options: CloneOptions) -> bool:
    if row["kind"] not in DEFINITION_KINDS:  # module-level code and file summaries are not clones of anything
        return False
    if row["end_line"] - row["start_line"] + 1 < options.min_lines:
        return False
    if options.languages and row["language"] not in options.languages:
        return False
    if options.under and not path_matches(row["path"], options.under):
        return False
    if options.paths and not any(path_matches(row["path"], p) for p in options.paths):
        return False
    return not any(path_matches(row["path"], p) for p in options.excludes)


def path_matches(path: str, pattern: str) -> bool:
    """A glob over the whole repo-relative path (`*` crosses `/`), or a plain file or directory prefix."""
    if not any(c in pattern for c in "*?["):
        prefix = pattern.strip("/")
        return path == prefix or path.startswith(prefix + "/") or not prefix
    return fnmatch.fnmatchcase(path, pattern.replace("**/", "*").replace("**", "*"))


# --- detector 1: embeddings ----------------------------------------------------------------------


def similar_pairs(
    vectors: np.ndarray, owner: np.ndarray, threshold: float, languages: list[str] | None = None,
    *, neighbours: int = NEIGHBOURS, exact_rows: int = EXACT_JOIN_ROWS, nprobe: int = 8,
) -> dict[tuple[int, int], float]:
    """Pairs of owners (a < b) with some rows at least `threshold` alike (cosine of unit vectors): best score.

    Up to `exact_rows` rows every row meets every other in blocked matrix products; above, an IVF
    partition (spherical k-means, sqrt(n) lists) lets each row meet only the lists of its `nprobe`
    nearest centroids. Either way a row keeps at most its `neighbours` best matches. With `languages` (one per owner), only
    owners of the same language pair.
    """
    n = len(vectors)
    if n < 2:
        return {}
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    if n <= exact_rows:
        everything = np.arange(n)
        found.append(_join(vectors, everything, everything, threshold, neighbours, triangular=True))
    else:
        for rows, candidates in _ivf_lists(vectors, nprobe):
            found.append(_join(vectors, rows, candidates, threshold, neighbours))
    left = np.concatenate([f[0] for f in found])
    right = np.concatenate([f[1] for f in found])
    score = np.concatenate([f[2] for f in found])
    a, b = owner[left], owner[right]
    keep = a != b
    if languages is not None:
        codes = np.unique(np.asarray(languages), return_inverse=True)[1]
        keep &= codes[a] == codes[b]
    a, b, score = np.minimum(a, b)[keep], np.maximum(a, b)[keep], score[keep]
    if not len(a):
        return {}
    key = a * (int(owner.max()) + 1) + b
    order = np.lexsort((-score, key))  # by pair, best score first
    key, a, b, score = key[order], a[order], b[order], score[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    return {(int(x), int(y)): round(float(s), 6) for x, y, s in zip(a[first], b[first], score[first])}


def _join(vectors, rows, candidates, threshold, neighbours, *, triangular=False):
    """(row, candidate, score) for each row's best `neighbours` candidates scoring at least `threshold`.

    Most rows have no candidate over the threshold, so a row maximum screens them out first and only
    rows with more hits than `neighbours` pay for a partial sort: the join costs about its matrix
    products. `triangular` (rows == candidates): each block meets only the candidates from its own
    start on, since pairs are symmetric, and never itself.
    """
    out_r, out_c, out_s = [], [], []
    for start in range(0, len(rows), _BLOCK):
        block = rows[start : start + _BLOCK]
        cand = candidates[start:] if triangular else candidates
        scores = vectors[block] @ vectors[cand].T  # (B, C)
        if triangular:
            scores[np.arange(len(block)), np.arange(len(block))] = -1.0
        hot = np.flatnonzero(scores.max(axis=1) >= threshold)
        if not len(hot):
            continue
        scores = scores[hot]
        hit_r, hit_c = np.nonzero(scores >= threshold)
        crowded = np.flatnonzero(np.bincount(hit_r, minlength=len(hot)) > neighbours)
        if len(crowded):
            keep = ~np.isin(hit_r, crowded)
            top = np.argpartition(-scores[crowded], neighbours - 1, axis=1)[:, :neighbours]  # (R, k)
            good = np.take_along_axis(scores[crowded], top, axis=1) >= threshold
            hit_r = np.concatenate([hit_r[keep], np.repeat(crowded, neighbours).reshape(-1, neighbours)[good]])
            hit_c = np.concatenate([hit_c[keep], top[good]])
        out_r.append(block[hot[hit_r]])
        out_c.append(cand[hit_c])
        out_s.append(scores[hit_r, hit_c])
    if not out_r:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    return np.concatenate(out_r), np.concatenate(out_c), np.concatenate(out_s)


def _ivf_lists(vectors: np.ndarray, nprobe: int, iterations: int = 6, seed: int = 0):
    """Yield (rows that probe list p, rows of list p) for a spherical k-means partition in sqrt(n) lists,
    where each row probes the `nprobe` lists with the nearest centroids (IVF search, inverted)."""
    n = len(vectors)
    nlist = max(2, int(np.sqrt(n)))
    nprobe = min(nprobe, nlist)
    rng = np.random.default_rng(seed)
    centroids = vectors[rng.choice(n, size=nlist, replace=False)].copy()
    for step in range(iterations + 1):
        probes = np.concatenate([
            np.argpartition(-(vectors[s : s + 8192] @ centroids.T), nprobe - 1, axis=1)[:, :nprobe]
            if step == iterations else np.argmax(vectors[s : s + 8192] @ centroids.T, axis=1)[:, None]
            for s in range(0, n, 8192)
        ])
        if step == iterations:
            break
        order = np.argsort(probes[:, 0], kind="stable")
        filled_lists, starts = np.unique(probes[order, 0], return_index=True)
        sums = np.zeros_like(centroids)
        sums[filled_lists] = np.add.reduceat(vectors[order], starts, axis=0)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        filled = norms[:, 0] > 0
        centroids[filled] = sums[filled] / norms[filled]
    scores = np.take_along_axis(np.concatenate([vectors[s : s + 8192] @ centroids.T for s in range(0, n, 8192)]),
                                probes, axis=1)
    home = probes[np.arange(n), np.argmax(scores, axis=1)]  # each row lives in its nearest list
    members = np.argsort(home, kind="stable")
    member_bounds = np.searchsorted(home[members], np.arange(nlist + 1))
    flat = probes.ravel()
    askers = np.repeat(np.arange(n), nprobe)[np.argsort(flat, kind="stable")]
    asker_bounds = np.searchsorted(np.sort(flat), np.arange(nlist + 1))
    for p in range(nlist):
        rows = members[member_bounds[p] : member_bounds[p + 1]]
        if len(rows):
            yield askers[asker_bounds[p] : asker_bounds[p + 1]], rows


# --- detector 2: normalised token hashes ---------------------------------------------------------

_TOKEN = re.compile(
    r"""(?P<comment>\#[^\n]*|//[^\n]*|/\*.*?\*/)
      |(?P<string>\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|`(?:\\.|[^`\\])*`)
      |(?P<number>\d[\w.]*)
      |(?P<word>[^\W\d]\w*)
      |(?P<op>\S)""",
    re.X | re.S,
)
# Words kept as themselves (the rest are identifiers, abstracted): keywords and built-in types of the
# indexed languages. A keyword missing here only makes type-2 detection a little more permissive.
KEYWORDS = frozenset(
    """
    abstract and as assert async await begin bool boolean break byte case catch chan char class const
    continue def default defer del delete do double elif else elsif end ensure enum except export
    extends false final finally float fn for foreach from func function global go goto if impl
    implements import in instanceof int interface is lambda let long loop match map mod module mut
    namespace new nil nonlocal not null of or package pass private protected pub public raise range
    rescue return select self short signed sizeof static string struct super switch synchronized
    this throw throws trait true try type typedef typeof undefined union unless unsigned until use
    using var void while with yield None True False Self
    """.split()
)


def abstract_tokens(code: str) -> tuple[list[str], list[str], list[str]]:
    """`code`'s tokens without comments and whitespace; the same with identifiers -> I, strings -> S,
    numbers -> N (keywords and operators kept); and the same again but with the names of called
    functions and of attributes kept (`x.append(y)` -> I . append ( I )), which an edited copy
    usually keeps while renaming its variables."""
    exact: list[str] = []
    renamed: list[str] = []
    matches = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(code) if m.lastgroup != "comment"]
    for kind, text in matches:
        exact.append(text)
        if kind == "string":
            renamed.append("S")
        elif kind == "number":
            renamed.append("N")
        elif kind == "word" and text not in KEYWORDS:
            renamed.append("I")
        else:
            renamed.append(text)
    api = [exact[i] if t == "I" and ((i and exact[i - 1] == ".") or (i + 1 < len(exact) and exact[i + 1] == "("))
           else t for i, t in enumerate(renamed)]
    return exact, renamed, api


def token_hashes(code: str) -> tuple[str, str]:
    """(exact, renamed) hashes of `code`: of its tokens without comments and whitespace (type 1),
    and of its abstracted tokens (type 2); see `abstract_tokens`."""
    exact, renamed, _ = abstract_tokens(code)
    return _digest(exact), _digest(renamed)


def _digest(tokens: list[str]) -> str:
    return hashlib.sha1("\0".join(tokens).encode("utf-8", "surrogatepass")).hexdigest()


def hashed_pairs(functions: list[dict], cross_language: bool = False) -> list[tuple[int, int]]:
    """Pairs (a < b) of functions with equal renamed-token hashes, chained within each bucket (each row
    keeps its (exact, renamed) hashes under "hashes" for grouping, and its abstracted tokens' 4-grams
    under "shingles" for `edited_pairs`)."""
    buckets: dict[tuple[str, str], list[int]] = {}
    known: dict[str, tuple[tuple[str, str], frozenset]] = {}  # by content hash: copies are lexed once
    for i, row in enumerate(functions):
        if row["content_hash"] not in known:
            exact, renamed, api = abstract_tokens(row["code"])
            known[row["content_hash"]] = ((_digest(exact), _digest(renamed)), shingles(api))
        row["hashes"], row["shingles"] = known[row["content_hash"]]
        _, renamed = row["hashes"]
        buckets.setdefault((renamed, "" if cross_language else row["language"]), []).append(i)
    return [(members[j], members[j + 1]) for members in buckets.values() for j in range(len(members) - 1)]


# --- detector 3: token overlap -------------------------------------------------------------------


def shingles(tokens: list[str], size: int = SHINGLE) -> frozenset:
    """The set of `size`-token runs of `tokens` (hashed)."""
    return frozenset(zlib.crc32("\0".join(tokens[i : i + size]).encode("utf-8", "surrogatepass"))
                     for i in range(len(tokens) - size + 1))


def edited_pairs(functions: list[dict], threshold: float, cross_language: bool = False) -> dict[tuple[int, int], float]:
    """Pairs (a < b) whose 4-gram sets ("shingles", from `hashed_pairs`) have Jaccard >= `threshold`.

    One function stands for each renamed-hash bucket (the others are its type-1/2 copies, already
    paired with it), and only those with MIN_SHINGLES or more take part. Prefix filtering: with the
    shingles of each set ordered rarest first, two sets with Jaccard >= t share one of their first
    |s| - ceil(t |s|) + 1, so only functions sharing such a shingle are compared (a shingle held by
    more than COMMON_SHINGLE functions proposes nothing: boilerplate). Candidates whose MinHash
    estimate is more than 4 standard errors below the threshold are dropped unchecked (a pair at the
    threshold is lost with odds of about 1 in 30,000); the rest are checked exactly. Returns the Jaccard of
    each pair found.
    """
    picked: dict[tuple[str, str], int] = {}
    for i, row in enumerate(functions):
        if len(row["shingles"]) >= MIN_SHINGLES:
            picked.setdefault((row["hashes"][1], "" if cross_language else row["language"]), i)
    reps = np.array(sorted(picked.values()), dtype=np.int64)
    if len(reps) < 2:
        return {}
    # Shingles as dense ids, rarest first: id order is (frequency, shingle) order.
    sets = [np.fromiter(functions[i]["shingles"], dtype=np.int64) for i in reps]
    sizes = np.array([len(x) for x in sets])
    owner = np.repeat(np.arange(len(reps)), sizes)
    bounds = np.r_[0, np.cumsum(sizes)]  # set r is ids[bounds[r] : bounds[r + 1]]
    values, dense = np.unique(np.concatenate(sets), return_inverse=True)
    frequency = np.bincount(dense)
    rank = np.empty(len(values), dtype=np.int64)
    rank[np.lexsort((values, frequency))] = np.arange(len(values))
    ids = rank[dense]
    order = np.lexsort((ids, owner))  # by set, rarest shingle first
    owner, ids = owner[order], ids[order]
    position = np.arange(len(ids)) - np.repeat(bounds[:-1], sizes)
    prefix = sizes - np.ceil(threshold * sizes - 1e-9).astype(np.int64) + 1
    in_prefix = position < prefix[owner]
    # Candidates: every two sets whose prefixes share a shingle that is not too common.
    p_owner, p_ids = owner[in_prefix], ids[in_prefix]
    by_shingle = np.lexsort((p_owner, p_ids))
    p_owner, p_ids = p_owner[by_shingle], p_ids[by_shingle]
    starts = np.flatnonzero(np.r_[True, p_ids[1:] != p_ids[:-1]])
    counts = np.diff(np.r_[starts, len(p_ids)])
    left, right = [], []
    for count in np.unique(counts[(counts >= 2) & (counts <= COMMON_SHINGLE)]):
        x, y = np.triu_indices(count, 1)
        at = starts[counts == count][:, None]
        left.append(p_owner[(at + x).ravel()])
        right.append(p_owner[(at + y).ravel()])
    if not left:
        return {}
    a, b = np.concatenate(left), np.concatenate(right)
    small, large = np.minimum(sizes[a], sizes[b]), np.maximum(sizes[a], sizes[b])
    keep = small >= threshold * large - 1e-9  # sizes alone rule the rest out
    if not cross_language:
        languages = np.unique([functions[i]["language"] for i in reps], return_inverse=True)[1]
        keep &= languages[a] == languages[b]
    key = np.unique(a[keep] * len(reps) + b[keep])
    if not len(key):
        return {}
    a, b = key // len(reps), key % len(reps)
    # Most candidates share a common shingle or two and little else: a MinHash estimate of their
    # Jaccard (64 hashes, standard error <= 0.0625) drops those more than 4 errors below the threshold.
    signature = _minhash(ids, bounds[:-1])
    estimate = np.concatenate([(signature[a[s : s + 65536]] == signature[b[s : s + 65536]]).mean(axis=1)
                               for s in range(0, len(a), 65536)])
    close = estimate >= threshold - 0.25
    a, b = a[close], b[close]
    # Exact Jaccard: count the shingles each candidate pair shares, a block of pairs at a time.
    found: dict[tuple[int, int], float] = {}
    for start in range(0, len(a), 100_000):
        ba, bb = a[start : start + 100_000], b[start : start + 100_000]
        pair = np.arange(len(ba))
        keys = np.concatenate([np.repeat(pair, sizes[ba]) * len(values) + ids[_ranges(bounds, ba)],
                               np.repeat(pair, sizes[bb]) * len(values) + ids[_ranges(bounds, bb)]])
        keys.sort()
        shared = keys[1:][keys[1:] == keys[:-1]] // len(values)
        common = np.bincount(shared, minlength=len(ba))
        jaccard = common / (sizes[ba] + sizes[bb] - common)
        for x in np.flatnonzero(jaccard >= threshold - 1e-9):
            i, j = int(reps[ba[x]]), int(reps[bb[x]])
            found[(min(i, j), max(i, j))] = round(float(jaccard[x]), 6)
    return found


def _minhash(ids: np.ndarray, starts: np.ndarray, hashes: int = 64, seed: int = 0) -> np.ndarray:
    """(sets, hashes) MinHash signatures of the non-empty sets laid end to end in `ids` (dense shingle
    ids; starts: where each set begins), each hash a random permutation of the ids."""
    rng = np.random.default_rng(seed)
    span = int(ids.max()) + 1
    out = np.empty((len(starts), hashes), dtype=np.uint32)
    for k in range(hashes):
        out[:, k] = np.minimum.reduceat(rng.permutation(span).astype(np.uint32)[ids], starts)
    return out


def _ranges(bounds: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The concatenated index ranges bounds[r]:bounds[r + 1] of each of `rows`."""
    lengths = bounds[rows + 1] - bounds[rows]
    return np.repeat(bounds[rows] - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())


def _windows_of(owner: np.ndarray):
    """A function from an owner to the positions of its vector rows."""
    order = np.argsort(owner, kind="stable")
    bounds = np.searchsorted(owner[order], np.arange(int(owner.max(initial=-1)) + 2))
    return lambda i: order[bounds[i] : bounds[i + 1]] if i + 1 < len(bounds) else order[:0]


def _best_cosine(va: np.ndarray, vb: np.ndarray) -> float:
    """The best cosine between a row of `va` and one of `vb` (unit vectors; 0.0 if one has none)."""
    if not len(va) or not len(vb):
        return 0.0
    return round(float((va @ vb.T).max()), 6)


# --- pairs -> groups -----------------------------------------------------------------------------


def _contains(outer: dict, inner: dict) -> bool:
    return (outer["path"] == inner["path"] and outer["start_line"] <= inner["start_line"]
            and inner["end_line"] <= outer["end_line"])


def _innermost(pairs: dict[tuple[int, int], float], functions: list[dict]) -> dict[tuple[int, int], float]:
    """Drop pairs of a function with its own parts, then the pairs of any class holding a paired function."""
    pairs = {p: s for p, s in pairs.items()
             if not (_contains(functions[p[0]], functions[p[1]]) or _contains(functions[p[1]], functions[p[0]]))}
    paired: dict[str, list[int]] = {}
    for a, b in pairs:
        for i in (a, b):
            paired.setdefault(functions[i]["path"], []).append(i)
    holders = {
        i for ids in paired.values() for i in set(ids)
        if functions[i]["kind"] == "class" and any(j != i and _contains(functions[i], functions[j]) for j in set(ids))
    }
    return {p: s for p, s in pairs.items() if p[0] not in holders and p[1] not in holders}


def _groups(pairs: dict[tuple[int, int], float], functions: list[dict],
            edited: set[tuple[int, int]] = frozenset()) -> list[CloneGroup]:
    parent: dict[int, int] = {}

    def find(i: int) -> int:
        while parent.setdefault(i, i) != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        parent[find(a)] = find(b)
    members: dict[int, list[int]] = {}
    weakest: dict[int, float] = {}
    by_overlap: set[int] = set()
    for (a, b), score in pairs.items():
        root = find(a)
        weakest[root] = min(weakest.get(root, 1.0), score)
        if (a, b) in edited:
            by_overlap.add(root)
    for i in list(parent):
        members.setdefault(find(i), []).append(i)
    groups = [_group(sorted(ids, key=lambda i: (functions[i]["path"], functions[i]["start_line"])),
                     functions, weakest[root], root in by_overlap) for root, ids in members.items()]
    groups.sort(key=lambda g: (-g.similarity, -len(g.members), g.members[0].path, g.members[0].start_line))
    return groups


def _group(ids: list[int], functions: list[dict], similarity: float, edited: bool = False) -> CloneGroup:
    rows = [functions[i] for i in ids]
    hashes = [row.get("hashes") or token_hashes(row["code"]) for row in rows]
    if len({h[0] for h in hashes}) == 1:
        kind = "exact"
    elif len({h[1] for h in hashes}) == 1:
        kind = "renamed"
    else:
        kind = "edited" if edited else "similar"
    members = tuple(
        CloneMember(row["path"], int(row["start_line"]), int(row["end_line"]), row["name"], row["kind"],
                    row["language"], row["content_hash"])
        for row in rows
    )
    return CloneGroup(group_fingerprint(members), kind, round(float(similarity), 4), members)


def group_fingerprint(members) -> str:
    return hashlib.sha1("\n".join(sorted({m.content_hash for m in members})).encode()).hexdigest()


# --- CI: changed lines and baselines -------------------------------------------------------------


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", "-c", "core.quotepath=off", "-c", "core.fsmonitor=false", "-C", str(root), *args],
                              capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise CodesearchError("--changed-since needs git, which is not installed") from None


def changed_lines(root: Path, rev: str) -> dict[str, list[tuple[int, int]] | None]:
    """Lines added or changed since `rev` in the working tree, per repo-relative path (None: whole file)."""
    if rev.startswith("-") or _git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").returncode:
        raise CodesearchError(f"unknown git revision {rev!r} (in {root})")
    diff = _git(root, "diff", "--unified=0", "--no-color", "--no-ext-diff", "--relative", "--no-prefix", rev, "--")
    if diff.returncode:
        raise CodesearchError(f"git diff {rev} failed: {diff.stderr.strip()}")
    changed: dict[str, list[tuple[int, int]] | None] = {}
    path = None
    for line in diff.stdout.splitlines():
        if line.startswith("+++ "):
            name = line[4:].strip('"')
            path = None if name == "/dev/null" else name
            if path is not None:
                changed.setdefault(path, [])
        elif line.startswith("@@") and path is not None:
            new = line.split()[2]  # "+start[,count]"
            start, _, count = new[1:].partition(",")
            first, count = int(start), int(count or 1)
            lines = changed[path]
            lines.append((first, first + count - 1) if count else (max(first, 1), first + 1))
    untracked = _git(root, "ls-files", "--others", "--exclude-standard", "-z")
    for name in untracked.stdout.split("\0"):
        if name:
            changed[name] = None
    return changed


def _touched(member: CloneMember, changed: dict[str, list[tuple[int, int]] | None]) -> bool:
    if member.path not in changed:
        return False
    spans = changed[member.path]
    return spans is None or any(a <= member.end_line and member.start_line <= b for a, b in spans)


def write_baseline(path: Path, groups: list[CloneGroup]) -> None:
    """Record `groups` as known clones (atomically): each by its members' content hashes."""
    data = {
        "version": 1,
        "tool": "codesearch clones",
        "groups": [
            {"fingerprint": g.fingerprint, "hashes": sorted({m.content_hash for m in g.members}),
             "members": [f"{m.path}:{m.start_line} {m.name}" for m in g.members]}
            for g in groups
        ],
    }
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise CodesearchError(f"cannot write baseline {path}: {exc.strerror}") from None


def read_baseline(path: Path) -> list[frozenset[str]]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return [frozenset(group["hashes"]) for group in data["groups"]]
    except OSError as exc:
        raise CodesearchError(f"cannot read baseline {path}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError):
        raise CodesearchError(f"{path} is not a codesearch clones baseline (write one with --write-baseline)") from None


def _known(group: CloneGroup, baseline: list[frozenset[str]]) -> bool:
    """A group is known when a baseline group holds all its members (a copy removed stays known)."""
    hashes = {m.content_hash for m in group.members}
    return any(hashes <= known for known in baseline)
