"""The vector index: built past a size, used only once its measured recall@10 is good enough."""

from __future__ import annotations

import time

import numpy as np
import pytest

import codesearch.ann as ann
from codesearch.store import SCHEMA_VERSION, FileState, IndexMeta, Store

DIM = 32


def _clustered(n: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around 40 centres: closer to real embeddings than uniform noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, DIM))
    data = centres[rng.integers(0, 40, n)] + 0.35 * rng.normal(size=(n, DIM))
    return (data / np.linalg.norm(data, axis=1, keepdims=True)).astype(np.float32)


def _store_of(path, vectors: np.ndarray) -> Store:
    store = Store.open(path, create=True)
    store.reset(IndexMeta(SCHEMA_VERSION, "m", DIM, 64, 8, time.time()))
    rows = [
        {"id": f"r{i}:0", "chunk_id": f"r{i}", "window": 0, "path": f"f{i % 30}.py", "language": "python",
         "kind": "function", "name": f"f{i}", "signature": "", "docstring": "", "start_line": 1, "end_line": 2,
         "code": "", "content_hash": f"h{i}", "lexical": f"f{i}", "vector": v}
        for i, v in enumerate(vectors)
    ]
    paths = sorted({r["path"] for r in rows})
    store.replace_files(paths, rows, [FileState(p, 1, 1, "sha", "python", 100) for p in paths])
    return store


@pytest.fixture
def big_store(tmp_path):
    vectors = _clustered(3000)
    return _store_of(tmp_path / "index", vectors), vectors


def _exact(vectors: np.ndarray, query: np.ndarray, k: int) -> list[str]:
    return [f"r{i}" for i in np.argsort(-(vectors @ query))[:k]]


def test_below_the_threshold_no_index_is_built(big_store):
    store, _ = big_store
    store.finish()
    assert ann.load(store) is None
    assert not any(ix.index_type.startswith("IVF") for ix in store.chunks.list_indices())


def test_past_the_threshold_an_index_is_built_measured_and_used(big_store, monkeypatch):
    store, vectors = big_store
    monkeypatch.setattr(ann, "ANN_MIN_ROWS", 1000)
    store.finish()
    found = ann.load(store)
    assert found is not None and found.rows == 3000 and found.trusted and found.recall >= ann.MIN_RECALL

    reader = Store.open(store.path)
    assert reader._trusted_vector_index() == found
    queries = ann.sample_queries(reader.chunks, DIM, 20, seed=7)
    recall = np.mean([
        len({r["chunk_id"] for r in reader.vector_search(q, 10, None)} & set(_exact(vectors, q, 10))) / 10
        for q in queries
    ])
    assert recall >= 0.9  # other queries than the sample's: the guarantee MIN_RECALL is set to give
    assert {r["path"] for r in reader.vector_search(queries[0], 10, "path = 'f3.py'")} == {"f3.py"}


def test_a_centered_search_through_the_index_and_a_sampled_mean(tmp_path, monkeypatch):
    """Past the threshold a clone query's centered search re-ranks the index's nearest rows, and the
    mean vector is estimated from a sample of the rows."""
    import codesearch.store as store_module

    monkeypatch.setattr(ann, "ANN_MIN_ROWS", 1000)
    monkeypatch.setattr(store_module, "_MEAN_SAMPLE", 1500)
    vectors = _clustered(3000) + 1.5 * np.eye(DIM, dtype=np.float32)[0]  # a direction every row shares
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store = _store_of(tmp_path / "shared", vectors)
    store.finish()
    reader = Store.open(store.path)
    assert reader._trusted_vector_index() is not None
    mean, rows = reader.mean_vector()
    assert rows == 3000 and np.linalg.norm(mean - vectors.mean(axis=0)) < 0.1 * np.linalg.norm(vectors.mean(axis=0))
    queries = ann.sample_queries(reader.chunks, DIM, 20, seed=7)
    overlap, plain = [], []
    for q in queries:
        exact = [f"r{i}" for i in np.argsort(-store_module.centered_cosine(q, vectors, mean))[:10]]
        found = reader.vector_search(q, 10, None, mean)
        scores = [1.0 - r["_distance"] for r in found]
        assert scores == sorted(scores, reverse=True)
        overlap.append(len({r["chunk_id"] for r in found} & set(exact)) / 10)
        plain.append(len(set(_exact(vectors, q, 10)) & set(exact)) / 10)
    assert np.mean(overlap) >= 0.9 and np.mean(plain) < 0.8  # the plain cosine would rank otherwise


def test_an_index_whose_recall_falls_short_is_not_used(big_store, monkeypatch):
    store, vectors = big_store
    monkeypatch.setattr(ann, "ANN_MIN_ROWS", 1000)
    monkeypatch.setattr(ann, "MIN_RECALL", 1.01)  # no setting can reach it
    monkeypatch.setattr(ann, "LADDER", ((1, 1),))
    store.finish()
    found = ann.load(store)
    assert found is not None and not found.trusted
    reader = Store.open(store.path)
    assert reader._trusted_vector_index() is None
    query = vectors[5] + vectors[6]
    query /= np.linalg.norm(query)
    assert [r["chunk_id"] for r in reader.vector_search(query, 10, None)] == _exact(vectors, query, 10)
    assert [r["chunk_id"] for r in reader.vector_search(query, 10, "window = 0")] == _exact(vectors, query, 10)


def test_exact_top_k_streams_to_the_same_answer(big_store):
    store, vectors = big_store
    queries = ann.sample_queries(store.chunks, DIM, 5, seed=1)
    found = ann.exact_top_k(store.chunks, queries, 10, batch_rows=700)
    for q, ids in zip(queries, found):
        assert sorted(i.split(":")[0] for i in ids) == sorted(_exact(vectors, q, 10))
