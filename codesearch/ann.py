"""A vector index for big indexes: built once a table passes `ANN_MIN_ROWS` rows, and used only after
its recall@10 against exact search has been measured and found good enough.

Below the threshold the store's exact in-memory search is exact and fast enough, and no index has
to be trained and kept up to date (BENCHMARKS.md, "Org scale"). Above it, `maintain` (called by the writer after each run) trains a LanceDB IVF_PQ index,
measures recall@10 on `SAMPLE_QUERIES` queries against an exact scan, and walks up a ladder of
search settings (more partitions probed, more candidates re-ranked on the full vectors) until recall
reaches `MIN_RECALL`. What it found is kept beside meta.json as `vector-index.json`; readers use the
index only when that says it is trusted. New rows are added to the index by `optimize()`; it is
trained again once the table has grown by a fifth since.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import numpy as np

ANN_MIN_ROWS = 100_000  # rows (windows) past which an index pays for itself (BENCHMARKS.md, "Org scale")
# Recall@10 an index must show on the sample before a query uses it: 0.95 measured on 200 queries, so
# that its true recall is at least 0.9 (at 300k rows, 0.912 on 100 queries was 0.886 on 50 others).
MIN_RECALL = 0.95
SAMPLE_QUERIES = 200
K = 10
NOTE = "vector-index.json"
LADDER = ((20, 1), (20, 10), (50, 10), (50, 30), (100, 50))  # (nprobes, refine_factor), cheapest first
_RETRAIN_GROWTH = 1.2


@dataclass(frozen=True)
class VectorIndex:
    """A built index and the search settings its recall was measured with."""

    index_type: str
    rows: int  # rows when it was trained
    nprobes: int
    refine_factor: int
    recall: float  # recall@10 against exact search, with these settings

    @property
    def trusted(self) -> bool:
        return self.recall >= MIN_RECALL


def load(store) -> VectorIndex | None:
    """The index recorded for `store`'s tables, or None (none built, or recorded for another generation)."""
    try:
        data = json.loads(store.read_note(NOTE) or "null")
        if not data or data.pop("tables", None) != store.tables:
            return None
        return VectorIndex(**data)
    except (ValueError, TypeError):
        return None


def maintain(store, *, min_rows: int | None = None, index_type: str = "IVF_PQ") -> VectorIndex | None:
    """Build (or keep) the vector index of a table past `min_rows` (default `ANN_MIN_ROWS`) rows and
    record its measured recall."""
    table = store.chunks
    rows = table.count_rows()
    if rows < (ANN_MIN_ROWS if min_rows is None else min_rows):
        return None
    current = load(store)
    has_index = any(ix.index_type.startswith("IVF") for ix in table.list_indices())
    if current is not None and has_index and rows <= current.rows * _RETRAIN_GROWTH:
        return current
    dimension = store.meta.dimension
    options = {"num_sub_vectors": max(1, dimension // 8)} if index_type == "IVF_PQ" else {}
    table.create_index(
        metric="cosine", vector_column_name="vector", index_type=index_type, replace=True,
        num_partitions=max(1, int(math.sqrt(rows))), **options,
    )
    found = measure(table, dimension, index_type, rows)
    store.write_note(NOTE, json.dumps(dict(asdict(found), tables=store.tables)))
    return found


def measure(table, dimension: int, index_type: str, rows: int, seed: int = 0) -> VectorIndex:
    """Recall@10 of the table's index against exact search, up the ladder until it is good enough."""
    queries = sample_queries(table, dimension, SAMPLE_QUERIES, seed)
    truth = exact_top_k(table, queries, K)
    found = None
    for nprobes, refine in LADDER:
        got = [
            [r["id"] for r in ann_query(table, q, K, nprobes, refine).select(["id", "_distance"]).to_list()]
            for q in queries
        ]
        recall = float(np.mean([len(set(g) & set(t)) / K for g, t in zip(got, truth)]))
        found = VectorIndex(index_type, rows, nprobes, refine, round(recall, 4))
        if found.trusted:
            break
    return found


def ann_query(table, vector: np.ndarray, limit: int, nprobes: int, refine_factor: int):
    query = table.search(vector.astype(np.float32), vector_column_name="vector").distance_type("cosine")
    query = query.nprobes(nprobes)
    if refine_factor > 1:
        query = query.refine_factor(refine_factor)
    return query.limit(limit)


def sample_queries(table, dimension: int, n: int, seed: int) -> np.ndarray:
    """Queries between stored vectors (the normalised mean of two random rows): near real data, but
    never a stored row itself, which would make recall look better than it is."""
    rng = np.random.default_rng(seed)
    rows = table.count_rows()
    picked = rng.choice(rows, size=min(rows, 2 * n), replace=rows < 2 * n)
    data = table.take_offsets([int(i) for i in picked]).select(["vector"]).to_arrow()["vector"]
    vectors = np.asarray(data.combine_chunks().values.to_numpy(zero_copy_only=False), dtype=np.float32)
    vectors = vectors.reshape(-1, dimension)
    mixed = vectors[0::2][:n] + vectors[1::2][:n]
    return mixed / np.maximum(np.linalg.norm(mixed, axis=1, keepdims=True), 1e-12)


def exact_top_k(table, queries: np.ndarray, k: int, batch_rows: int = 65_536) -> list[list[str]]:
    """The ids of each query's k nearest rows by cosine, from one streaming scan (memory: one batch)."""
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_ids = np.full((len(queries), k), "", dtype=object)
    for batch in table.search().select(["id", "vector"]).limit(None).to_batches(batch_rows):
        ids = np.asarray(batch.column("id").to_pylist(), dtype=object)
        flat = batch.column("vector").values.to_numpy(zero_copy_only=False)
        matrix = np.asarray(flat, dtype=np.float32).reshape(len(ids), -1)
        norms = np.maximum(np.linalg.norm(matrix, axis=1), 1e-12)
        scores = (queries @ matrix.T) / norms  # (Q, B) cosine, queries are unit length
        all_scores = np.concatenate([best_scores, scores], axis=1)
        all_ids = np.concatenate([best_ids, np.broadcast_to(ids, scores.shape)], axis=1)
        top = np.argpartition(-all_scores, k - 1, axis=1)[:, :k]
        best_scores = np.take_along_axis(all_scores, top, axis=1)
        best_ids = np.take_along_axis(all_ids, top, axis=1)
    return [list(row) for row in best_ids]
