"""Retrieval metrics on hand-made rankings, BM25 on obvious pairs, and evaluate() on a fake bench."""

from __future__ import annotations

import numpy as np
import pytest

from codesearch.search import clone_center, hybrid_fuse
from codesearch.store import centered_cosine
from trainer.eval import (
    EvalSet,
    bm25_scores,
    centered_windows,
    evaluate,
    fulltext_candidates,
    fused_metrics,
    load_set,
    map_at_r,
    map_at_r_rankings,
    mrr_recall,
    onnx_embedder,
    rank_rows,
    similarity,
    without_summary,
)
from trainer_sources import write_bench


def test_mrr_and_recall_from_ranks():
    got = mrr_recall([1, 2, None, 10])
    assert got == pytest.approx({"mrr": (1 + 0.5 + 0 + 0.1) / 4, "r@1": 0.25, "r@5": 0.5, "r@10": 0.75})
    assert mrr_recall([3]) == pytest.approx({"mrr": 1 / 3, "r@1": 0.0, "r@5": 1.0, "r@10": 1.0})


def test_map_at_r_on_rankings():
    labels = ["a", "a", "a", "b", "b", "b"]  # R = 2 for everyone
    rankings = [
        [1, 2, 3, 4, 5],  # both hits first: AP = (1/1 + 2/2) / 2 = 1
        [3, 0, 2, 4, 5],  # miss then hit: AP = (1/2) / 2 = 0.25
        [3, 4, 0, 1, 5],  # hits after the top R do not count: AP = 0
        [4, 5, 0, 1, 2],  # 1
        [0, 3, 5, 1, 2],  # (1/2) / 2 = 0.25
        [3, 0, 4, 1, 2],  # hit then miss: (1/1) / 2 = 0.5
    ]
    assert map_at_r_rankings(rankings, labels) == pytest.approx((1 + 0.25 + 0 + 1 + 0.25 + 0.5) / 6)


def test_map_at_r_on_scores_ignores_the_diagonal():
    labels = [0, 0, 1, 1]
    scores = np.array([
        [9.0, 0.1, 0.5, 0.0],  # item 0: best other is 2 (label 1): AP 0
        [0.9, 9.0, 0.2, 0.3],  # item 1: best other is 0: AP 1
        [0.0, 0.1, 9.0, 0.8],  # item 2: 3: AP 1
        [0.6, 0.2, 0.1, 9.0],  # item 3: 0: AP 0
    ])
    assert map_at_r(scores, labels) == pytest.approx(0.5)
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    assert map_at_r(vectors @ vectors.T, labels) == pytest.approx(1.0)
    assert rank_rows(scores, exclude_self=True).tolist() == [[2, 1, 3], [0, 3, 2], [3, 1, 0], [0, 1, 2]]


def test_bm25_ranks_the_obvious_code_first():
    docs = [
        "def read_json_file(path):\n    with open(path) as f:\n        return json.load(f)",
        "def send_email(to, subject, body):\n    smtp = smtplib.SMTP('localhost')\n    smtp.sendmail(to, subject, body)",
        "function parseQueryString(query) { return new URLSearchParams(query); }",
    ]
    scores = bm25_scores(docs, ["send an email with a subject", "parse the query string", "read a json file"])
    assert scores.shape == (3, 3)
    assert scores.argmax(axis=1).tolist() == [1, 2, 0]


def test_similarity_takes_the_best_window_or_the_mean():
    q = [np.array([[1.0, 0.0]])]
    codes = [np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([[0.6, 0.8]])]  # code 0: two windows
    assert similarity(q, codes, "max").tolist() == [[1.0, 0.6]]
    mean = similarity(q, codes, "mean")
    assert mean[0, 0] == pytest.approx(np.sqrt(0.5)) and mean[0, 1] == pytest.approx(0.6)


def test_hybrid_fuses_scores_as_the_engine_does():
    s = EvalSet("t", docs=["a", "b", "c"], queries=["q"], relevant=[{2}], labels=[])
    model = (np.array([[2, 0, 1]]), np.array([[0.9, 0.5, 0.4]]))
    fulltext = (np.array([[0, 1, -1]]), np.array([[9.0, 3.0, 0.0]]))  # doc 2 shares no term: full text lacks it
    # z-scores: model 2 1.39, 0 -0.46, 1 -0.93; BM25 over 9, 3 and the floor 0: 0 1.34, 1 -0.27, 2 -1.07
    # -> equal weights: doc 0 0.44, doc 2 0.16, doc 1 -0.60; the model weighted 3: doc 2 first
    assert fused_metrics(s, model, fulltext)["mrr"] == pytest.approx(0.5)
    assert fused_metrics(s, model, fulltext, weight=3.0)["mrr"] == pytest.approx(1.0)
    engine = hybrid_fuse([(2, 0.9), (0, 0.5), (1, 0.4)], [(0, 9.0), (1, 3.0)], 1.0, complete=True)
    assert [item for item, _ in engine] == [0, 2, 1]


def test_fulltext_candidates_search_as_the_engine_indexes():
    docs = ["def parse_config(path):\n    return load(path)", "def send_mail(to):\n    smtp.send(to)",
            "def parseHeaders(lines):\n    return dict(lines)"]
    indices, scores = fulltext_candidates(docs, ["parsing the config", "the of and", "mail"], depth=3)
    assert indices[0].tolist()[:2] == [0, 2] and indices[0, 2] == -1  # "parsing" meets parse: stemmed
    assert scores[0, 0] > scores[0, 1] > 0 and scores[0, 2] == 0
    assert indices[1].tolist() == [-1, -1, -1]  # stop words only
    assert indices[2].tolist() == [1, -1, -1]
    clones, _ = fulltext_candidates(docs, docs, depth=2, exclude_self=True)
    assert all(i not in row for i, row in enumerate(clones.tolist()))
    assert clones[0, 0] == 2  # parse_config and parseHeaders share "parse"


def test_evaluate_bm25_and_an_embedder_on_a_fake_bench(tmp_path):
    bench = write_bench(tmp_path / "bench")
    results = evaluate(None, ["cosqa", "ojclone"], bench)
    assert results["cosqa"]["bm25"]["mrr"] == pytest.approx(1.0)
    assert set(results["ojclone"]["bm25"]) == {"map@r", "mrr"}
    assert "model" not in results["cosqa"]

    seen: dict[int, list] = {}

    def bag_of_words(texts: list[str], kind: str, languages=None) -> list[np.ndarray]:
        """A stand-in model at the boundary: hashed word counts, one window per text."""
        if kind == "code":
            seen[len(seen)] = languages
        out = []
        for text in texts:
            v = np.zeros(64)
            for word in text.lower().replace("(", " ").replace(")", " ").split():
                v[sum(map(ord, word)) % 64] += 1
            out.append((v / max(np.linalg.norm(v), 1e-9))[None, :])
        return out

    valid = [{"query": "sum of digits", "code": "int sum_digits(int n) { return n % 10; }"},
             {"query": "greatest common divisor", "code": "int gcd(int a, int b) { return b ? gcd(b, a % b) : a; }"}]
    results = evaluate(bag_of_words, ["valid", "cosqa", "ojclone"], bench, valid_pairs=valid)
    for name in ("valid", "cosqa", "ojclone"):
        clone = {"centered"} if name == "ojclone" else set()
        assert set(results[name]) == {"queries", "docs", "bm25", "fulltext", "model", "hybrid"} | clone
        assert all(0.0 <= v <= 1.0 for v in results[name]["model"].values())
    assert results["ojclone"]["queries"] == results["ojclone"]["docs"] == 4
    # Each set's code comes with its language, for the model's code view: valid's own, CoSQA Python, OJClone C.
    assert seen == {0: ["", ""], 1: ["python"] * results["cosqa"]["docs"], 2: ["c"] * 4}


def test_centered_windows_give_the_engines_centered_cosine():
    rng = np.random.default_rng(0)
    texts = [rng.normal(size=(n, 16)).astype(np.float32) + 2.0 for n in (1, 3, 2, 1)]
    texts = [w / np.linalg.norm(w, axis=1, keepdims=True) for w in texts]
    flat = np.concatenate(texts)
    center = clone_center(flat.mean(axis=0), len(flat))
    centered = centered_windows(texts)
    assert np.allclose(np.concatenate(centered) @ np.concatenate(centered)[4], centered_cosine(flat[4], flat, center),
                       atol=1e-5)
    assert similarity(centered, centered)[1, 1] == pytest.approx(1.0)


def test_evaluate_through_the_engine_encoder(tmp_path):
    from trainer.tiny import make_tiny_model

    folder = make_tiny_model(tmp_path / "model", dimension=32)
    embed = onnx_embedder(folder)
    vectors = embed(["def f():\n    return 1", "x " * 300], "code")
    assert vectors[0].shape == (1, 32) and vectors[1].shape[0] > 1  # long text: several windows
    assert np.allclose(np.linalg.norm(vectors[1], axis=1), 1.0, atol=1e-4)
    valid = [{"query": f"query {i}", "code": f"def f{i}(x):\n    return x + {i}"} for i in range(5)]
    results = evaluate(embed, ["valid"], None, valid_pairs=valid)
    assert results["valid"]["queries"] == 5 and 0.0 < results["valid"]["model"]["mrr"] <= 1.0


def test_a_model_weaker_than_bm25_gets_a_lower_hybrid_weight():
    rng = np.random.default_rng(0)

    def noise(texts, kind, languages=None):  # a model that knows nothing
        return [v[None, :] / np.linalg.norm(v) for v in rng.normal(size=(len(texts), 16))]

    valid = [{"query": f"{verb} the {thing}", "code": f"def {verb}_{thing}(x):\n    return {verb}({thing}, x)"}
             for verb in ("read", "write", "sort", "parse", "merge") for thing in ("file", "list", "tree", "queue")]
    results = evaluate(noise, ["valid"], None, valid_pairs=valid)
    assert results["hybrid_weight"] < 1.0
    assert results["valid"]["hybrid"]["mrr"] >= results["valid"]["bm25"]["mrr"] - 0.05
    fixed = evaluate(noise, ["valid"], None, valid_pairs=valid, hybrid_weight=1.0)
    assert fixed["hybrid_weight"] == 1.0


def test_valid_docs_keeps_each_docstring_less_its_summary_paragraph():
    full = 'def f(x):\n    r"""Scale x.\n    Twice.\n\n    Args:\n        x: a number.\n    """\n    return 2 * x'
    assert without_summary(full) == 'def f(x):\n    r"""Args:\n        x: a number.\n    """\n    return 2 * x'
    assert without_summary("def g():\n    'Only a summary.'\n    return 1") == "def g():\n    return 1"
    pairs = [{"query": "Scale x.", "code": "def f(x):\n    return 2 * x", "code_full": full, "language": "python"},
             {"query": "Stop.", "code": "func stop() {}", "language": "go"}]
    valid, docs = load_set("valid", valid_pairs=pairs), load_set("valid-docs", valid_pairs=pairs)
    assert valid.docs == [pairs[0]["code"], "func stop() {}"]
    assert docs.docs == [without_summary(full), "func stop() {}"]
    assert docs.queries == valid.queries and docs.relevant == valid.relevant and docs.languages == ["python", "go"]
