"""LanceDB store details that can go wrong quietly: quoting, globs, atomic per-file replace."""

import time

import numpy as np
import pytest

from codesearch.errors import CodesearchError
from codesearch.indexdir import claim_index_dir
from codesearch.store import (
    SCHEMA_VERSION, FileState, IndexMeta, Store, centered_cosine, glob_to_like, sql_in, sql_str,
)


@pytest.mark.parametrize(
    "glob, like",
    [
        ("src/*.py", "src/%.py"),
        ("**/test_?.py", r"%/test\__.py"),
        ("src", "src%"),
        ("src/", "src%"),
        ("a_b%c", r"a\_b\%c%"),
    ],
)
def test_glob_to_like(glob, like):
    assert glob_to_like(glob) == like


def test_quotes_are_escaped():
    assert sql_str("it's.py") == "'it''s.py'"
    assert sql_in("path", ["a", "b'c"]) == "path IN ('a', 'b''c')"


def _row(path, name, window=0, dim=4):
    vector = np.zeros(dim, dtype=np.float32)
    vector[hash(name) % dim] = 1.0
    return {
        "id": f"{path}{name}:{window}", "chunk_id": f"{path}{name}", "window": window, "path": path,
        "language": "python", "kind": "function", "name": name, "signature": "", "docstring": "",
        "start_line": 1, "end_line": 2, "code": f"def {name}(): pass", "content_hash": name,
        "lexical": name if window == 0 else "", "vector": vector,
    }


@pytest.fixture
def store(tmp_path):
    store = Store.open(tmp_path / "index", create=True)
    store.reset(IndexMeta(SCHEMA_VERSION, "m", 4, 64, 8, time.time()))
    return store


def test_index_directory_is_private(store):
    assert store.path.stat().st_mode & 0o777 == 0o700


def test_replace_files_swaps_a_files_rows_and_keeps_others(store):
    state = lambda p: FileState(p, 1, 1, "sha", "python", 1)  # noqa: E731
    store.replace_files(["it's.py", "b.py"], [_row("it's.py", "old"), _row("b.py", "keep")], [state("it's.py"), state("b.py")])
    store.replace_files(["it's.py"], [_row("it's.py", "new"), _row("it's.py", "new", window=1)], [state("it's.py")])
    names = sorted(store.chunks.to_arrow()["name"].to_pylist())
    assert names == ["keep", "new", "new"]
    assert store.counts() == {"files": 2, "chunks": 2, "functions": 2, "rows": 3}
    assert sorted(store.vectors_for({"new", "missing"})) == ["new"]
    assert store.vectors_for({"new"})["new"].shape == (2, 4)
    store.delete_files(["it's.py"])
    assert store.chunks.to_arrow()["name"].to_pylist() == ["keep"]
    assert list(store.file_states()) == ["b.py"]


def test_missing_and_damaged_index_are_clear_errors(tmp_path):
    with pytest.raises(CodesearchError, match="no index"):
        Store.open(tmp_path / "nothing")
    claim_index_dir(tmp_path / "bad")  # a folder of ours whose meta.json was damaged
    (tmp_path / "bad" / "meta.json").write_text("{not json")
    with pytest.raises(CodesearchError, match="damaged meta.json"):
        Store.open(tmp_path / "bad")


def test_in_memory_vector_search_matches_lancedb_and_follows_writes(store):
    state = lambda p: FileState(p, 1, 1, "sha", "python", 1)  # noqa: E731
    names = [f"f{i}" for i in range(12)]
    store.replace_files(["a.py"], [_row("a.py", n) for n in names], [state("a.py")])
    query = np.array([0.9, 0.1, 0.3, 0.2], dtype=np.float32)
    query /= np.linalg.norm(query)
    fast = store.vector_search(query, 5, None)
    lance = store.vector_search(query, 5, "window >= 0")  # a filter takes LanceDB's own search
    assert [r["_distance"] for r in fast] == pytest.approx([r["_distance"] for r in lance], abs=1e-5)
    assert sorted(fast, key=lambda r: r["_distance"])[0]["_distance"] == fast[0]["_distance"]
    store.replace_files(["b.py"], [_row("b.py", "newcomer")], [state("b.py")])
    assert "newcomer" in {r["name"] for r in store.vector_search(query, 20, None)}
    store.delete_files(["a.py"])
    assert {r["name"] for r in store.vector_search(query, 20, None)} == {"newcomer"}


def test_centered_cosine_is_the_cosine_of_the_centered_vectors():
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(30, 8)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    center = matrix.mean(axis=0)
    rows, query = matrix - center, matrix[3] - center
    expected = rows @ query / np.linalg.norm(rows, axis=1) / np.linalg.norm(query)
    scores = centered_cosine(matrix[3], matrix, center)
    assert scores == pytest.approx(expected, abs=1e-5)
    assert scores[3] == pytest.approx(1.0) and int(np.argmax(scores)) == 3  # a copy still scores 1
    assert centered_cosine(matrix[3], matrix, np.zeros(8, np.float32)) == pytest.approx(matrix @ matrix[3], abs=1e-6)


def test_centered_search_and_mean_vector_follow_the_table(store):
    state = lambda p: FileState(p, 1, 1, "sha", "python", 1)  # noqa: E731
    rng = np.random.default_rng(1)
    rows = [_row("a.py", f"f{i}") for i in range(40)]
    for row in rows:
        vector = rng.normal(size=4).astype(np.float32) + np.array([3, 0, 0, 0], np.float32)  # a common direction
        row["vector"] = vector / np.linalg.norm(vector)
    store.replace_files(["a.py"], rows, [state("a.py")])
    matrix = np.stack([r["vector"] for r in rows])
    mean, count = store.mean_vector()
    assert count == 40 and mean == pytest.approx(matrix.mean(axis=0), abs=1e-6)
    query = matrix[7]
    expected = np.argsort(-centered_cosine(query, matrix, mean), kind="stable")[:5]
    fast = store.vector_search(query, 5, None, mean)
    assert [r["name"] for r in fast] == [f"f{i}" for i in expected]
    assert fast[0]["name"] == "f7" and fast[0]["_distance"] == pytest.approx(0.0, abs=1e-5)
    lance = store.vector_search(query, 5, "window >= 0", mean)  # a filter: LanceDB's pool, re-ranked
    assert [r["name"] for r in lance] == [r["name"] for r in fast]
    assert [r["_distance"] for r in lance] == pytest.approx([r["_distance"] for r in fast], abs=1e-5)
    assert "vector" not in lance[0]
    store.replace_files(["b.py"], [_row("b.py", "newcomer")], [state("b.py")])
    assert store.mean_vector()[1] == 41  # a new table version: computed again


def test_a_reader_of_an_old_version_survives_the_next_write(store, monkeypatch):
    # Versions are kept for a while after they are replaced, however old they are: an index idle
    # for longer than that, opened by a reader just before a write, must still read to the end.
    import codesearch.store as store_module

    monkeypatch.setattr(store_module, "_RETIRE_AFTER_S", 1.0)
    state = lambda p: FileState(p, 1, 1, "sha", "python", 1)  # noqa: E731
    for i in range(3):
        store.replace_files([f"f{i}.py"], [_row(f"f{i}.py", f"fn{i}")], [state(f"f{i}.py")])
    store.finish()
    time.sleep(2.5)  # the index sits idle past the retention time
    reader = Store.open(store.path)
    old = reader.chunks  # pinned to the version it opened
    store.replace_files(["f0.py"], [_row("f0.py", "changed")], [state("f0.py")])
    store.finish()  # compacts and cleans up old versions
    assert old.version in {v["version"] for v in store.chunks.list_versions()}  # its files stay
    assert sorted(old.to_arrow()["name"].to_pylist()) == ["fn0", "fn1", "fn2"]
    time.sleep(1.5)
    store.replace_files(["f1.py"], [_row("f1.py", "again")], [state("f1.py")])
    store.finish()  # now the reader's version was replaced long enough ago to go
    assert min(v["version"] for v in store.chunks.list_versions()) > old.version
