"""Chunking with the real grammars: what each language yields, and that bad input never breaks it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codesearch.chunking import (
    GRAMMAR_LANGUAGES,
    LANGUAGES,
    Chunk,
    ChunkResult,
    chunk_text,
    code_without_docstring,
    docstring_as_line,
    language_for_path,
)


@dataclass(frozen=True)
class LanguageCase:
    """A small source file, every definition it holds, and one chunk checked in detail."""

    language: str
    source: str
    definitions: set[tuple[str, str]]  # (kind, name)
    name: str                          # the chunk checked in detail
    lines: tuple[int, int]
    signature: str
    docstring: str


CASES = [
    LanguageCase(
        "python",
        '''\
import json


def parse_json(text: str) -> dict:
    """Parse JSON text.

    Returns a dict.
    """
    def strip(s):
        return s.strip()
    return json.loads(strip(text))


# A parser.
@dataclass
class Parser(Base):
    """Parses documents."""

    @property
    def name(self):
        return "p"

    async def run(self, x):
        return x

    class Options:
        def merge(self, other):
            pass
''',
        {
            ("function", "parse_json"),
            ("class", "Parser"),
            ("method", "Parser.name"),
            ("method", "Parser.run"),
            ("class", "Parser.Options"),
            ("method", "Parser.Options.merge"),
        },
        "parse_json",
        (4, 11),
        "def parse_json(text: str) -> dict:",
        "Parse JSON text.\n\nReturns a dict.",
    ),
    LanguageCase(
        "javascript",
        """\
/** Parse JSON text. */
export function parseJson(text) {
  return JSON.parse(text);
}

// Trim a string.
const trim = (s) => s.trim();

class Parser extends Base {
  handler = (event) => { this.last = event; };

  /**
   * Run the parser.
   */
  async run(input) {
    function inner() {}
    return inner(input);
  }
}

const api = {
  get(key) { return key; },
};
""",
        {
            ("function", "parseJson"),
            ("function", "trim"),
            ("class", "Parser"),
            ("method", "Parser.handler"),
            ("method", "Parser.run"),
            ("method", "api.get"),
        },
        "Parser.run",
        (15, 18),
        "async run(input)",
        "Run the parser.",
    ),
    LanguageCase(
        "typescript",
        """\
/** Parse JSON text. */
export function parseJson(text: string): object {
  return JSON.parse(text);
}

export const trim = (s: string): string => s.trim();

interface Shape {
  area(): number;
}

enum Color { Red, Green }

@Component({})
export class Parser<T> implements Shape {
  private handler = (e: Event): void => { this.last = e; };

  /** Run it. */
  @Log()
  public async run(input: string): Promise<T> {
    return input as T;
  }

  abstract reset(): void;
}
""",
        {
            ("function", "parseJson"),
            ("function", "trim"),
            ("class", "Shape"),
            ("class", "Color"),
            ("class", "Parser"),
            ("method", "Parser.handler"),
            ("method", "Parser.run"),
        },
        "parseJson",
        (2, 4),
        "export function parseJson(text: string): object",
        "Parse JSON text.",
    ),
    LanguageCase(
        "tsx",
        """\
/** A button. */
export function Button(props: Props) {
  return <button onClick={props.onClick}>{props.label}</button>;
}

const Card = ({ title }: { title: string }) => <div>{title}</div>;

class Widget extends React.Component<Props> {
  // Draw it.
  render() {
    return <div className="widget" />;
  }
}
""",
        {("function", "Button"), ("function", "Card"), ("class", "Widget"), ("method", "Widget.render")},
        "Widget.render",
        (10, 12),
        "render()",
        "Draw it.",
    ),
    LanguageCase(
        "go",
        """\
package geo

// Parse parses text.
// It never fails.
func Parse(text string) (int, error) {
\treturn 0, nil
}

// Point is a point.
type Point struct {
\tX, Y int
}

type Shape interface {
\tArea() float64
}

type ID int

// Dist returns the distance.
func (p *Point) Dist(q Point) float64 {
\tsquare := func(v int) int { return v * v }
\treturn float64(square(p.X - q.X))
}
""",
        {("function", "Parse"), ("class", "Point"), ("class", "Shape"), ("method", "Point.Dist")},
        "Parse",
        (5, 7),
        "func Parse(text string) (int, error)",
        "Parse parses text.\nIt never fails.",
    ),
    LanguageCase(
        "java",
        """\
package demo;

/** A parser. */
@Deprecated
public class Parser<T> extends Base implements Runnable {
    private int count;

    /**
     * Parses input.
     * @param input the text
     */
    @Override
    public T parse(String input) throws IOException {
        return null;
    }

    public Parser() { }

    static class Inner {
        void go() {}
    }

    interface Callback { void call(); }

    record Pair(int x, int y) { int sum() { return x + y; } }
}
""",
        {
            ("class", "Parser"),
            ("method", "Parser.parse"),
            ("method", "Parser.Parser"),
            ("class", "Parser.Inner"),
            ("method", "Parser.Inner.go"),
            ("class", "Parser.Callback"),
            ("class", "Parser.Pair"),
            ("method", "Parser.Pair.sum"),
        },
        "Parser.parse",
        (12, 15),
        "@Override public T parse(String input) throws IOException",
        "Parses input.\n@param input the text",
    ),
    LanguageCase(
        "ruby",
        """\
# Text utilities.
module Util
  # Parses text.
  # Strips it first.
  def self.parse(text)
    text.strip
  end

  class Parser < Base
    def run(input)
      input
    end
  end
end

def top_level(a, b = 1)
  a + b
end
""",
        {
            ("class", "Util"),
            ("method", "Util.parse"),
            ("class", "Util.Parser"),
            ("method", "Util.Parser.run"),
            ("function", "top_level"),
        },
        "Util.parse",
        (5, 7),
        "def self.parse(text)",
        "Parses text.\nStrips it first.",
    ),
    LanguageCase(
        "php",
        """\
<?php
namespace App;

/**
 * Parse JSON text.
 */
function parse_json(string $text): array {
    return json_decode($text, true);
}

class Parser extends Base {
    /** Run it. */
    #[Pure]
    public function run(string $input): string {
        return $input;
    }
}

trait Loggable {
    public function log($message) { echo $message; }
}

interface Shape { public function area(): float; }
""",
        {
            ("function", "parse_json"),
            ("class", "Parser"),
            ("method", "Parser.run"),
            ("class", "Loggable"),
            ("method", "Loggable.log"),
            ("class", "Shape"),
        },
        "Parser.run",
        (13, 16),
        "public function run(string $input): string",
        "Run it.",
    ),
    LanguageCase(
        "rust",
        """\
/// Parses text.
/// Never panics.
pub fn parse(text: &str) -> Result<i32, Error> {
    Ok(0)
}

/// A point.
#[derive(Debug)]
pub struct Point {
    x: i32,
}

pub struct Marker;

pub trait Area {
    fn area(&self) -> f64;
    fn twice(&self) -> f64 { self.area() * 2.0 }
}

impl Point {
    /// A new point.
    pub fn new(x: i32) -> Self {
        fn helper() {}
        Point { x }
    }
}

impl<T: Clone> Area for Wrapper<T> {
    fn area(&self) -> f64 { 0.0 }
}
""",
        {
            ("function", "parse"),
            ("class", "Point"),
            ("class", "Area"),
            ("method", "Area.twice"),
            ("method", "Point.new"),
            ("method", "Wrapper.area"),
        },
        "Point",
        (9, 11),
        "pub struct Point",
        "A point.",
    ),
    LanguageCase(
        "c",
        """\
#include <stdio.h>

/* Parse text.
 * Returns 0 on success.
 */
int parse(const char *text) {
    return 0;
}

// A point.
struct point {
    int x, y;
};

typedef struct {
    int a, b;
} pair_t;

static char *
dup_name(const char *s, size_t n)
{
    return NULL;
}

void declared_only(int x);
""",
        {("function", "parse"), ("class", "point"), ("class", "pair_t"), ("function", "dup_name")},
        "dup_name",
        (19, 23),
        "static char * dup_name(const char *s, size_t n)",
        "",
    ),
    LanguageCase(
        "cpp",
        """\
#include <vector>

namespace geo {

/// A shape.
class Shape {
public:
    virtual ~Shape() = default;
    /// Area of it.
    virtual double area() const { return 0; }
    void scale(double f);
};

/// Scales it.
void Shape::scale(double f) {
    (void)f;
}

template <typename T>
T maxOf(T a, T b) { return a > b ? a : b; }

}  // namespace geo
""",
        {
            ("class", "Shape"),
            ("method", "Shape.area"),
            ("method", "Shape.scale"),
            ("function", "maxOf"),
        },
        "Shape.scale",
        (15, 17),
        "void Shape::scale(double f)",
        "Scales it.",
    ),
    LanguageCase(
        "csharp",
        """\
using System;

namespace Demo
{
    /// <summary>A parser.</summary>
    [Serializable]
    public class Parser : IParser
    {
        /// <summary>
        /// Parses input.
        /// </summary>
        public int Parse(string input)
        {
            return 0;
        }

        public int Twice(int x) => x * 2;

        private class Inner { void Go() { } }
    }

    public interface IParser { int Parse(string input); }

    public struct Point { public int X; }
}
""",
        {
            ("class", "Parser"),
            ("method", "Parser.Parse"),
            ("method", "Parser.Twice"),
            ("class", "Parser.Inner"),
            ("method", "Parser.Inner.Go"),
            ("class", "IParser"),
            ("class", "Point"),
        },
        "Parser",
        (6, 20),
        "public class Parser : IParser",
        "A parser.",
    ),
]


def chunk_named(result: ChunkResult, name: str) -> Chunk:
    (chunk,) = [c for c in result.chunks if c.name == name]
    return chunk


def test_every_language_has_a_case():
    """The first twelve grammars here; the others' cases are in test_languages.py."""
    from tests.test_languages import NEW_CASES

    assert sorted(case.language for case in CASES + NEW_CASES) == sorted(GRAMMAR_LANGUAGES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.language)
def test_finds_every_definition(case: LanguageCase):
    result = chunk_text(case.source, case.language, path="src/sample")
    assert not result.had_errors
    assert {(c.kind, c.name) for c in result.chunks} == case.definitions
    assert len(result.chunks) == len(case.definitions)
    assert all(c.path == "src/sample" and c.language == case.language for c in result.chunks)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.language)
def test_one_chunk_in_detail(case: LanguageCase):
    chunk = chunk_named(chunk_text(case.source, case.language), case.name)
    assert (chunk.start_line, chunk.end_line) == case.lines
    assert chunk.signature == case.signature
    assert chunk.docstring == case.docstring
    lines = case.source.split("\n")[chunk.start_line - 1 : chunk.end_line]
    assert chunk.code == "\n".join(lines)
    assert chunk.content_hash == hashlib.sha256(chunk.code.encode()).hexdigest()


def test_python_decorators_belong_to_the_chunk():
    source = CASES[0].source
    parser = chunk_named(chunk_text(source, "python"), "Parser")
    assert parser.code.startswith("@dataclass\nclass Parser(Base):")
    assert parser.signature == "class Parser(Base):"
    assert parser.docstring == "Parses documents."
    name = chunk_named(chunk_text(source, "python"), "Parser.name")
    assert name.code == '    @property\n    def name(self):\n        return "p"'


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.language)
def test_crlf_files_number_lines_like_lf_files(case: LanguageCase):
    lf = chunk_text(case.source, case.language)
    crlf = chunk_text(case.source.replace("\n", "\r\n"), case.language)
    assert [(c.name, c.start_line, c.end_line, c.signature, c.docstring) for c in crlf.chunks] == [
        (c.name, c.start_line, c.end_line, c.signature, c.docstring) for c in lf.chunks
    ]
    assert [c.code.replace("\r\n", "\n") for c in crlf.chunks] == [c.code for c in lf.chunks]


def test_non_ascii_text_before_a_definition_keeps_offsets_right():
    source = (
        'GREETING = "héllo wörld — 日本語 🎉"\n'
        "\n"
        "def naïve_ñame(x):\n"
        '    """Ünïcode döc."""\n'
        '    return "数据" + x\n'
    )
    (chunk,) = chunk_text(source, "python").chunks
    assert chunk.name == "naïve_ñame"
    assert (chunk.start_line, chunk.end_line) == (3, 5)
    assert chunk.code == source[source.index("def") :].rstrip("\n")
    assert chunk.docstring == "Ünïcode döc."


def test_non_ascii_on_the_same_line_as_a_definition():
    source = "/* ünïcode ✓ */ function f(a) { return 'é'; }\n"
    (chunk,) = chunk_text(source, "javascript").chunks
    assert chunk.code == "function f(a) { return 'é'; }"
    assert chunk.signature == "function f(a)"


@pytest.mark.parametrize(
    ("language", "source", "kept"),
    [
        (
            "python",
            "def good_one(a):\n    return a\n\n\ndef broken(:\n    return\n\n\n"
            "def good_two(b):\n    return b\n",
            ["good_one", "good_two"],
        ),
        (
            "go",
            "package p\n\nfunc GoodOne() int {\n\treturn 1\n}\n\nfunc Broken( {\n\treturn\n}\n\n"
            "func GoodTwo() int {\n\treturn 2\n}\n",
            ["GoodOne", "GoodTwo"],
        ),
        (
            "java",
            "class A {\n  int goodOne() { return 1; }\n  int broken( { return 2; }\n"
            "  int goodTwo() { return 3; }\n}\n",
            ["A.goodOne", "A.goodTwo"],
        ),
        (
            "rust",
            "fn good_one() -> i32 { 1 }\n\nfn broken( -> i32 { 2 }\n\nfn good_two() -> i32 { 3 }\n",
            ["good_one", "good_two"],
        ),
    ],
)
def test_syntax_errors_drop_only_the_broken_definitions(language: str, source: str, kept: list[str]):
    result = chunk_text(source, language)
    assert result.had_errors
    assert [c.name for c in result.chunks] == kept


@pytest.mark.parametrize("language", GRAMMAR_LANGUAGES)
def test_garbage_has_errors_and_no_chunks(language: str):
    garbage = "}}}{{{ ))) ((( @@@ ### !!! <<< >>> ::: ;;; end end ;"
    if language == "php":
        garbage = "<?php\n" + garbage  # outside <?php a PHP file is plain text, never an error
    result = chunk_text(garbage, language)
    assert result.had_errors
    assert result.chunks == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_deep_nesting_does_not_crash(language: str):
    for source in ("(" * 5000 + ")" * 5000, "[" * 5000, "{" * 5000 + "}" * 5000, "class A {" * 2000):
        assert isinstance(chunk_text(source, language), ChunkResult)


def test_a_definition_after_deep_nesting_is_found():
    source = "x = " + "[" * 5000 + "]" * 5000 + "\n\ndef after():\n    pass\n"
    assert [(c.name, c.start_line) for c in chunk_text(source, "python").chunks] == [("after", 3)]


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=3000), language=st.sampled_from(LANGUAGES))
def test_random_bytes_never_raise(data: bytes, language: str):
    text = data.decode("utf-8", errors="replace")
    result = chunk_text(text, language, path="random")
    for chunk in result.chunks:
        assert chunk.code.strip()
        assert 1 <= chunk.start_line <= chunk.end_line


@settings(max_examples=30, deadline=None)
@given(text=st.text(alphabet=st.sampled_from("def class fn(){}[]:;\n\r\t\0 é/*#'\"=>"), max_size=400))
def test_code_like_noise_never_raises(text: str):
    for language in ("python", "javascript", "rust", "cpp"):
        chunk_text(text, language)


def test_lone_surrogates_do_not_raise():
    chunk_text("def f():\n    return '\udcff'\n", "python")


def test_content_hash_ignores_path_and_position():
    function = "def area(w, h):\n    return w * h\n"
    first = chunk_text(function, "python", path="a.py").chunks[0]
    moved = chunk_text("import os\n\n\n" + function, "python", path="lib/b.py").chunks[0]
    changed = chunk_text(function.replace("w * h", "w + h"), "python").chunks[0]
    assert moved.start_line == first.start_line + 3
    assert moved.content_hash == first.content_hash
    assert changed.content_hash != first.content_hash


DOCUMENTED = (
    "class Store:\n"
    "    @cached\n"
    "    def get(self, key):\n"
    '        r"""Return the value stored under key.\n'
    "\n"
    "        Raises KeyError.\n"
    '        """\n'
    "        return self.items[key]\n"
)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_code_without_docstring_removes_the_python_docstring(newline: str):
    method = chunk_named(chunk_text(DOCUMENTED.replace("\n", newline), "python"), "Store.get")
    assert method.docstring == "Return the value stored under key.\n\nRaises KeyError."
    expected = "    @cached\n    def get(self, key):\n        return self.items[key]".replace("\n", newline)
    assert code_without_docstring(method) == expected


def test_code_without_docstring_on_one_line_and_without_docstring():
    (one_line,) = chunk_text("def f(): '''Doc.'''; return 1\n", "python").chunks
    assert code_without_docstring(one_line) == "def f(): return 1"
    (plain,) = chunk_text("def g():\n    return 2\n", "python").chunks
    assert code_without_docstring(plain) == plain.code
    rust = chunk_named(chunk_text(CASES[8].source, "rust"), "parse")
    assert code_without_docstring(rust) == rust.code


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_docstring_as_line_joins_the_docstring_where_it_stood(newline: str):
    method = chunk_named(chunk_text(DOCUMENTED.replace("\n", newline), "python"), "Store.get")
    expected = (
        "    @cached\n"
        "    def get(self, key):\n"
        "        Return the value stored under key. Raises KeyError.\n"
        "        return self.items[key]"
    ).replace("\n", newline)
    assert docstring_as_line(method.code) == expected


def test_docstring_as_line_on_classes_one_liners_and_code_without_docstring():
    assert docstring_as_line("class A:\n    'A thing.'\n    x = 1") == "class A:\n    A thing.\n    x = 1"
    assert docstring_as_line("def f(): '''Doc.'''; return 1") == "def f(): Doc. return 1"
    assert docstring_as_line('def f():\n    """"""\n    return 1') == "def f():\n    return 1"
    plain = "def g():\n    x = 'not a docstring'\n    return x"
    assert docstring_as_line(plain) == plain
    # A language not known: only text that parses as Python is rewritten.
    js = "function f() {\n  'use strict';\n  return 1;\n}"
    assert docstring_as_line(js, only_if_clean=True) == js
    assert docstring_as_line('def f():\n    """Doc."""\n', only_if_clean=True) == "def f():\n    Doc.\n"


@pytest.mark.parametrize(
    ("path", "language"),
    [
        ("a/b.py", "python"), ("stubs/x.pyi", "python"), ("app.jsx", "javascript"), ("m.mjs", "javascript"),
        ("x.cjs", "javascript"), ("a.ts", "typescript"), ("a.mts", "typescript"), ("a.cts", "typescript"),
        ("ui/App.tsx", "tsx"), ("main.go", "go"), ("A.java", "java"), ("r.rb", "ruby"), ("i.php", "php"),
        ("lib.rs", "rust"), ("x.c", "c"), ("x.h", "c"), ("x.cc", "cpp"), ("x.cpp", "cpp"), ("x.cxx", "cpp"),
        ("x.hpp", "cpp"), ("x.hh", "cpp"), ("x.hxx", "cpp"), ("P.cs", "csharp"), ("README.md", None),
        ("docs/guide.rst", None), ("data.json", None), ("Makefile", "makefile"), ("a/Dockerfile", "dockerfile"),
        ("x.kt", "kotlin"), ("x.swift", "swift"), ("x.ex", "elixir"), ("run.sh", "bash"), ("x.R", "r"),
        ("x.m", "objc"), ("q.sql", "sql"),
    ],
)
def test_language_for_path(path: str, language: str | None):
    assert language_for_path(path) == language


def test_unknown_language_is_a_value_error():
    with pytest.raises(ValueError, match="cobol"):
        chunk_text("", "cobol")


def test_empty_text_has_no_chunks():
    assert chunk_text("", "python") == ChunkResult(chunks=[], had_errors=False)
