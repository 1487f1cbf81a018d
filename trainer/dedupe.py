"""Exact and near-duplicate detection for code, and decontamination against the benchmarks.

Exact: two snippets are the same when their whitespace-collapsed text is. Near: the Jaccard
similarity of their sets of 3-grams of identifiers and numbers (whole, lower-cased: splitting
camelCase, as the engine's lexical tokens do, changes nothing here and costs 4x the time) is at
least a threshold. MinHash signatures with banded LSH find the candidates; the exact Jaccard of the
shingle sets confirms them, so a hit is never a hash accident. `decontaminate` applies both tests
against the functions and programs of the benchmark folder: no training pair copies evaluation code.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections import Counter, defaultdict
from collections.abc import Hashable
from pathlib import Path

import numpy as np

from codesearch.chunking import chunk_text, code_without_docstring
from codesearch.errors import CodesearchError

SHINGLE = 3  # tokens per shingle
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")
_PRIME = np.uint64(4294967291)  # the largest prime below 2**32: (a*x + b) stays inside uint64


def normalised_hash(code: str) -> str:
    """A hash of the code with every run of whitespace made one space: indentation and line breaks do not count."""
    return hashlib.sha1(" ".join(code.split()).encode("utf-8", "surrogatepass")).hexdigest()


def shingles(code: str, k: int = SHINGLE) -> frozenset[int]:
    """The set of k-grams of the code's identifiers and numbers, each hashed to 32 bits (crc32: stable across runs)."""
    tokens = _WORD.findall(code.lower())
    if len(tokens) < k:
        return frozenset({zlib.crc32(" ".join(tokens).encode())}) if tokens else frozenset()
    return frozenset(zlib.crc32(" ".join(tokens[i : i + k]).encode()) for i in range(len(tokens) - k + 1))


def jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


class NearDuplicateIndex:
    """Shingle sets under keys; `similar(s)` returns the keys whose Jaccard with `s` is >= threshold.

    64 MinHash values in 16 bands of 4 rows: a pair at Jaccard 0.8 shares a band with probability
    1 - (1 - 0.8**4)**16 > 0.999, one at 0.3 with probability 0.12 (then rejected by the exact check).
    """

    def __init__(self, threshold: float, num_perm: int = 64, bands: int = 16, seed: int = 1):
        if num_perm % bands:
            raise ValueError("num_perm must be a multiple of bands")
        self.threshold = threshold
        self.bands, self.rows = bands, num_perm // bands
        rng = np.random.default_rng(seed)
        self._a = rng.integers(1, int(_PRIME), num_perm, dtype=np.uint64)  # (P,)
        self._b = rng.integers(0, int(_PRIME), num_perm, dtype=np.uint64)  # (P,)
        self._buckets: list[dict[bytes, list[Hashable]]] = [defaultdict(list) for _ in range(bands)]
        self._sets: dict[Hashable, frozenset[int]] = {}

    def __len__(self) -> int:
        return len(self._sets)

    def _band_keys(self, s: frozenset[int]) -> list[bytes]:
        x = np.fromiter(s, dtype=np.uint64, count=len(s)) % _PRIME if s else np.zeros(1, np.uint64)  # (S,)
        signature = ((self._a[:, None] * x[None, :] + self._b[:, None]) % _PRIME).min(axis=1)  # (P,)
        return [signature[i * self.rows : (i + 1) * self.rows].tobytes() for i in range(self.bands)]

    def add(self, key: Hashable, s: frozenset[int]) -> None:
        self._sets[key] = s
        for bucket, band in zip(self._buckets, self._band_keys(s)):
            bucket[band].append(key)

    def similar(self, s: frozenset[int]) -> list[Hashable]:
        """Keys of stored sets at Jaccard >= threshold with `s`, most similar first."""
        candidates = {key for bucket, band in zip(self._buckets, self._band_keys(s)) for key in bucket.get(band, ())}
        scored = [(jaccard(s, self._sets[key]), key) for key in candidates]
        return [key for score, key in sorted(scored, key=lambda t: -t[0]) if score >= self.threshold]

    def add_unless_similar(self, key: Hashable, s: frozenset[int]) -> Hashable | None:
        """Store `s` unless a stored set is a near duplicate; return that set's key, or None if stored."""
        band_keys = self._band_keys(s)
        checked: set[Hashable] = set()
        for bucket, band in zip(self._buckets, band_keys):
            for other in bucket.get(band, ()):
                if other not in checked and jaccard(s, self._sets[other]) >= self.threshold:
                    return other
                checked.add(other)
        self._sets[key] = s
        for bucket, band in zip(self._buckets, band_keys):
            bucket[band].append(key)
        return None


class BenchIndex:
    """Every function and program of the benchmark folder, to test code against (exact or near).

    Each *.jsonl under the folder with a "code" field counts (cosqa corpus, ojclone programs); each
    is taken whole, and each function the engine's chunker finds in it with and without docstring.
    """

    def __init__(self, bench_dir: Path, threshold: float = 0.8):
        bench_dir = Path(bench_dir)
        files = sorted(bench_dir.rglob("*.jsonl")) if bench_dir.is_dir() else []
        if not files:
            raise CodesearchError(f"bench folder {bench_dir} has no .jsonl files: cannot decontaminate")
        self.exact: set[str] = set()
        self.near = NearDuplicateIndex(threshold)
        self.items = 0
        for file in files:
            with open(file, encoding="utf-8") as f:
                for line in f:
                    code = json.loads(line).get("code") if line.strip() else None
                    if isinstance(code, str) and code.strip():
                        self._add(code)

    def _add(self, code: str) -> None:
        language = "python" if re.search(r"^\s*(?:async\s+)?def \w+\s*\(", code, re.MULTILINE) else "c"
        variants = {code}
        for chunk in chunk_text(code, language).chunks:
            variants.update((chunk.code, code_without_docstring(chunk)))
        for text in variants:
            self.exact.add(normalised_hash(text))
            self.near.add(self.items, shingles(text))
            self.items += 1

    def match(self, code: str) -> str | None:
        """"exact", "near" or None: how `code` is contained in the bench."""
        if normalised_hash(code) in self.exact:
            return "exact"
        return "near" if self.near.similar(shingles(code)) else None


def decontaminate(
    pairs: list[dict], bench_dir: Path, *, threshold: float = 0.8, index: BenchIndex | None = None
) -> tuple[list[dict], dict[str, int]]:
    """Drop every pair whose code is an exact or near-exact (Jaccard >= threshold) copy of a bench item.

    Returns the kept pairs and counts {"bench_items", "checked", "exact", "near", "kept"}.
    """
    index = index or BenchIndex(bench_dir, threshold)
    kept, counts = [], Counter()
    for pair in pairs:
        verdict = index.match(pair["code"])
        if verdict:
            counts[verdict] += 1
        else:
            kept.append(pair)
    return kept, {"bench_items": index.items, "checked": len(pairs), "exact": counts["exact"],
                  "near": counts["near"], "kept": len(kept)}
