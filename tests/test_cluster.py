"""Indexing on a real local Ray cluster (2 CPUs): the same index as one machine makes, and incremental."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from codesearch.indexer import build_index
from codesearch.search import Index

ray = pytest.importorskip("ray", reason='Ray is not installed: pip install -e ".[cluster]"')


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _rows(index: Index) -> dict[str, np.ndarray]:
    table = index.store.chunks.to_arrow()
    return {i: np.asarray(v, dtype=np.float32) for i, v in zip(table["id"].to_pylist(), table["vector"].to_pylist())}


def test_a_cluster_index_equals_a_single_machine_index_and_is_incremental(ray_cluster, repo, settings, tmp_path):
    from codesearch.cluster import build_index_on_cluster

    local = dataclasses.replace(settings, index_dir=str(tmp_path / "local"))
    on_cluster = dataclasses.replace(settings, index_dir=str(tmp_path / "cluster"))
    build_index(repo, local)
    report = build_index_on_cluster(repo, on_cluster, "auto", workers=2)
    assert report.chunks_embedded > 0 and report.files_changed == report.files

    one, many = _rows(Index.open(repo, local)), _rows(Index.open(repo, on_cluster))
    assert sorted(one) == sorted(many)
    for row_id, vector in one.items():
        np.testing.assert_allclose(many[row_id], vector, atol=1e-5)

    again = build_index_on_cluster(repo, on_cluster, "auto", workers=2)
    assert (again.files_read, again.chunks_embedded, again.files_changed) == (0, 0, 0)

    target = next(repo.glob("py/*.py"))
    target.write_text(target.read_text() + "\n\ndef brand_new_helper(x):\n    return x * 2\n", encoding="utf-8")
    changed = build_index_on_cluster(repo, on_cluster, "auto", workers=2)
    # the new function, and the file's summary chunk, which lists it among the file's names
    assert (changed.files_read, changed.files_changed, changed.chunks_embedded) == (1, 1, 2)
    hits = Index.open(repo, on_cluster).search("brand_new_helper", k=1, mode="lexical")
    assert hits[0].name == "brand_new_helper"


def test_the_cli_indexes_on_the_cluster(ray_cluster, run, repo):
    code, out, err = run("index", str(repo), "--cluster", "auto", "--json")
    assert code == 0, err
    assert json.loads(out)["chunks_embedded"] == json.loads(out)["chunks"] > 0
    code, out, _ = run("query", "parse json", "--root", str(repo), "--json")
    assert code == 0 and json.loads(out.splitlines()[0])["type"] == "hit"


@pytest.mark.parametrize("address", ["localhost:10001", "http://example.com"])
def test_a_cluster_address_that_is_not_ray_is_refused(run, repo, address):
    code, out, err = run("index", str(repo), "--cluster", address)
    assert (code, out) == (2, "") and "ray://HOST:PORT or auto" in err
