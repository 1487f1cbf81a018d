"""Bad requests get LSP errors and the server keeps answering; it survives its index being deleted."""

from __future__ import annotations

import shutil

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

pytestmark = pytest.mark.asyncio(loop_scope="session")

INVALID_PARAMS = -32602
INSIDE_RETRY = {"line": 7, "character": 8}

# (method, params, message fragment); "{repo}" in a uri is the repository copy's path.
BAD_REQUESTS = [
    ("codesearch/search", {}, "'query' must be a non-empty string"),
    ("codesearch/search", {"query": "   "}, "'query' must be a non-empty string"),
    ("codesearch/search", {"query": "x", "mode": "fuzzy"}, "'mode' must be one of hybrid, semantic, lexical"),
    ("codesearch/search", {"query": "x", "k": 0}, "'k' must be an integer from 1 to 1000"),
    ("codesearch/search", {"query": "x", "k": "ten"}, "'k' must be an integer"),
    ("codesearch/search", {"query": "x", "lang": 3}, "'lang' must be a language name"),
    ("codesearch/search", [1, 2], "params must be an object"),
    ("codesearch/similar", {}, "give 'uri' and 'position'"),
    ("codesearch/similar", {"code": "x = 1", "mode": "fuzzy"}, "'mode' must be one of hybrid, semantic, lexical"),
    ("codesearch/similar", {"uri": "file:///nowhere/x.py", "position": INSIDE_RETRY}, "not a file in a workspace folder"),
    ("codesearch/similar", {"uri": "untitled:Untitled-1", "position": INSIDE_RETRY}, "not a file in a workspace folder"),
    ("codesearch/similar", {"uri": "{repo}/py/retry.py", "position": {"line": -1}}, "'position.line'"),
    ("codesearch/similar", {"uri": "{repo}/py/retry.py", "position": {"line": 2, "character": 0}}, "no indexed function at py/retry.py:3"),
    ("codesearch/similar", {"uri": "{repo}/py/missing.py", "position": INSIDE_RETRY}, "no indexed function"),
]


@pytest.mark.parametrize(("method", "params", "message"), BAD_REQUESTS)
async def test_bad_requests_get_invalid_params_and_the_server_answers_after(lsp, method, params, message):
    if isinstance(params, dict) and "{repo}" in params.get("uri", ""):
        params = {**params, "uri": params["uri"].replace("{repo}/", lsp.uri("") + "/")}
    with pytest.raises(JsonRpcException) as error:
        await lsp.request(method, params)
    assert error.value.code == INVALID_PARAMS and message in str(error.value)
    assert (await lsp.search("parse json"))[0].name == "parse_json"


async def test_unknown_command_and_method(lsp):
    with pytest.raises(JsonRpcException) as error:
        await lsp.command("codesearch.nope")
    assert error.value.code == INVALID_PARAMS
    with pytest.raises(JsonRpcException) as error:
        await lsp.request("codesearch/nope", {})
    assert error.value.code == -32601  # MethodNotFound
    assert (await lsp.search("parse json"))[0].name == "parse_json"


async def test_notifications_about_strange_files_are_ignored(lsp):
    for uri in ("untitled:Untitled-1", "file:///elsewhere/x.py", lsp.uri("py/never_existed.py"), lsp.uri("notes.txt")):
        lsp.client.text_document_did_save(types.DidSaveTextDocumentParams(types.TextDocumentIdentifier(uri)))
        change = types.FileEvent(uri, types.FileChangeType.Changed)
        lsp.client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams([change]))
    assert (await lsp.search("parse json"))[0].name == "parse_json"
    (folder,) = (await lsp.request("codesearch/status")).folders
    assert folder.error == ""


async def test_an_index_deleted_under_the_server_is_rebuilt(lsp):
    shutil.rmtree(lsp.repo / ".codesearch", ignore_errors=True)  # as `rm -rf`: the server may be deleting too
    result = await lsp.command("codesearch.reindex")
    (report,) = result["folders"]
    assert report["root"] == str(lsp.repo.resolve()) and "error" not in report
    assert report["chunks"] > 20
    await lsp.until(lambda: _answers(lsp), timeout=30)
    (folder,) = (await lsp.request("codesearch/status")).folders
    assert folder.indexed and folder.complete and folder.files == 13


async def _answers(lsp):
    try:
        return (await lsp.search("parse json"))[0].name == "parse_json"
    except JsonRpcException:
        return False
