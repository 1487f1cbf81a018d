"""Semantic, lexical and hybrid search and clone queries over a real index."""

import numpy as np
import pytest

from codesearch.errors import CodesearchError
from codesearch.indexer import build_index
from codesearch.lexical import lexical_text
from codesearch.search import (
    CENTER_PRIOR_ROWS, MODES, Index, _best_per_chunk, candidate_pool, clone_center, hybrid_fuse, score_fuse,
)


@pytest.fixture
def index(repo, settings):
    (repo / "py" / "copy.py").write_text(
        "def decode_document(text):\n"
        '    """Parse a JSON document from a string and return the decoded object."""\n'
        "    return json.loads(text)\n"
    )
    build_index(repo, settings)
    return Index.open(repo, settings)


def test_score_fuse_rewards_agreement():
    fused = score_fuse([[("a", 0.9), ("b", 0.8), ("c", 0.1)], [("b", 7.0), ("c", 6.0), ("a", 1.0)]])
    assert [item for item, _ in fused] == ["b", "a", "c"]
    assert fused[0][1] == pytest.approx((0.56195149 + 0.88900089) / 2)  # z-scores of 0.8 and 7.0 in their lists


def test_score_fuse_keeps_how_far_apart_the_scores_are():
    # By rank a and b tie (1st and 2nd in each list); by score a's lead in the first list is far the larger.
    first, second = [("a", 10.0), ("b", 1.0), ("c", 0.9)], [("b", 0.50), ("a", 0.49), ("c", 0.1)]
    assert [item for item, _ in score_fuse([first, second])] == ["a", "b", "c"]
    # A list's scale and offset do not matter, so a cosine and a BM25 score can be fused.
    rescaled = [(item, 3.0 * score - 40.0) for item, score in second]
    assert dict(score_fuse([first, rescaled])) == pytest.approx(dict(score_fuse([first, second])))


def test_score_fuse_weights_each_list():
    first, second = [("a", 0.9), ("b", 0.1)], [("b", 2.0), ("a", 1.0)]
    assert [item for item, _ in score_fuse([first, second], weights=[3.0, 1.0])] == ["a", "b"]
    assert [item for item, _ in score_fuse([first, second], weights=[1.0, 3.0])] == ["b", "a"]
    with pytest.raises(ValueError):
        score_fuse([first, second], weights=[1.0])
    with pytest.raises(ValueError):
        score_fuse([first, second], floors=[None])


def test_score_fuse_ranks_what_a_list_lacks_at_its_bottom():
    vector = [("x", 0.9), ("y", 0.5), ("z", 0.4)]
    text = [("y", 9.0), ("x", 3.0)]  # z not found by text: it takes x's z-score, the list's lowest
    fused = dict(score_fuse([vector, text], weights=[0.0, 1.0]))
    assert fused["z"] == pytest.approx(fused["x"])
    assert [item for item, _ in score_fuse([vector, text], weights=[0.0, 1.0])] == ["y", "x", "z"]  # tie: found first
    # A list of one match (or of equal scores) counts 1 for what it found and 0 for the rest.
    fused = dict(score_fuse([vector, [("z", 4.2)]]))
    assert fused["z"] == pytest.approx((-0.9258201 + 1.0) / 2)
    assert fused["x"] == pytest.approx((1.38873015 + 0.0) / 2)
    assert score_fuse([]) == [] and score_fuse([[], [("a", 1.0)]]) == [("a", 0.5)]


def test_score_fuse_floor_says_what_a_complete_list_lacks():
    # A full-text search that matched only y and x returned all it matched: the rest score 0, below
    # both, so x (found) now stands above z (not found) instead of level with it.
    vector = [("z", 0.9), ("x", 0.5), ("y", 0.4)]
    text = [("y", 9.0), ("x", 3.0)]
    fused = dict(score_fuse([vector, text], floors=[None, 0.0]))
    assert fused["x"] == pytest.approx((-0.46291005 - 0.26726124) / 2)  # z of 3.0 among 9, 3 and the floor 0
    assert fused["z"] == pytest.approx((1.38873015 - 1.06904497) / 2)
    text_only = dict(score_fuse([vector, text], weights=[0.0, 1.0], floors=[None, 0.0]))
    assert text_only["y"] > text_only["x"] > text_only["z"]
    # One match: it stands one deviation above the floor's, where it would otherwise count 1 against 0.
    assert dict(score_fuse([[("a", 4.2)]], floors=[0.0])) == pytest.approx({"a": 1.0})


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
    for mode in MODES:
        assert index.similar(code, 3, mode=mode)[0].name == "decode_document", mode
    hits = index.similar(code, 3, mode="semantic")  # the plain cosine
    assert hits[0].score == pytest.approx(1.0, abs=1e-4) and hits[0].score > hits[1].score


def test_clone_center_is_the_index_mean_shrunk_while_small(index):
    mean, rows = index.store.mean_vector()
    assert rows == index.store.counts()["rows"]
    assert clone_center(mean, rows) == pytest.approx(mean * rows / (rows + CENTER_PRIOR_ROWS))
    assert clone_center(mean, 10**9) == pytest.approx(mean, abs=1e-6)
    assert not clone_center(mean, 0).any()


def test_hybrid_clone_query_fuses_the_centered_cosine_with_full_text(index):
    """What `similar` ranks by, rebuilt from the store's two searches: the cosine after subtracting
    the index's (shrunk) mean vector, and full-text search for the code's identifiers."""
    code = "def tally(words):\n    counts = {}\n    for w in words:\n        counts[w] = counts.get(w, 0) + 1\n    return counts\n"
    hybrid = index.similar(code, 5)
    center = clone_center(*index.store.mean_vector())
    assert np.linalg.norm(center) > 0.05  # the fixture's functions share a direction worth removing
    (vector,) = index.encoder.embed_texts([code], kind="code")[0]  # one window
    pool = candidate_pool(5)
    centered, rows = _best_per_chunk(index.store.vector_search(vector, pool * 2, None, center), {}), {}
    found = index.store.text_search(lexical_text(code), pool + 1, None)
    lexical = {}
    for row in found:
        lexical.setdefault(row["chunk_id"], row["_score"])
    expected = hybrid_fuse([(cid, 1.0 - dist) for cid, dist in centered][:pool], list(lexical.items())[:pool],
                           index.encoder.folder.hybrid_weight, complete=len(found) < pool + 1)
    assert [(h.chunk_id, h.score) for h in hybrid] == [(cid, pytest.approx(score, abs=1e-6)) for cid, score in expected[:5]]
    plain = [cid for cid, _ in _best_per_chunk(index.store.vector_search(vector, pool * 2, None), {})]
    assert [cid for cid, _ in centered] != plain  # the center changes the vector ranking here


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
