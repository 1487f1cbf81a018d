"""codesearch/similar and the codesearch.similar command: by place (uri + position) or by code."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.asyncio(loop_scope="session")

INSIDE_RETRY = {"line": 7, "character": 8}  # py/retry.py, in the body of retry_with_backoff


async def test_similar_at_a_position_finds_the_copy_first(lsp):
    result = await lsp.request("codesearch/similar", {"uri": lsp.uri("py/retry.py"), "position": INSIDE_RETRY, "k": 3})
    first = result.hits[0]
    assert (first.name, first.path, first.uri) == ("retry_with_backoff", "py/again.py", lsp.uri("py/again.py"))
    assert len(result.hits) == 3 and all(h.path != "py/retry.py" or h.name != "retry_with_backoff" for h in result.hits)
    params = {"uri": lsp.uri("py/retry.py"), "position": INSIDE_RETRY, "k": 3, "mode": "semantic"}
    assert (await lsp.request("codesearch/similar", params)).hits[0].score == pytest.approx(1.0, abs=1e-4)  # a cosine


async def test_similar_to_code(lsp):
    code = (lsp.repo / "py" / "jsonutil.py").read_text().split("\n\n\n")[1]  # parse_json, verbatim
    for mode in ("hybrid", "semantic", "lexical"):
        result = await lsp.request("codesearch/similar", {"code": code, "k": 2, "mode": mode})
        assert result.hits[0].name == "parse_json", mode
    assert result.hits[0].score > 1.0  # lexical: a BM25 score


async def test_threshold_keeps_only_near_duplicates(lsp):
    """A threshold is a cosine: without a mode the request is a semantic one."""
    params = {"uri": lsp.uri("py/retry.py"), "position": INSIDE_RETRY, "k": 10, "threshold": 0.999}
    result = await lsp.request("codesearch/similar", params)
    assert [h.path for h in result.hits] == ["py/again.py"]


async def test_similar_command(lsp):
    result = await lsp.command("codesearch.similar", {"uri": lsp.uri("py/retry.py"), "position": INSIDE_RETRY, "k": 1})
    assert [(h["name"], h["path"]) for h in result["hits"]] == [("retry_with_backoff", "py/again.py")]
