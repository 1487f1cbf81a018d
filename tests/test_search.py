"""Semantic, lexical and hybrid search and clone queries over a real index."""

import pytest

from codesearch.errors import CodesearchError
from codesearch.indexer import build_index
from codesearch.search import Index, rrf_fuse


@pytest.fixture
def index(repo, settings):
    (repo / "py" / "copy.py").write_text(
        "def decode_document(text):\n"
        '    """Parse a JSON document from a string and return the decoded object."""\n'
        "    return json.loads(text)\n"
    )
    build_index(repo, settings)
    return Index.open(repo, settings)


def test_rrf_fuse_rewards_agreement():
    fused = rrf_fuse([["a", "b", "c"], ["b", "c", "a"]])
    assert [item for item, _ in fused] == ["b", "a", "c"]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)


def test_rrf_fuse_weights_each_ranking():
    fused = rrf_fuse([["a", "b"], ["b", "a"]], weights=[0.2, 1.0])
    assert [item for item, _ in fused] == ["b", "a"]
    assert fused[0][1] == pytest.approx(0.2 / 62 + 1 / 61)


def test_hybrid_weighs_the_model_as_its_folder_says(repo, tiny_model, tmp_path):
    import dataclasses
    import shutil

    from codesearch.config import Settings
    from codesearch.model import ModelFolder

    muted = tmp_path / "muted"
    shutil.copytree(tiny_model, muted)
    dataclasses.replace(ModelFolder.read(muted), path=muted, hybrid_weight=0.0).write()
    settings = Settings(model=str(muted), threads=1)
    build_index(repo, settings)
    index = Index.open(repo, settings)
    lexical = [(h.path, h.start_line) for h in index.search("parse json", 5, mode="lexical")]
    hybrid = [(h.path, h.start_line) for h in index.search("parse json", 5, mode="hybrid")]
    assert hybrid[: len(lexical)] == lexical  # a model of weight 0 only adds what full text lacks


def test_lexical_search_splits_identifiers(index):
    hits = index.search("parse json", 3, mode="lexical")
    assert hits[0].name == "parse_json"
    assert hits[0].path == "py/jsonutil.py" and hits[0].start_line == 6
    assert index.search("fetch with timeout", 1, mode="lexical")[0].name == "fetchWithTimeout"


def test_hybrid_puts_the_only_lexical_match_first(index):
    hits = index.search("abort", 5)  # only fetchWithTimeout says it
    assert hits[0].name == "fetchWithTimeout"
    assert len(hits) == 5  # the semantic side fills the rest
    assert hits[0].score > hits[1].score


def test_semantic_search_returns_k_distinct_functions(index):
    hits = index.search("multiply two matrices", 5, mode="semantic")
    assert len(hits) == 5 and len({h.chunk_id for h in hits}) == 5
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert all(-1.0 <= h.score <= 1.0 for h in hits)


def test_filters_by_language_and_path(index):
    assert {h.language for h in index.search("value", 10, languages=["go"])} == {"go"}
    assert all(h.path.startswith("py/") for h in index.search("value", 10, path="py/*.py"))
    assert all(h.path.startswith("ts/") for h in index.search("value", 10, path="ts"))


def test_similar_code_finds_its_clone(index):
    code = (index.root / "py" / "copy.py").read_text().rstrip("\n")
    hits = index.similar(code, 3)
    assert hits[0].name == "decode_document" and hits[0].score == pytest.approx(1.0, abs=1e-4)


def test_similar_at_a_location_excludes_itself(index):
    this, hits = index.similar_at(str(index.root / "py" / "copy.py"), 2, 5)
    assert this.name == "decode_document"
    assert "decode_document" not in [h.name for h in hits]
    assert len(hits) == 5


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda ix: ix.search("   "), "empty query"),
        (lambda ix: ix.search("x", mode="fuzzy"), "unknown mode"),
        (lambda ix: ix.search("x", 0), "k must be at least 1"),
        (lambda ix: ix.similar(""), "empty code"),
        (lambda ix: ix.similar_at("py/jsonutil.py", 2), "no indexed function at py/jsonutil.py:2"),
        (lambda ix: ix.similar_at("/elsewhere/x.py", 2), "outside the indexed repository"),
    ],
)
def test_bad_queries_are_clear_errors(index, call, message, monkeypatch):
    monkeypatch.chdir(index.root)
    with pytest.raises(CodesearchError, match=message):
        call(index)


def test_near_duplicates_of_a_file(repo, settings):
    copied = (repo / "py" / "retry.py").read_text().split("\n\n\nclass RateLimiter")[0]
    (repo / "py" / "again.py").write_text(copied + "\n")  # retry_with_backoff, copied verbatim
    build_index(repo, settings)
    index = Index.open(repo, settings)
    found = index.near_duplicates(str(repo / "py" / "retry.py"), threshold=0.99)
    assert [(this.name, [(h.path, h.name) for h in alike]) for this, alike in found] == [
        ("retry_with_backoff", [("py/again.py", "retry_with_backoff")])
    ]
    assert found[0][1][0].score == pytest.approx(1.0, abs=1e-5)
    assert index.near_duplicates(str(repo / "go" / "stack.go"), threshold=0.99) == []
