"""Code lenses ("N similar") and hint diagnostics above functions that have near-duplicates."""

from __future__ import annotations

import asyncio

import pytest
from lsprotocol import types

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def lenses(lsp, rel):
    params = types.CodeLensParams(text_document=types.TextDocumentIdentifier(lsp.uri(rel)))
    return await lsp.client.text_document_code_lens_async(params)


async def test_a_lens_above_the_function_with_a_copy(lsp):
    (lens,) = await lenses(lsp, "py/retry.py")
    assert lens.range.start.line == 4  # def retry_with_backoff, 0-based
    assert lens.command.title == "1 similar" and lens.command.command == "codesearch.similar"
    (arguments,) = lens.command.arguments
    assert [loc["uri"] for loc in arguments["locations"]] == [lsp.uri("py/again.py")]
    assert arguments["mode"] == "semantic"  # the cosine its threshold is on
    shown = await lsp.command(lens.command.command, *lens.command.arguments)  # what a click shows
    assert [(h["path"], h["name"]) for h in shown["hits"]] == [("py/again.py", "retry_with_backoff")]


async def test_no_lens_where_nothing_is_alike(lsp):
    assert not await lenses(lsp, "go/stack.go")


async def test_lenses_follow_the_settings(lsp):
    notify = lsp.client.workspace_did_change_configuration
    refreshes = len(lsp.lens_refreshes)
    try:
        notify(types.DidChangeConfigurationParams(settings={"codesearch": {"codeLens": False}}))
        await lsp.until(lambda: _no_lenses(lsp))
        assert len(lsp.lens_refreshes) > refreshes  # the editor is told to ask again
    finally:
        notify(types.DidChangeConfigurationParams(settings={"codesearch": {"codeLens": True}}))
    assert len(await lenses(lsp, "py/retry.py")) == 1


async def _no_lenses(lsp):
    return not await lenses(lsp, "py/retry.py")


async def test_hint_diagnostics_on_open(lsp):
    uri = lsp.uri("py/again.py")
    item = types.TextDocumentItem(uri, "python", 1, (lsp.repo / "py" / "again.py").read_text())
    lsp.client.text_document_did_open(types.DidOpenTextDocumentParams(item))
    try:
        await lsp.until(lambda: _has_diagnostics(lsp, uri))
        (diagnostic,) = lsp.client.diagnostics[uri]
        assert diagnostic.severity == types.DiagnosticSeverity.Hint and diagnostic.source == "codesearch"
        assert diagnostic.range.start.line == 4
        assert "retry_with_backoff is like retry_with_backoff (py/retry.py:5" in diagnostic.message
        assert diagnostic.related_information[0].location.uri == lsp.uri("py/retry.py")
    finally:
        lsp.client.text_document_did_close(types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri)))


async def _has_diagnostics(lsp, uri):
    await asyncio.sleep(0)
    return bool(lsp.client.diagnostics.get(uri))
