"""The languages beyond the first twelve, with their real grammars; the fallback chunker for those
without one; `.h` by content; assigned JavaScript functions; module-level and file summary chunks."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from codesearch import fallback
from codesearch.chunking import GRAMMAR_LANGUAGES, LANGUAGES, ChunkResult, chunk_text
from codesearch.files import walk
from codesearch.languages import FALLBACK, SPECS, grammar, header_language, languages_table
from tests.test_chunking import LanguageCase

README = Path(__file__).parent.parent / "README.md"

NEW_CASES = [
    LanguageCase(
        "bash",
        "#!/bin/bash\nset -e\n\n# Deploy the site.\ndeploy() {\n  rsync -a out/ host:/srv\n}\n\n"
        "function clean {\n  rm -rf out\n}\n",
        {("function", "deploy"), ("function", "clean")},
        "deploy", (5, 7), "deploy()", "Deploy the site.",
    ),
    LanguageCase(
        "kotlin",
        "package demo\n\n/** Adds numbers. */\nfun add(a: Int, b: Int): Int {\n    return a + b\n}\n\n"
        "class Parser(val x: Int) : Base() {\n    fun parse(s: String): Int = s.length\n"
        "    constructor(y: String) : this(1) { }\n    companion object {\n        fun create(): Parser = Parser(1)\n"
        "    }\n}\n\nobject Registry {\n    fun register() {}\n}\n",
        {("function", "add"), ("class", "Parser"), ("method", "Parser.parse"), ("method", "Parser.constructor"),
         ("method", "Parser.create"), ("class", "Registry"), ("method", "Registry.register")},
        "add", (4, 6), "fun add(a: Int, b: Int): Int", "Adds numbers.",
    ),
    LanguageCase(
        "lua",
        "local M = {}\n\n-- Adds numbers.\nlocal function add(a, b)\n  return a + b\nend\n\n"
        "function M.parse(s)\n  return #s\nend\n\nfunction Parser:run(x) return x end\n\nreturn M\n",
        {("function", "add"), ("method", "M.parse"), ("method", "Parser.run")},
        "add", (4, 6), "local function add(a, b)", "Adds numbers.",
    ),
    LanguageCase(
        "scala",
        "package demo\n\n/** Adds numbers. */\ndef add(a: Int, b: Int): Int = a + b\n\n"
        "class Parser(x: Int) extends Base {\n  def parse(s: String): Int = s.length\n}\n"
        "object Registry {\n  def register(): Unit = {}\n}\ntrait Shape { def area(): Double }\n",
        {("function", "add"), ("class", "Parser"), ("method", "Parser.parse"), ("class", "Registry"),
         ("method", "Registry.register"), ("class", "Shape")},
        "add", (4, 4), "def add(a: Int, b: Int): Int =", "Adds numbers.",
    ),
    LanguageCase(
        "swift",
        "import Foundation\n\n/// Adds numbers.\nfunc add(_ a: Int, _ b: Int) -> Int {\n    return a + b\n}\n\n"
        "class Parser: Base {\n    init(x: Int) { self.x = x }\n    func parse(s: String) -> Int { return s.count }\n}\n"
        "protocol Shape { func area() -> Double }\nextension Parser { func twice() -> Int { 2 } }\n",
        {("function", "add"), ("class", "Parser"), ("method", "Parser.init"), ("method", "Parser.parse"),
         ("class", "Shape"), ("method", "Parser.twice")},
        "add", (4, 6), "func add(_ a: Int, _ b: Int) -> Int", "Adds numbers.",
    ),
    LanguageCase(
        "zig",
        'const std = @import("std");\n\n/// Adds numbers.\npub fn add(a: i32, b: i32) i32 {\n    return a + b;\n}\n\n'
        "const Point = struct {\n    x: i32,\n    pub fn norm(self: Point) i32 {\n        return self.x;\n    }\n};\n",
        {("function", "add"), ("class", "Point"), ("method", "Point.norm")},
        "add", (4, 6), "pub fn add(a: i32, b: i32) i32", "Adds numbers.",
    ),
    LanguageCase(
        "elixir",
        "defmodule Demo.Parser do\n  # Adds numbers.\n  def add(a, b) do\n    a + b\n  end\n\n"
        "  def fact(0), do: 1\n  def fact(n) when n > 0, do: n * fact(n - 1)\n\n  defp helper(x), do: x\nend\n",
        {("class", "Demo.Parser"), ("method", "Demo.Parser.add"), ("method", "Demo.Parser.fact"),
         ("method", "Demo.Parser.helper")},
        "Demo.Parser.fact", (7, 8), "def fact(0), do: 1", "",
    ),
    LanguageCase(
        "haskell",
        "module Demo where\n\nimport Data.List (sort)\n\n-- | Factorial.\nfact :: Int -> Int\nfact 0 = 1\n"
        "fact n = n * fact (n - 1)\n\ndata Shape = Circle Double | Square Double\n\n"
        "class Area a where\n  area :: a -> Double\n",
        {("function", "fact"), ("class", "Shape"), ("class", "Area"), ("method", "Area.area")},
        "fact", (6, 8), "fact :: Int -> Int", "Factorial.",
    ),
    LanguageCase(
        "objc",
        "#import <Foundation/Foundation.h>\n\n@interface Parser : NSObject\n- (int)parse:(NSString *)s;\n@end\n\n"
        "@implementation Parser\n/// Parses a string.\n- (int)parse:(NSString *)s {\n    return (int)s.length;\n}\n"
        "@end\n\nint add(int a, int b) { return a + b; }\n",
        {("class", "Parser"), ("method", "Parser.parse"), ("function", "add")},
        "Parser.parse", (9, 11), "- (int)parse:(NSString *)s", "Parses a string.",
    ),
    LanguageCase(
        "julia",
        "module Demo\n\n# Adds numbers.\nfunction add(a, b)\n    return a + b\nend\n\n"
        "struct Point\n    x::Int\nend\n\nmacro twice(x)\n    x\nend\nend\n",
        {("function", "add"), ("class", "Point"), ("function", "twice")},
        "add", (4, 6), "function add(a, b)", "Adds numbers.",
    ),
    LanguageCase(
        "ocaml",
        "open Printf\n\n(** Adds numbers. *)\nlet add a b = a + b\n\nlet limit = 10\n\n"
        "type shape = Circle of float | Square of float\n\nmodule Registry = struct\n  let register x = x\nend\n",
        {("function", "add"), ("class", "shape"), ("class", "Registry"), ("method", "Registry.register")},
        "add", (4, 4), "let add a b =", "Adds numbers.",
    ),
    LanguageCase(
        "perl",
        "package Demo::Parser;\nuse strict;\n\n# Adds numbers.\nsub add {\n    my ($a, $b) = @_;\n    return $a + $b;\n}\n\n"
        "sub Demo::Other::run { 1 }\n\n1;\n",
        {("function", "add"), ("method", "Demo.Other.run")},
        "add", (5, 8), "sub add", "Adds numbers.",
    ),
]


@pytest.mark.parametrize("case", NEW_CASES, ids=lambda c: c.language)
def test_new_grammar_finds_every_definition(case: LanguageCase):
    result = chunk_text(case.source, case.language, path="src/sample")
    assert not result.had_errors
    assert {(c.kind, c.name) for c in result.chunks} == case.definitions
    chunk = next(c for c in result.chunks if c.name == case.name)
    assert (chunk.start_line, chunk.end_line, chunk.signature, chunk.docstring) == (
        case.lines[0], case.lines[1], case.signature, case.docstring)
    assert chunk.code == "\n".join(case.source.split("\n")[chunk.start_line - 1 : chunk.end_line])


@pytest.mark.parametrize("language", GRAMMAR_LANGUAGES)
def test_every_grammar_loads(language: str):
    assert grammar(language) is not None


# --- no language scores 0 ------------------------------------------------------------------------

DART = """\
import 'package:http/http.dart' as http;

/// Fetches a user.
Future<User> fetchUser(String id) async {
  final response = await http.get(Uri.parse('$base/users/$id'));
  return User.fromJson(response.body);
}

class User {
  final String name;
  User(this.name);
}
"""


def test_a_language_without_grammar_gets_named_blocks():
    result = chunk_text(DART, "dart", path="lib/api.dart")
    assert [(c.kind, c.name, c.start_line, c.end_line) for c in result.chunks] == [
        ("function", "fetchUser", 1, 7), ("function", "User", 9, 12),
    ]
    assert all(c.code == "\n".join(DART.split("\n")[c.start_line - 1 : c.end_line]) for c in result.chunks)


@pytest.mark.parametrize(("line", "name"), [
    ("fun parse(s: String): Int {", "parse"), ("def handle(conn, params) do", "handle"),
    ("export async function load(url) {", "load"), ("deploy() {", "deploy"),
    ("local function helper(x)", "helper"), ("parse_args <- function(argv) {", "parse_args"),
    ("CREATE TABLE IF NOT EXISTS users (", "users"), ("(defn parse-config [path]", "parse-config"),
    ("handle_call(Msg, From, State) ->", "handle_call"), ('resource "aws_s3_bucket" "logs" {', "aws_s3_bucket.logs"),
    ("build: deps", "build"), ("FROM python:3.12 AS builder", "builder"), ("  x = 1", ""), ("// def not(this)", ""),
    ("if (ready) {", ""),
])
def test_definition_names_in_many_languages(line: str, name: str):
    assert fallback.definition_name(line) == name


def test_long_paragraphs_are_cut_and_small_ones_merged():
    lines = [f"x{i} = {i}" for i in range(200)]
    spans = [(b.start_line, b.end_line) for b in fallback.blocks(lines)]
    assert spans == [(1, 50), (51, 100), (101, 150), (151, 200)]
    small = ["a = 1", "", "b = 2", "", "c = 3"]
    assert [(b.start_line, b.end_line) for b in fallback.blocks(small)] == [(1, 5)]


SAMPLES = {  # one small file for the languages without a case elsewhere
    "fsharp": "let add a b = a + b\n", "r": "add <- function(a, b) {\n  a + b\n}\n",
    "groovy": "def add(a, b) {\n  a + b\n}\n", "clojure": "(defn add [a b]\n  (+ a b))\n",
    "erlang": "add(A, B) ->\n    A + B.\n", "powershell": "function Add-Numbers {\n  param($a)\n}\n",
    "sql": "CREATE TABLE users (id int);\n", "vue": "<template>\n  <div/>\n</template>\n",
    "svelte": "<script>\n  let count = 0;\n</script>\n", "proto": "message User {\n  string name = 1;\n}\n",
    "terraform": 'resource "aws_s3_bucket" "logs" {\n  bucket = "logs"\n}\n', "makefile": "build:\n\tgo build\n",
    "dockerfile": "FROM python:3.12\nRUN pip install .\n", "dart": DART,
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_language_yields_nothing(language: str):
    case = next((c for c in NEW_CASES if c.language == language), None)
    if language in FALLBACK:
        text = SAMPLES[language]
    elif case is not None:
        text = case.source
    else:
        from tests.test_chunking import CASES

        text = next(c.source for c in CASES if c.language == language)
    assert chunk_text(text, language, path="f").chunks


def test_the_walk_keeps_files_of_the_new_languages_and_not_docs(tmp_path: Path):
    for name in ("app.kt", "deploy.sh", "lib/api.dart", "Makefile", "schema.sql", "README.md", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x = 1\n")
    found = {f.path: f.language for f in walk(tmp_path).files}
    assert found == {"app.kt": "kotlin", "deploy.sh": "bash", "lib/api.dart": "dart", "Makefile": "makefile",
                     "schema.sql": "sql"}


# --- .h by content -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "language"), [
    ("#include <stdio.h>\nstruct point { int x; };\nint add(int a, int b);\n", "c"),
    ("#include <vector>\nint f();\n", "cpp"),
    ("namespace absl {\nint f();\n}\n", "cpp"),
    ("template <typename T>\nT max(T a, T b) { return a > b ? a : b; }\n", "cpp"),
    ("class Widget {\n public:\n  int size() const;\n};\n", "cpp"),
    ("#import <Foundation/Foundation.h>\n@interface Parser : NSObject\n@end\n", "objc"),
])
def test_header_language_by_content(text: str, language: str):
    assert header_language(text) == language


def test_a_cpp_header_is_chunked_as_cpp():
    text = "namespace fmt {\ntemplate <typename T>\nclass buffer {\n public:\n  T* data() { return ptr_; }\n private:\n  T* ptr_;\n};\n}\n"
    as_c = chunk_text(text, "c", path="src/x.c")
    header = chunk_text(text, "c", path="include/fmt/core.h")
    assert as_c.had_errors and not header.had_errors
    assert {(c.language, c.kind, c.name) for c in header.chunks} == {
        ("cpp", "class", "buffer"), ("cpp", "method", "buffer.data")}


# --- JavaScript functions that are assigned -------------------------------------------------------

JS = """\
var res = Object.create(http.ServerResponse.prototype);

/** Send a response. */
res.send = function send(body) {
  return this.end(body);
};

module.exports = function parseHeaders(headers) {
  return {};
};

exports.trim = (s) => s.trim();

module.exports.helpers = {
  first() { return 1; },
  second: function () { return 2; },
  third: (x) => x,
};
"""


def test_assigned_javascript_functions_are_chunks():
    result = chunk_text(JS, "javascript")
    assert [(c.kind, c.name, c.start_line) for c in result.chunks] == [
        ("method", "res.send", 4), ("method", "module.exports", 8), ("method", "exports.trim", 12),
        ("method", "module.exports.helpers.first", 15), ("method", "module.exports.helpers.second", 16),
        ("method", "module.exports.helpers.third", 17),
    ]
    send = result.chunks[0]
    assert send.docstring == "Send a response." and send.code.endswith("};")
    default = chunk_text("export default (x) => {\n  return x;\n};\n", "typescript").chunks
    assert [(c.kind, c.name) for c in default] == [("function", "default")]


# --- chunks that cover the file ---------------------------------------------------------------------

PY = '''\
"""Routes of the shop app."""

import os
from flask import Flask

app = Flask(__name__)
ROUTES = {
    "/": "index",
    "/cart": "cart",
}


def index():
    return "hi"


class Cart:
    def add(self, item):
        pass


if __name__ == "__main__":
    app.run(port=int(os.environ.get("PORT", 8000)))
    print("started")
    app.logger.info("up")
'''


def test_cover_adds_module_code_and_one_file_summary():
    result = chunk_text(PY, "python", path="shop/routes.py", cover=True)
    assert [(c.kind, c.name, c.start_line, c.end_line) for c in result.chunks] == [
        ("file", "shop/routes.py", 1, 25),
        ("module", "routes.py:app", 1, 10),
        ("function", "index", 13, 14),
        ("class", "Cart", 17, 19),
        ("method", "Cart.add", 18, 19),
        ("module", "routes.py:app.run", 22, 25),
    ]
    summary = result.chunks[0]
    assert (summary.start_line, summary.end_line) == (1, 25)
    assert summary.code == "shop/routes.py\nRoutes of the shop app.\ndefines: index, Cart"
    assert summary.docstring == "Routes of the shop app."
    module = result.chunks[1]
    assert (module.start_line, module.end_line) == (1, 10) and "ROUTES = {" in module.code
    assert module.content_hash == hashlib.sha256(module.code.encode()).hexdigest()
    # Without cover, the definitions only, as before.
    assert [c.kind for c in chunk_text(PY, "python").chunks] == ["function", "class", "method"]


def test_trivial_module_code_is_left_out():
    text = "import os\nimport sys\nfrom x import y\n\n\ndef f():\n    return 1\n\n\nX = 1\n"
    result = chunk_text(text, "python", path="a.py", cover=True)
    assert [c.kind for c in result.chunks] == ["file", "function"]


def test_cover_on_a_language_without_grammar_and_on_empty_text():
    result = chunk_text(DART, "dart", path="lib/api.dart", cover=True)
    assert [c.kind for c in result.chunks] == ["file", "function", "function"]
    assert result.chunks[0].code == "lib/api.dart\ndefines: fetchUser, User"
    assert chunk_text("", "python", cover=True) == ChunkResult(chunks=[], had_errors=False)


def test_license_headers_are_not_the_summary():
    text = "// Copyright 2024 Acme. Licensed under the MIT License.\n\n// Package cache keeps recent values.\npackage cache\n"
    assert fallback.leading_comment(text.split("\n")) == "Package cache keeps recent values."


# --- the table --------------------------------------------------------------------------------------

def test_readme_holds_the_languages_table():
    assert languages_table() in README.read_text(encoding="utf-8")
    assert len(LANGUAGES) >= 25 and set(SPECS) == set(GRAMMAR_LANGUAGES)


# --- files with no extension: the #! line or a mode line tells ---------------------------------------


@pytest.mark.parametrize("head, language", [
    (b"#!/bin/bash\necho", "bash"),
    (b"#!/bin/sh\n", "bash"),
    (b"#!/usr/bin/env python3\n", "python"),
    (b"#!/usr/bin/python3.11\n", "python"),
    (b"#!/usr/bin/env -S node --no-warnings\n", "javascript"),
    (b"# ssh(1) completion   -*- shell-script -*-\n_ssh() {\n", "bash"),
    (b"# vim: ft=sh\n", "bash"),
    (b"#!/usr/bin/awk -f\n", None),
    (b"Permission is hereby granted\n", None),
])
def test_language_for_head(head, language):
    from codesearch.languages import language_for_head

    assert language_for_head(head) == language


def test_scripts_without_an_extension_are_walked_and_chunked(tmp_path):
    from codesearch.files import read_source, walk

    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "deploy").write_text("#!/bin/sh\ndeploy() {\n  echo deploying\n}\ndeploy\n", encoding="utf-8")
    (tmp_path / "completions").mkdir()
    (tmp_path / "completions" / "ssh").write_text(
        "# ssh(1) completion   -*- shell-script -*-\n_ssh() {\n  COMPREPLY=()\n}\ncomplete -F _ssh ssh\n", encoding="utf-8")
    (tmp_path / "LICENSE").write_text("MIT License\n", encoding="utf-8")
    (tmp_path / "blob").write_bytes(b"\x7fELF\x02\x01\x01\0\0\0")
    result = walk(tmp_path)
    assert [(f.path, f.language) for f in result.files] == [("bin/deploy", "bash"), ("completions/ssh", "bash")]
    names = {c.name for f in result.files for c in chunk_text(read_source(f)[0], f.language, f.path).chunks}
    assert {"deploy", "_ssh"} <= names
    assert [f.path for f in walk(tmp_path, languages=["python"]).files] == []


def test_a_header_is_kept_when_cpp_is_asked_for(tmp_path):
    from codesearch.files import walk

    (tmp_path / "a.h").write_text("namespace n { class A { public: int f(); }; }\n", encoding="utf-8")
    assert [f.path for f in walk(tmp_path, languages=["cpp"]).files] == ["a.h"]
