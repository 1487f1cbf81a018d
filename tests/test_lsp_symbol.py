"""workspace/symbol: the query is searched (hybrid); kinds follow the chunk kinds."""

from __future__ import annotations

import pytest
from lsprotocol import types

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def symbols(lsp, query):
    return await lsp.client.workspace_symbol_async(types.WorkspaceSymbolParams(query=query))


async def test_symbols_are_found_by_meaning_with_locations(lsp):
    found = await symbols(lsp, "parse json")
    first = found[0]
    assert (first.name, first.kind, first.container_name) == ("parse_json", types.SymbolKind.Function, "py/jsonutil.py")
    assert first.location.uri == lsp.uri("py/jsonutil.py") and first.location.range.start.line == 5


@pytest.mark.parametrize(
    ("query", "name", "kind"),
    [
        ("config loader load", "ConfigLoader.load", types.SymbolKind.Method),
        ("ConfigLoader", "ConfigLoader", types.SymbolKind.Class),
        ("retry with backoff", "retry_with_backoff", types.SymbolKind.Function),
    ],
)
async def test_symbol_kinds(lsp, query, name, kind):
    found = await symbols(lsp, query)
    assert kind in {s.kind for s in found if s.name == name}


async def test_empty_query_lists_nothing(lsp):
    assert not await symbols(lsp, "")
