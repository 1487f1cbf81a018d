"""An index in object storage: built into s3:// (moto's S3 server on loopback, the outside world's
boundary), read from a fresh process, and answering exactly as a local index of the same repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from codesearch.errors import CodesearchError
from codesearch.objectstore import storage_options

moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def s3_endpoint():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint, monkeypatch, request):
    import boto3

    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "CODESEARCH_S3_ENDPOINT": s3_endpoint}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    name = request.node.name.replace("_", "-")[:50].lower()
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return f"s3://{name}"


def _query(root, index: str, text: str, tiny_model) -> list[tuple[str, str, float]]:
    """Hits of `codesearch query --json` run in a fresh process: (repo, chunk id, score)."""
    env = {**os.environ, "CODESEARCH_MODEL": str(tiny_model), "CODESEARCH_THREADS": "1"}
    argv = [sys.executable, "-m", "codesearch", "query", text, "--root", str(root), "--index", index, "--json", "-k", "20"]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    return [(r["repo"], r["chunk_id"], r["score"]) for r in rows if r["type"] == "hit"]


def test_an_index_in_s3_answers_like_a_local_one(run, repo, bucket, tiny_model, tmp_path, monkeypatch):
    remote, local = f"{bucket}/team/index", str(tmp_path / "local-index")
    code, out, err = run("index", str(repo), "--index", remote, "--json")
    assert code == 0, err
    assert json.loads(out)["chunks_embedded"] > 0
    assert run("index", str(repo), "--index", local)[0] == 0

    for text in ("parse json", "retry with backoff"):
        from_s3 = _query(repo, remote, text, tiny_model)
        assert from_s3 and from_s3 == _query(repo, local, text, tiny_model)

    code, out, _ = run("index", str(repo), "--index", remote, "--json")  # incremental: nothing to do
    assert code == 0 and json.loads(out)["files_read"] == 0 and json.loads(out)["chunks_embedded"] == 0
    code, out, _ = run("status", str(repo), "--index", remote, "--json")
    status = json.loads(out)
    assert code == 0 and status["index_path"] == remote and status["stale_files"] == 0 and status["complete"]

    code, out, _ = run("similar", "--code", "def load(text):\n    return json.loads(text)\n", "--root", str(repo),
                       "--index", remote, "--json")
    assert code == 0 and json.loads(out.splitlines()[0])["type"] == "hit"
    monkeypatch.setenv("CODESEARCH_INDEX_DIR", remote)  # clones takes the index from the settings
    code, out, err = run("clones", str(repo), "--format", "json")
    assert code == 0 and "groups" in json.loads(out), err


def test_a_rebuild_in_s3_switches_generations_and_keeps_answering(run, repo, bucket):
    remote = f"{bucket}/index"
    assert run("index", str(repo), "--index", remote)[0] == 0
    code, _, err = run("index", str(repo), "--index", remote, "--rebuild")
    assert code == 0 and "--rebuild" in err
    code, out, _ = run("query", "parse json", "--root", str(repo), "--index", remote, "--json")
    assert code == 0 and json.loads(out.splitlines()[0])["name"]


def test_a_missing_s3_index_is_a_clear_error(run, repo, bucket):
    code, out, err = run("query", "parse json", "--root", str(repo), "--index", f"{bucket}/nothing-here")
    assert code == 2 and out == "" and "no index at" in err and "codesearch index" in err


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"CODESEARCH_S3_ENDPOINT": "http://127.0.0.1:9000"}, {"endpoint": "http://127.0.0.1:9000", "allow_http": "true"}),
        ({"AWS_ENDPOINT_URL": "http://localhost:9000"}, {"endpoint": "http://localhost:9000", "allow_http": "true"}),
        ({"AWS_ENDPOINT_URL": "https://s3.example.com", "AWS_REGION": "eu-west-1"},
         {"endpoint": "https://s3.example.com", "region": "eu-west-1"}),
        ({"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}, {"aws_access_key_id": "k", "aws_secret_access_key": "s"}),
        ({"CODESEARCH_S3_ENDPOINT": "http://minio.internal:9000", "CODESEARCH_S3_ALLOW_HTTP": "1"},
         {"endpoint": "http://minio.internal:9000", "allow_http": "true"}),
    ],
)
def test_storage_options_from_the_environment(env, expected):
    assert storage_options(env) == expected


def test_plain_http_to_another_host_is_refused():
    with pytest.raises(CodesearchError, match="plain HTTP"):
        storage_options({"CODESEARCH_S3_ENDPOINT": "http://minio.internal:9000"})


def test_the_language_server_serves_an_index_in_s3_read_only(run, repo, bucket, tiny_model):
    import time

    from codesearch.config import Settings
    from codesearch.daemon import LiveIndex

    remote = f"{bucket}/shared"
    assert run("index", str(repo), "--index", remote)[0] == 0
    live = LiveIndex(repo, Settings(model=str(tiny_model), threads=1, index_dir=remote), debounce=0.05)
    live.start()
    try:
        deadline = time.monotonic() + 120
        while live.index is None and not live.last_error and time.monotonic() < deadline:
            time.sleep(0.1)
        assert live.index is not None, live.last_error
        assert live.read_only and live.state == "idle" and live._observer is None  # no watcher
        assert live.index.search("parse json", 3, mode="lexical")[0].name == "parse_json"

        (repo / "py" / "extra.py").write_text("def tally_widgets(items):\n    return sum(1 for _ in items)\n")
        live.changed([repo / "py" / "extra.py"])  # not ours to index
        with pytest.raises(CodesearchError, match="read-only"):
            live.sync().result(timeout=60)
        assert not live.index.search("tally widgets", 5, mode="lexical")

        assert run("index", str(repo), "--index", remote)[0] == 0  # the one writer, elsewhere
        hits = live.index.search("tally widgets", 5, mode="lexical")  # seen without reopening
        assert hits and hits[0].name == "tally_widgets"
    finally:
        live.close()


def test_a_dry_run_knows_an_index_in_s3(run, repo, bucket):
    remote = f"{bucket}/planned"
    assert json.loads(run("index", str(repo), "--index", remote, "--dry-run", "--json")[1])["index_exists"] is False
    assert run("index", str(repo), "--index", remote)[0] == 0
    assert json.loads(run("index", str(repo), "--index", remote, "--dry-run", "--json")[1])["index_exists"] is True
