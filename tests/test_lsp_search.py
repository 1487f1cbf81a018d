"""codesearch/search and the codesearch.search command: hits with uri, range, name, score, snippet."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_search_finds_the_function_and_says_where(lsp):
    hits = await lsp.search("parse json", k=5)
    first = hits[0]
    assert (first.name, first.kind, first.language, first.path, first.line) == (
        "parse_json", "function", "python", "py/jsonutil.py", 6
    )
    assert first.uri == lsp.uri("py/jsonutil.py")
    assert (first.range.start.line, first.range.start.character, first.range.end.line) == (5, 0, 7)
    assert first.snippet.startswith("def parse_json(text):")
    assert len(hits) == 5 and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@pytest.mark.parametrize(
    ("options", "check"),
    [
        ({"mode": "lexical"}, lambda hits: hits[0].name == "parse_json"),
        ({"mode": "semantic", "k": 3}, lambda hits: len(hits) == 3),
        ({"lang": "go"}, lambda hits: hits and {h.language for h in hits} == {"go"}),
        ({"lang": ["go", "rust"]}, lambda hits: hits and {h.language for h in hits} <= {"go", "rust"}),
        ({"path": "py/"}, lambda hits: hits and all(h.path.startswith("py/") for h in hits)),
    ],
)
async def test_search_options(lsp, options, check):
    assert check(await lsp.search("parse json", **options))


async def test_search_command_takes_positional_or_object_arguments(lsp):
    positional = await lsp.command("codesearch.search", "parse json", 2)
    as_object = await lsp.command("codesearch.search", {"query": "parse json", "k": 2})
    assert [h["name"] for h in positional["hits"]] == [h["name"] for h in as_object["hits"]]
    assert len(positional["hits"]) == 2 and positional["hits"][0]["name"] == "parse_json"
