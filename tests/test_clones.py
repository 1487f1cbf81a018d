"""Clone detection over a real index of the planted fixture (tests/fixtures/clones_repo, clones.truth.json).

The tiny test model has random weights: exact copies embed identically, but renamed or rewritten
copies land anywhere from 0.84 to 0.98 and unrelated functions up to 0.97. So these tests check the
mechanics: hashing finds types 1-2, token overlap the edited copies (type 3), the self-join finds
exact copies at the default threshold and nothing unrelated at STRICT, and the approximate join agrees
with the exact one. How well a model finds types 3-4 by embedding: benchmarks/clones.py measures it.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from codesearch.clones import (
    DEFAULT_MIN_SIMILARITY, MIN_SHINGLES, CloneOptions, _load, abstract_tokens, edited_pairs, find_clones,
    hashed_pairs, path_matches, similar_pairs, token_hashes,
)
from codesearch.indexer import build_index
from codesearch.search import Index

CLONES_REPO = Path(__file__).parent / "fixtures" / "clones_repo"
TRUTH = json.loads((CLONES_REPO / "clones.truth.json").read_text())["pairs"]
STRICT = 0.99  # above every unrelated pair of the tiny random model on this fixture


@pytest.fixture(scope="module")
def clones_index(tmp_path_factory, tiny_model):
    from codesearch.config import Settings

    repo = tmp_path_factory.mktemp("clones") / "repo"
    shutil.copytree(CLONES_REPO, repo)
    settings = Settings(model=str(tiny_model), threads=1)
    build_index(repo, settings)
    return Index.open(repo, settings)


def keys(group) -> frozenset[str]:
    return frozenset(f"{m.path}:{m.name}" for m in group.members)


def truth(*types: int) -> set[frozenset[str]]:
    return {frozenset(p["members"]) for p in TRUTH if p["type"] in types}


def test_token_hashes_ignore_names_literals_comments_and_layout():
    original = "def area(w, h):\n    # width times height\n    return w * h * 1.0\n"
    exact, renamed = token_hashes(original)
    assert token_hashes("def area(w, h):\n    return w*h*1.0  # same\n") == (exact, renamed)
    other_exact, other_renamed = token_hashes("def size(a, b):\n    return a * b * 2\n")
    assert other_renamed == renamed and other_exact != exact
    assert token_hashes("def area(w, h):\n    return w + h * 1.0\n")[1] != renamed  # another operator
    assert token_hashes("def area(w, h):\n    if w:\n        return w * h * 1.0\n")[1] != renamed  # a keyword more


def test_token_overlap_keeps_called_names_and_attributes_but_not_variables():
    _, renamed, api = abstract_tokens("out = items.append(len(xs), 'a', 2)  # note")
    assert renamed == ["I", "=", "I", ".", "I", "(", "I", "(", "I", ")", ",", "S", ",", "N", ")"]
    assert api == ["I", "=", "I", ".", "append", "(", "len", "(", "I", ")", ",", "S", ",", "N", ")"]


def test_hashing_and_token_overlap_find_types_1_to_3_in_every_language(clones_index):
    report = find_clones(clones_index, CloneOptions(min_similarity=STRICT))
    found = {keys(g): g.kind for g in report.groups}
    assert {k for k, kind in found.items() if kind == "exact"} == truth(1)
    assert {k for k, kind in found.items() if kind == "renamed"} == truth(2)
    assert {k for k, kind in found.items() if kind == "edited"} == truth(3)  # renamed, a statement added
    assert all(g.similarity == 1.0 for g in report.groups if g.kind in ("exact", "renamed"))
    assert all(0.0 < g.similarity < STRICT for g in report.groups if g.kind == "edited")  # the pair's cosine
    assert report.functions == 43
    # Above 1 the overlap detector is off; a strict one finds none of the edited copies.
    for min_overlap in (1.5, 0.9):
        kinds = {g.kind for g in find_clones(clones_index, CloneOptions(min_similarity=STRICT, min_overlap=min_overlap)).groups}
        assert kinds == {"exact", "renamed"}


def test_token_overlap_by_prefix_filtering_finds_what_comparing_all_pairs_finds():
    # Random "functions" from a small statement vocabulary, many of them edited copies of each other.
    rng = np.random.default_rng(7)
    statements = [f"x{i} = y{i}.call{i}(z, {i})\n" for i in range(40)]
    bodies = [list(rng.choice(len(statements), size=rng.integers(6, 16))) for _ in range(60)]
    for _ in range(60):  # edited copies: a statement dropped, replaced or added
        body = list(bodies[rng.integers(len(bodies))])
        body[rng.integers(len(body))] = rng.integers(len(statements))
        bodies.append(body + ([rng.integers(len(statements))] if rng.random() < 0.5 else []))
    functions = [{"code": "def f():\n" + "".join("    " + statements[s] for s in body), "language": "python",
                  "content_hash": str(i)} for i, body in enumerate(bodies)]
    hashed_pairs(functions)
    for threshold in (0.3, 0.6, 0.8):
        found = edited_pairs(functions, threshold)
        picked = {}  # brute force over the same representatives: one per renamed-token hash, big enough
        for i, f in enumerate(functions):
            if len(f["shingles"]) >= MIN_SHINGLES:
                picked.setdefault(f["hashes"][1], i)
        reps = sorted(picked.values())
        expected = {}
        for x, a in enumerate(reps):
            for b in reps[x + 1:]:
                sa, sb = functions[a]["shingles"], functions[b]["shingles"]
                jaccard = len(sa & sb) / len(sa | sb)
                if jaccard >= threshold:
                    expected[(a, b)] = round(jaccard, 6)
        assert found == expected and expected


def test_embeddings_find_exact_copies_at_the_default_threshold(clones_index):
    functions, owner, vectors = _load(clones_index.store, CloneOptions())
    pairs = similar_pairs(vectors, owner, DEFAULT_MIN_SIMILARITY, [f["language"] for f in functions])
    by_embedding = {frozenset(f"{functions[i]['path']}:{functions[i]['name']}" for i in pair) for pair in pairs}
    assert truth(1) <= by_embedding


def test_nothing_unrelated_is_reported_and_classes_give_way_to_their_methods(clones_index):
    report = find_clones(clones_index, CloneOptions(min_similarity=STRICT))
    planted = truth(1, 2, 3, 4)
    assert all(keys(g) in planted for g in report.groups)
    # The two Java classes embed 0.997 alike, but they only hold the copied methods.
    assert all(m.kind != "class" for g in report.groups for m in g.members)


@pytest.mark.parametrize(
    "options, languages, count",
    [
        (CloneOptions(min_similarity=STRICT, languages=("go",)), {"go"}, 3),
        (CloneOptions(min_similarity=STRICT, paths=("py/*",)), {"python"}, 3),
        (CloneOptions(min_similarity=STRICT, excludes=("py", "js/copies.js")), {"go", "java"}, 6),
        (CloneOptions(min_similarity=STRICT, under="java"), {"java"}, 3),
        (CloneOptions(min_similarity=STRICT, min_lines=8), {"go", "java", "js"}, 9),  # the Python originals are 6-7 lines
    ],
)
def test_scope_options(clones_index, options, languages, count):
    report = find_clones(clones_index, options)
    assert {m.language if m.language != "javascript" else "js" for g in report.groups for m in g.members} == languages
    assert len(report.groups) == count


def test_path_globs_and_prefixes():
    assert path_matches("tests/test_a.py", "tests") and path_matches("tests/test_a.py", "tests/")
    assert not path_matches("testsuite/a.py", "tests")
    assert path_matches("src/a/test_b.py", "**/test_*.py") and path_matches("src/a/b_test.go", "*_test.go")


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_partitioned_join_finds_the_near_duplicates_the_exact_join_finds():
    rng = np.random.default_rng(0)
    base = unit(rng.normal(size=(3000, 32)))
    copies = unit(base[:300] + rng.normal(scale=0.05, size=(300, 32)))  # 300 near-duplicates (cosine ~0.96+)
    vectors = np.concatenate([base, copies])
    owner = np.arange(len(vectors))
    exact = similar_pairs(vectors, owner, 0.9)
    partitioned = similar_pairs(vectors, owner, 0.9, exact_rows=0)
    assert {(i, 3000 + i) for i in range(300)} <= set(exact)
    assert len(set(exact) & set(partitioned)) / len(exact) >= 0.98
    assert all(abs(partitioned[p] - exact[p]) < 1e-5 for p in set(exact) & set(partitioned))


def test_windows_of_one_function_count_once_and_languages_stay_apart():
    rng = np.random.default_rng(1)
    a = unit(rng.normal(size=(1, 16)))
    b = unit(rng.normal(size=(1, 16)))
    vectors = np.concatenate([a, b, a, b])  # function 0 has windows a, b; function 1 is a, function 2 is b
    owner = np.array([0, 0, 1, 2])
    assert similar_pairs(vectors, owner, 0.999) == {(0, 1): 1.0, (0, 2): 1.0}
    assert similar_pairs(vectors, owner, 0.999, ["python", "go", "python"]) == {(0, 2): 1.0}
