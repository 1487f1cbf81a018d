"""The base protocol, read strictly (issue 24, item 9; and item 8's lone surrogate): every request is
answered, a wrong Content-Length costs one message, limits hold, shutdown and exit mean what they say.

Each test talks raw bytes to a real `codesearch lsp` over its stdin and stdout (tests/lsp_wire.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from lsp_wire import WAIT_S, frame, start_stdio, stop

from codesearch.indexer import writer_lock

SAMPLE_REPO = Path(__file__).parent / "fixtures" / "sample_repo"
PARSE_ERROR, INVALID_REQUEST, INVALID_PARAMS = -32700, -32600, -32602
MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # README: "Who may connect to the language server"
MAX_QUERY_CHARS = 2000


def _copy_repo(target: Path) -> Path:
    shutil.copytree(SAMPLE_REPO, target, ignore=shutil.ignore_patterns(".codesearch"))
    return target


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, tiny_model):
    """One server on an indexed copy of the sample repository: (process, wire, repo)."""
    repo = _copy_repo(tmp_path_factory.mktemp("framing") / "repo")
    proc, wire = start_stdio()
    assert "result" in wire.initialize(repo, tiny_model)
    _wait_indexed(wire)
    yield proc, wire, repo
    stop(proc)


def _wait_indexed(wire) -> None:
    for _ in range(int(WAIT_S / 0.2)):
        folders = wire.call("codesearch/status", {})["result"]["folders"]
        if folders and folders[0]["indexed"] and folders[0]["state"] == "idle":
            return
        wire.eof.wait(0.2)
    raise AssertionError("the repository was never indexed")


def _search(wire, query: str = "parse json") -> dict:
    return wire.call("codesearch/search", {"query": query, "k": 3})


def _error(answer: dict) -> tuple[int, str]:
    assert "error" in answer, answer
    return answer["error"]["code"], answer["error"]["message"]


@pytest.mark.parametrize("delta", [-12, +25], ids=["too-short", "too-long"])
def test_a_wrong_content_length_costs_one_message_and_reading_resumes(indexed, delta):
    _, wire, _ = indexed
    body = json.dumps({"jsonrpc": "2.0", "id": "broken", "method": "codesearch/status", "params": {}}).encode()
    wire.send_raw(b"Content-Length: %d\r\n\r\n" % (len(body) + delta) + body)
    good = wire.request("codesearch/search", {"query": "parse json", "k": 1})
    assert wire.reply(good)["result"]["hits"][0]["name"] == "parse_json"
    assert _error(wire.reply(None))[0] == PARSE_ERROR  # the broken one, id unknown: null


@pytest.mark.parametrize(
    ("raw", "answer_id", "code", "fragment"),
    [
        (b"{not json", None, PARSE_ERROR, "not JSON"),
        (b"\xff\xfe\x00", None, PARSE_ERROR, "not JSON"),
        (b"[1, 2]", None, INVALID_REQUEST, "batches are not supported"),
        (b'{"id": 7, "method": "codesearch/status"}', 7, INVALID_REQUEST, "JSON-RPC 2.0"),
        (b'{"jsonrpc": "2.0", "id": 1.5, "method": "codesearch/status"}', None, INVALID_REQUEST, "'id'"),
        (b'{"jsonrpc": "2.0", "id": 8, "method": 7}', 8, INVALID_REQUEST, "'method'"),
        (b'{"jsonrpc": "2.0", "id": 9, "method": "codesearch/status", "params": 3}', 9, INVALID_REQUEST, "'params'"),
    ],
)
def test_a_bad_message_gets_an_error_and_the_server_goes_on(indexed, raw, answer_id, code, fragment):
    _, wire, _ = indexed
    wire.send_raw(frame(raw))
    answer_code, message = _error(wire.reply(answer_id))
    assert answer_code == code and fragment in message
    assert _search(wire)["result"]["hits"]


def test_a_request_without_params_is_answered(indexed):
    _, wire, repo = indexed
    status = wire.reply(wire.request("codesearch/status", with_params=False))
    assert status["result"]["folders"][0]["root"] == str(repo.resolve())
    code, message = _error(wire.reply(wire.request("workspace/symbol", with_params=False)))
    assert code == INVALID_PARAMS and "params are missing" in message
    code, message = _error(wire.reply(wire.request("codesearch/search", with_params=False)))
    assert code == INVALID_PARAMS and "params must be an object" in message


def test_an_oversized_message_is_refused_and_the_next_is_read(indexed):
    _, wire, _ = indexed
    query = "x" * (MAX_MESSAGE_BYTES + 1)
    wire.send({"jsonrpc": "2.0", "id": "huge", "method": "codesearch/search", "params": {"query": query}})
    good = wire.request("codesearch/search", {"query": "parse json", "k": 1})
    assert wire.reply(good)["result"]["hits"][0]["name"] == "parse_json"
    code, message = _error(wire.reply(None))
    assert code == INVALID_REQUEST and f"over the limit of {MAX_MESSAGE_BYTES} bytes" in message


@pytest.mark.parametrize(
    ("method", "params", "fragment"),
    [
        ("codesearch/search", {"query": "x" * (MAX_QUERY_CHARS + 1)}, "the limit is 2,000"),
        ("workspace/symbol", {"query": "y" * (MAX_QUERY_CHARS + 1)}, "the limit is 2,000"),
        ("codesearch/similar", {"code": "z = 1\n" * 20_000}, "the limit is 100,000"),
    ],
)
def test_queries_over_the_length_limit_are_refused(indexed, method, params, fragment):
    _, wire, _ = indexed
    code, message = _error(wire.call(method, params))
    assert code == INVALID_PARAMS and fragment in message


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("codesearch/search", {"query": "parse \ud800 json"}),
        ("codesearch/similar", {"code": "def f(\udfff): pass"}),
        ("codesearch/search", {"query": "parse json", "path": "\ud800*"}),
        ("workspace/symbol", {"query": "parse \ud800 json"}),
    ],
)
def test_a_lone_surrogate_is_a_bad_request_not_a_damaged_index(indexed, method, params):
    _, wire, _ = indexed
    code, message = _error(wire.call(method, params))  # json.dumps sends the surrogate as its escape
    assert code == INVALID_PARAMS and "lone surrogate" in message and "rebuild" not in message
    status = wire.call("codesearch/status", {})["result"]["folders"][0]
    assert status["indexed"] and status["error"] == ""
    assert _search(wire)["result"]["hits"][0]["name"] == "parse_json"


def test_requests_after_shutdown_get_an_error_and_exit_ends_the_process(tmp_path, tiny_model):
    proc, wire = start_stdio()
    try:
        assert "result" in wire.initialize(None, tiny_model)
        assert wire.call("shutdown") == {"jsonrpc": "2.0", "id": 2, "result": None}
        code, message = _error(wire.call("codesearch/status", {}))
        assert code == INVALID_REQUEST and "shutting down" in message
        wire.notify("exit")
        assert proc.wait(WAIT_S) == 0
    finally:
        stop(proc)


def test_exit_ends_the_process_while_a_request_runs(tmp_path, tiny_model):
    """codesearch.reindex waits for the index's writer lock, which the test holds: it never ends by itself."""
    repo = _copy_repo(tmp_path / "repo")
    proc, wire = start_stdio()
    try:
        with writer_lock(repo / ".codesearch"):
            assert "result" in wire.initialize(repo, tiny_model)
            wire.request("workspace/executeCommand", {"command": "codesearch.reindex", "arguments": []})
            wire.notify("exit")
            assert proc.wait(WAIT_S) == 1  # exit without shutdown: 1, as the LSP says
            assert wire.closed()
    finally:
        stop(proc)


def test_http_on_stdio_is_refused_without_reading_the_body(tiny_model):
    proc, wire = start_stdio()
    try:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "codesearch/status", "params": {}}).encode()
        wire.send_raw(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        assert wire.closed() and proc.wait(WAIT_S) == 1
        assert not wire.got
    finally:
        assert "HTTP request" in stop(proc)
