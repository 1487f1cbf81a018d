"""Code-aware signals on top of a hybrid query's fusion, each a small pure function.

The fusion (`search.hybrid_fuse`) gives every candidate chunk a score in z-score units: how far
above the other candidates the model and full-text search put it. What code search also needs,
and neither retriever knows:

- `symbol_of`, `definition_match`: a query that is one identifier (`APIRouter`, `Config.from_env`,
  `Foo::bar`, `parse_config`) wants that symbol's definition first, not the functions that call it.
- `path_role`: tests, examples, benchmarks and declaration stubs (`.d.ts`, `.pyi`) repeat the names
  of the code they exercise or declare, and crowd out the implementation; they go down unless the
  query asks for them (`test`, `example`...) or the user does (`--include-tests`).
- `file_coherence`: several good candidates in one file make that file a better answer, so each
  lifts the others a little.

`rerank` adds the signals to the fused scores; each hit carries a one-line `explain` of what moved it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

DEFINITION_BOOST = 5.0  # z units: a symbol's definition outranks the fused score of any chunk that only uses it
ROLE_PENALTY = {"test": 1.0, "example": 0.6, "benchmark": 0.6, "stub": 0.8}
COHERENCE_STEP = 0.1  # z units per other good candidate of the same file
COHERENCE_CAP = 3  # other candidates counted at most

_IDENTIFIER = r"[A-Za-z_$][\w$]*"
_SYMBOL = re.compile(rf"{_IDENTIFIER}(?:(?:\.|::|#|->|/){_IDENTIFIER})*")
_SEPARATOR = re.compile(r"\.|::|#|->|/")
_NAME_SEPARATOR = re.compile(r"\.|::?|#|->|/")  # in chunk names also ":": module-level code is "file.py:app"
# Words that ask for a role: a query that says "test" wants tests.
_ROLE_WORDS = {
    "test": {"test", "tests", "testing", "spec", "specs", "unittest", "pytest", "fixture", "fixtures", "mock"},
    "example": {"example", "examples", "demo", "sample", "samples", "tutorial"},
    "benchmark": {"benchmark", "benchmarks", "bench", "perf"},
    "stub": {"stub", "stubs", "declaration", "declarations", "typings", "types", "d.ts"},
}
_TEST_DIRS = {"test", "tests", "testing", "__tests__", "spec", "specs", "__mocks__", "testdata", "test_data",
              "fixtures", "e2e", "integration_tests"}
_EXAMPLE_DIRS = {"example", "examples", "demo", "demos", "sample", "samples", "tutorial", "tutorials", "docs_src"}
_BENCH_DIRS = {"bench", "benches", "benchmark", "benchmarks", "perf"}
_TEST_FILE = re.compile(
    r"(?:^test_.*|.*_tests?\.\w+$|.*[._-](?:test|spec)\.\w+$|^tests?\.\w+$|.*Tests?\.(?:java|kt|cs|scala|swift|php)$"
    r"|^conftest\.py$|.*_spec\.rb$)"
)


@dataclass(frozen=True)
class Symbol:
    """An identifier query split into its parts: `Config.from_env` -> ("Config", "from_env")."""

    parts: tuple[str, ...]

    @property
    def last(self) -> str:
        return self.parts[-1]


def symbol_of(query: str) -> Symbol | None:
    """The symbol a query names, when the whole query is one identifier or a qualified name
    (backticks and a trailing `()` allowed); None for a query in words."""
    text = query.strip().strip("`").strip()
    if text.endswith("()"):
        text = text[:-2]
    if not text or not _SYMBOL.fullmatch(text):
        return None
    return Symbol(tuple(p for p in _SEPARATOR.split(text) if p))


def definition_match(symbol: Symbol, name: str) -> float:
    """How surely a chunk named `name` (`Class.method`, `function`) defines `symbol`, 0 to 1:
    1 for the very name, 0.9 for a name the symbol ends (`Config.load` for `load`, a constructor
    `Matrix.Matrix` for `Matrix`), 0.8 for the last part alone, 0.6 for the last part but for case."""
    parts = tuple(p for p in _NAME_SEPARATOR.split(name) if p)
    if not parts:
        return 0.0
    if parts == symbol.parts:
        return 1.0
    if parts[-len(symbol.parts):] == symbol.parts:
        return 0.9
    if parts[-1] == symbol.last:
        return 0.8
    if parts[-1].lower() == symbol.last.lower():
        return 0.6
    return 0.0


def path_role(path: str) -> str:
    """What a file is for, by its path: "test", "example", "benchmark", "stub" or "" (the code itself)."""
    lowered = path.lower()
    if lowered.endswith((".d.ts", ".d.cts", ".d.mts", ".pyi")):
        return "stub"
    parts = lowered.split("/")
    directories, name = parts[:-1], path.split("/")[-1]
    if any(d in _TEST_DIRS for d in directories) or _TEST_FILE.match(name):
        return "test"
    if any(d in _EXAMPLE_DIRS for d in directories):
        return "example"
    if any(d in _BENCH_DIRS for d in directories):
        return "benchmark"
    return ""


def roles_asked_for(query: str) -> set[str]:
    """The roles a query names in its words ("where are the tests for X" asks for tests)."""
    words = set(re.findall(r"[a-z][a-z.]*", query.lower()))
    return {role for role, names in _ROLE_WORDS.items() if words & names}


def role_penalty(path: str, spared: set[str]) -> tuple[str, float]:
    """The role of `path` and what it costs a hit (0 for the code itself and for `spared` roles)."""
    role = path_role(path)
    return role, (0.0 if not role or role in spared else ROLE_PENALTY[role])


def file_coherence(paths: Sequence[str], scores: Sequence[float]) -> list[float]:
    """Each candidate's lift from the other good candidates (fused score above 0) of its file:
    COHERENCE_STEP for each, at most COHERENCE_CAP of them."""
    good = Counter(p for p, s in zip(paths, scores) if s > 0)
    return [COHERENCE_STEP * min(COHERENCE_CAP, good[p] - (1 if s > 0 else 0)) for p, s in zip(paths, scores)]


@dataclass(frozen=True)
class Ranked:
    """A candidate after the signals: its chunk id, final score and the one-line explanation."""

    chunk_id: str
    score: float
    explain: str


def rerank(
    query: str,
    fused: Sequence[tuple[str, float]],
    rows: dict[str, dict],
    *,
    include_tests: bool = False,
) -> list[Ranked]:
    """Add the code-aware signals to fused (chunk id, score) candidates and sort them again, best
    first; ties go to the shorter path, then the earlier line (a stable, repeatable order)."""
    symbol = symbol_of(query)
    spared = set(ROLE_PENALTY) if include_tests else roles_asked_for(query)
    ids = [cid for cid, _ in fused]
    paths = [rows[cid]["path"] for cid in ids]
    base = [score for _, score in fused]
    lifts = file_coherence(paths, base)
    ranked = []
    for cid, score, lift, path in zip(ids, base, lifts, paths):
        notes = [f"fused {score:+.2f}"]
        total = score
        role, penalty = role_penalty(path, spared)
        if symbol is not None and (match := definition_match(symbol, rows[cid]["name"])):
            if role == "stub":
                match /= 2  # a declaration (.d.ts, .pyi) names the symbol; the implementation defines it
            total += DEFINITION_BOOST * match
            notes.append(f"defines {'.'.join(symbol.parts)} {DEFINITION_BOOST * match:+.2f}")
        if penalty:
            total -= penalty
            notes.append(f"{role} file {-penalty:+.2f}")
        if lift:
            total += lift
            notes.append(f"{round(lift / COHERENCE_STEP)} more in file {lift:+.2f}")
        ranked.append(Ranked(cid, total, "; ".join(notes)))
    order = sorted(
        range(len(ranked)),
        key=lambda i: (-ranked[i].score, len(paths[i]), paths[i], int(rows[ids[i]]["start_line"]), ids[i]),
    )
    return [ranked[i] for i in order]

