"""Edits reach the index without a restart: saves, the file watcher, deletions, ignore files."""

from __future__ import annotations

import shutil

import pytest
from lsprotocol import types

pytestmark = pytest.mark.asyncio(loop_scope="session")


def save(lsp, rel):
    lsp.client.text_document_did_save(types.DidSaveTextDocumentParams(types.TextDocumentIdentifier(lsp.uri(rel))))


async def names(lsp, query, **options):
    return {(h.path, h.name) for h in await lsp.search(query, mode="lexical", k=50, **options)}


async def test_a_saved_edit_is_searchable_within_two_seconds(lsp):
    path = lsp.repo / "py" / "jsonutil.py"
    before = path.read_text()
    try:
        path.write_text(before + "\n\ndef zebra_quantum_flux(stream):\n    return stream.read()\n")
        save(lsp, "py/jsonutil.py")
        elapsed = await lsp.until(lambda: _found(lsp, "zebra quantum flux", ("py/jsonutil.py", "zebra_quantum_flux")))
        assert elapsed < 2.0
    finally:
        path.write_text(before)
        save(lsp, "py/jsonutil.py")
    await lsp.until(lambda: _gone(lsp, "zebra quantum flux", "zebra_quantum_flux"))


async def test_a_new_file_is_found_by_the_watcher_alone(lsp):
    path = lsp.repo / "rs" / "walrus.rs"
    try:
        path.write_text("fn walrus_tusk_polish(n: u32) -> u32 {\n    n + 1\n}\n")
        await lsp.until(lambda: _found(lsp, "walrus tusk polish", ("rs/walrus.rs", "walrus_tusk_polish")))
    finally:
        path.unlink()
    await lsp.until(lambda: _gone(lsp, "walrus tusk polish", "walrus_tusk_polish"))  # a deleted file disappears


async def test_a_deleted_file_disappears_and_comes_back(lsp):
    path = lsp.repo / "rb" / "slug.rb"
    text = path.read_text()
    path.unlink()
    change = types.FileEvent(lsp.uri("rb/slug.rb"), types.FileChangeType.Deleted)
    lsp.client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams([change]))
    await lsp.until(lambda: _no_hits_in(lsp, "rb/"))
    path.write_text(text)
    await lsp.until(lambda: _hits_in(lsp, "rb/"))


async def test_an_ignore_file_takes_files_out_of_the_index(lsp):
    ignore = lsp.repo / ".codesearchignore"
    try:
        ignore.write_text("ts/\n")
        await lsp.until(lambda: _no_hits_in(lsp, "ts/"))
    finally:
        ignore.unlink()
    await lsp.until(lambda: _hits_in(lsp, "ts/"))


async def test_a_copied_directory_is_indexed(lsp):
    shutil.copytree(lsp.repo / "go", lsp.repo / "go2")
    try:
        await lsp.until(lambda: _hits_in(lsp, "go2/"))
    finally:
        shutil.rmtree(lsp.repo / "go2")
    await lsp.until(lambda: _no_hits_in(lsp, "go2/"))


async def _found(lsp, query, hit):
    return hit in await names(lsp, query)


async def _gone(lsp, query, name):
    return name not in {n for _, n in await names(lsp, query)}


async def _hits_in(lsp, prefix):
    return bool(await lsp.search("function", mode="semantic", path=prefix))


async def _no_hits_in(lsp, prefix):
    return not await _hits_in(lsp, prefix)
