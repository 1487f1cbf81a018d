"""Code-aware ranking: each signal as a pure function, then each on a small real-looking repository
indexed with the real indexer, the tiny model and a real LanceDB."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codesearch.indexer import build_index
from codesearch.ranking import (
    COHERENCE_STEP, DEFINITION_BOOST, ROLE_PENALTY, Symbol, definition_match, file_coherence, path_role, rerank,
    roles_asked_for, symbol_of,
)
from codesearch.search import Index


@pytest.mark.parametrize("query, parts", [
    ("APIRouter", ("APIRouter",)),
    ("Config.from_prefixed_env", ("Config", "from_prefixed_env")),
    ("Foo::bar", ("Foo", "bar")),
    ("`parse_config()`", ("parse_config",)),
    ("Rack::Utils#parse_query", ("Rack", "Utils", "parse_query")),
    ("parse json", None),
    ("how are routes registered", None),
    ("", None),
])
def test_symbol_of(query, parts):
    found = symbol_of(query)
    assert (found.parts if found else None) == parts


@pytest.mark.parametrize("symbol, name, score", [
    (("Config", "load"), "Config.load", 1.0),
    (("load",), "load", 1.0),
    (("load",), "Config.load", 0.9),
    (("Matrix",), "Matrix.Matrix", 0.9),
    (("Config", "load"), "Loader.load", 0.8),
    (("Load",), "load", 0.6),
    (("load",), "loader", 0.0),
    (("load",), "", 0.0),
    (("app",), "routes.py:app", 0.9),  # module-level code that sets it
])
def test_definition_match(symbol, name, score):
    assert definition_match(Symbol(symbol), name) == score


@pytest.mark.parametrize("path, role", [
    ("src/flask/app.py", ""),
    ("tests/test_app.py", "test"),
    ("pkg/app_test.go", "test"),
    ("lib/__tests__/util.js", "test"),
    ("src/util.spec.ts", "test"),
    ("src/test/java/FooTest.java", "test"),
    ("spec/rack_spec.rb", "test"),
    ("conftest.py", "test"),
    ("examples/hello.py", "example"),
    ("benches/parse.rs", "benchmark"),
    ("index.d.ts", "stub"),
    ("typeshed/os.pyi", "stub"),
    ("src/contest.py", ""),
    ("src/latest_version.py", ""),
])
def test_path_role(path, role):
    assert path_role(path) == role


def test_roles_asked_for():
    assert roles_asked_for("where are the tests for cookies") == {"test"}
    assert roles_asked_for("an example of a blueprint") == {"example"}
    assert roles_asked_for("parse cookies") == set()


def test_file_coherence_counts_the_other_good_candidates_of_a_file():
    lifts = file_coherence(["a.py", "a.py", "a.py", "b.py", "a.py"], [1.0, 0.5, -0.2, 2.0, 0.1])
    assert lifts == pytest.approx([COHERENCE_STEP * 2, COHERENCE_STEP * 2, COHERENCE_STEP * 3, 0.0, COHERENCE_STEP * 2])


def _rows(*items: tuple[str, str, str]) -> dict[str, dict]:
    return {cid: {"path": path, "name": name, "start_line": 1} for cid, path, name in items}


def test_rerank_applies_each_signal_and_explains_it():
    rows = _rows(("impl", "src/router.py", "APIRouter"), ("use", "src/app.py", "make_app"),
                 ("test", "tests/test_router.py", "test_router"))
    fused = [("use", 2.0), ("test", 1.5), ("impl", 0.5)]
    ranked = rerank("APIRouter", fused, rows)
    assert [r.chunk_id for r in ranked] == ["impl", "use", "test"]
    by_id = {r.chunk_id: r for r in ranked}
    assert by_id["impl"].score == pytest.approx(0.5 + DEFINITION_BOOST)
    assert "defines APIRouter" in by_id["impl"].explain
    assert by_id["test"].score == pytest.approx(1.5 - ROLE_PENALTY["test"])
    assert "test file" in by_id["test"].explain
    spared = {r.chunk_id: r for r in rerank("APIRouter", fused, rows, include_tests=True)}
    assert spared["test"].score == pytest.approx(1.5)


def test_rerank_breaks_ties_the_same_way_every_time():
    rows = _rows(("b", "src/b.py", "f"), ("a", "src/a.py", "f"), ("c", "src/aa.py", "f"))
    for fused in ([("b", 1.0), ("a", 1.0), ("c", 1.0)], [("c", 1.0), ("a", 1.0), ("b", 1.0)]):
        assert [r.chunk_id for r in rerank("thing", fused, rows)] == ["a", "b", "c"]


# --- on a repository ------------------------------------------------------------------------------

FILES = {
    "src/cookies.py": '''
def parse_cookie(header):
    """Split a Cookie header into a dict of names and values."""
    pairs = [part.strip().split("=", 1) for part in header.split(";") if "=" in part]
    return {name: value for name, value in pairs}


def dump_cookie(name, value, max_age=None):
    """Serialise one cookie for a Set-Cookie header."""
    text = f"{name}={value}"
    if max_age is not None:
        text += f"; Max-Age={max_age}"
    return text
''',
    "src/app.py": '''
from cookies import parse_cookie


def session_from_request(request):
    """Read the session id the client sent in its cookie."""
    cookies = parse_cookie(request.headers.get("Cookie", ""))
    return cookies.get("session")
''',
    "tests/test_cookies.py": '''
from cookies import parse_cookie, dump_cookie


def test_parse_cookie():
    assert parse_cookie("a=1; b=2") == {"a": "1", "b": "2"}


def test_parse_cookie_round_trip():
    assert parse_cookie(dump_cookie("a", "1")) == {"a": "1"}
''',
    "src/routes.py": '''
class Router:
    """Maps paths to handlers."""

    def add_route(self, path, handler):
        self.routes[path] = handler

    def match(self, path):
        return self.routes.get(path)
''',
}


@pytest.fixture
def indexed(tmp_path, settings) -> Index:
    root = tmp_path / "web"
    for path, text in FILES.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text.lstrip(), encoding="utf-8")
    build_index(root, settings)
    return Index.open(root, settings)


def test_a_symbol_query_puts_its_definition_first(indexed):
    hits = indexed.search("parse_cookie", k=5)
    assert (hits[0].path, hits[0].name) == ("src/cookies.py", "parse_cookie")
    assert "defines parse_cookie" in hits[0].explain
    method = indexed.search("Router.match", k=3)[0]
    assert method.name == "Router.match"


def test_a_symbol_named_nowhere_in_the_text_is_still_found_by_its_definition(indexed):
    # `add_route` splits into tokens that other chunks share; the definition still comes first.
    assert indexed.search("add_route", k=3)[0].name == "Router.add_route"


def test_tests_rank_below_the_code_unless_asked_for(indexed):
    hits = indexed.search("parse cookie header", k=10)
    tests = [h for h in hits if h.path.startswith("tests/")]
    assert tests and all("test file" in h.explain for h in tests)
    unpenalised = {h.chunk_id: h.score for h in indexed.search("parse cookie header", k=10, include_tests=True)}
    for hit in tests:
        assert unpenalised[hit.chunk_id] == pytest.approx(hit.score + ROLE_PENALTY["test"], abs=1e-5)
    asked = indexed.search("tests of parse cookie", k=10)
    assert not any("test file" in h.explain for h in asked)


def test_exclude_leaves_out_matching_paths(indexed):
    hits = indexed.search("cookie", k=10, exclude=["tests/**", "src/app.py"])
    assert hits and not any(h.path.startswith("tests/") or h.path == "src/app.py" for h in hits)


def test_the_cli_explains_each_hit(run, indexed):
    root = str(indexed.root)
    code, out, _ = run("query", "parse_cookie", "--root", root, "--explain", "--snippet-lines", "0")
    assert code == 0 and "defines parse_cookie" in out
    code, out, _ = run("query", "cookie", "--root", root, "--exclude", "tests/", "--json")
    paths = [json.loads(line)["path"] for line in out.splitlines() if json.loads(line)["type"] == "hit"]
    assert paths and not any(p.startswith("tests/") for p in paths)
    code, out, _ = run("query", "parse cookie", "--root", root, "--include-tests", "--json")
    assert code == 0 and not any("test file" in json.loads(line).get("explain", "") for line in out.splitlines())


def test_other_modes_are_the_plain_retrievers(indexed):
    hits = indexed.search("parse_cookie", k=5, mode="lexical")
    assert all(h.explain == "" for h in hits)
    assert Path(hits[0].path).name in {"cookies.py", "app.py", "test_cookies.py"}
