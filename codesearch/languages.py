"""Per-language tables for chunking: which Tree-Sitter node types are functions, classes and scopes.

chunking.py holds the one walker that reads these tables; adding a language means adding a
grammar here and a `LanguageSpec`, not new walking code. Node type names come from each
grammar's node-types.json (the wheels pinned in pyproject.toml). Languages without a grammar
(`FALLBACK`) are cut into blocks of lines by codesearch.fallback, and so is a language whose
grammar does not load. README.md's "Languages" table is `languages_table()` (a test checks).
"""

from __future__ import annotations

import importlib
import re
import warnings
from dataclasses import dataclass, field
from functools import cache
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import Mapping

from tree_sitter import Language


@dataclass(frozen=True)
class LanguageSpec:
    """What counts as a definition in one grammar.

    A node type in `functions` is a function (or a method, when inside a class or scope); in
    `classes` a class-like type that is emitted and qualifies the names of its members; in
    `scopes` a block that only qualifies (a Rust `impl`). `conditional` maps a node type to rules
    (role, field, types): the node plays the first role whose child in `field` has one of the
    types (`const f = () => 1` is a function, `type P struct {...}` a class, `type ID int` nothing).
    A field written "@a|b" means the first named child of type a or b, for grammars that name
    no field there; "*" is any named child in `conditional`, the first one in `body_paths`.
    """

    module: str                                   # the grammar wheel's module
    entry: str = "language"                       # its function returning the grammar
    functions: frozenset[str] = frozenset()
    classes: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    conditional: Mapping[str, tuple[tuple[str, str, frozenset[str]], ...]] = field(default_factory=dict)
    # Parents that wrap exactly one definition and belong to its span (decorators, `export`).
    wrappers: frozenset[str] = frozenset()
    # Node types that sit between a doc comment and its definition and are not in the signature.
    decorators: frozenset[str] = frozenset()
    comments: frozenset[str] = frozenset({"comment"})
    # Functions skipped when they have no body (declarations such as `void f();`); classes
    # always need a body (`struct point p;` is not a class definition).
    body_required: frozenset[str] = frozenset()
    # Where the body is, as a field path from the definition ("*" is the first named child);
    # default ("body",). The signature is the text before it.
    body_paths: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Field holding the name, when it is not "name".
    name_fields: Mapping[str, str] = field(default_factory=dict)
    # Names come from C-style declarators (`int *Foo::bar(int)` -> "Foo.bar").
    declarator_names: bool = False
    # Node types a name node is searched for when it has children (`impl<T> Wrapper<T>` -> Wrapper).
    name_types: frozenset[str] = frozenset({"type_identifier"})
    # Definitions whose name is not in the source (Swift `init`, `export default`).
    fixed_names: Mapping[str, str] = field(default_factory=dict)
    # Calls that define (Elixir `def f(x) do ... end`): the call's target text -> role.
    calls: Mapping[str, str] = field(default_factory=dict)
    # Equations or clauses of one function written one after another (Haskell, Elixir): one chunk.
    merge_clauses: bool = False


def _types(*names: str) -> frozenset[str]:
    return frozenset(names)


def _table(**entries: object) -> Mapping:
    return MappingProxyType(dict(entries))


_JS_FUNCTION_VALUES = _types("arrow_function", "function_expression", "function", "generator_function")
_JS_CONDITIONAL = _table(
    # `const api = { get() {} }` qualifies its methods as api.get
    variable_declarator=(("function", "value", _JS_FUNCTION_VALUES), ("scope", "value", _types("object"))),
    field_definition=(("function", "value", _JS_FUNCTION_VALUES),),
    public_field_definition=(("function", "value", _JS_FUNCTION_VALUES),),
    # `res.send = function send() {}`, `exports.x = () => {}`; `module.exports = { a() {} }` qualifies
    assignment_expression=(("function", "right", _JS_FUNCTION_VALUES), ("scope", "right", _types("object"))),
    pair=(("function", "value", _JS_FUNCTION_VALUES), ("scope", "value", _types("object"))),
    export_statement=(("function", "value", _JS_FUNCTION_VALUES),),  # `export default (x) => {}`
)
_JS_COMMON = dict(
    functions=_types("function_declaration", "generator_function_declaration", "method_definition"),
    conditional=_JS_CONDITIONAL,
    wrappers=_types("export_statement", "lexical_declaration", "variable_declaration", "expression_statement"),
    decorators=_types("decorator"),
    body_paths=_table(
        variable_declarator=("value", "body"),
        field_definition=("value", "body"),
        public_field_definition=("value", "body"),
        assignment_expression=("right", "body"),
        pair=("value", "body"),
        export_statement=("value", "body"),
    ),
    name_fields=_table(field_definition="property", assignment_expression="left", pair="key"),
    fixed_names=_table(export_statement="default"),
)
_TS_CLASSES = _types(
    "class_declaration", "abstract_class_declaration", "class", "interface_declaration", "enum_declaration"
)
_C_FAMILY = dict(
    functions=_types("function_definition"),
    body_required=_types("function_definition"),
    wrappers=_types("type_definition", "template_declaration"),
    declarator_names=True,
)

SPECS: Mapping[str, LanguageSpec] = MappingProxyType({
    "python": LanguageSpec(
        module="tree_sitter_python",
        functions=_types("function_definition"),
        classes=_types("class_definition"),
        wrappers=_types("decorated_definition"),
        decorators=_types("decorator"),
    ),
    "javascript": LanguageSpec(
        module="tree_sitter_javascript", classes=_types("class_declaration", "class"), **_JS_COMMON
    ),
    "typescript": LanguageSpec(
        module="tree_sitter_typescript", entry="language_typescript", classes=_TS_CLASSES, **_JS_COMMON
    ),
    "tsx": LanguageSpec(
        module="tree_sitter_typescript", entry="language_tsx", classes=_TS_CLASSES, **_JS_COMMON
    ),
    "go": LanguageSpec(
        module="tree_sitter_go",
        functions=_types("function_declaration", "method_declaration"),
        conditional=_table(type_spec=(("class", "type", _types("struct_type", "interface_type")),)),
        wrappers=_types("type_declaration"),
        body_paths=_table(type_spec=("type", "*")),
    ),
    "java": LanguageSpec(
        module="tree_sitter_java",
        functions=_types("method_declaration", "constructor_declaration", "compact_constructor_declaration"),
        classes=_types(
            "class_declaration", "interface_declaration", "enum_declaration", "record_declaration",
            "annotation_type_declaration",
        ),
        comments=_types("line_comment", "block_comment"),
        body_required=_types("method_declaration"),
    ),
    "ruby": LanguageSpec(
        module="tree_sitter_ruby",
        functions=_types("method", "singleton_method"),
        classes=_types("class", "module"),
    ),
    "php": LanguageSpec(
        module="tree_sitter_php",
        entry="language_php",
        functions=_types("function_definition", "method_declaration"),
        classes=_types("class_declaration", "interface_declaration", "trait_declaration", "enum_declaration"),
        decorators=_types("attribute_list"),
        body_required=_types("method_declaration"),
    ),
    "rust": LanguageSpec(
        module="tree_sitter_rust",
        functions=_types("function_item"),
        classes=_types("struct_item", "enum_item", "union_item", "trait_item"),
        scopes=_types("impl_item"),
        decorators=_types("attribute_item"),
        comments=_types("line_comment", "block_comment"),
        name_fields=_table(impl_item="type"),
    ),
    "c": LanguageSpec(
        module="tree_sitter_c",
        classes=_types("struct_specifier", "union_specifier", "enum_specifier"),
        **_C_FAMILY,
    ),
    "cpp": LanguageSpec(
        module="tree_sitter_cpp",
        classes=_types("class_specifier", "struct_specifier", "union_specifier", "enum_specifier"),
        **_C_FAMILY,
    ),
    "csharp": LanguageSpec(
        module="tree_sitter_c_sharp",
        functions=_types(
            "method_declaration", "constructor_declaration", "destructor_declaration", "operator_declaration",
        ),
        classes=_types(
            "class_declaration", "interface_declaration", "struct_declaration", "record_declaration",
            "enum_declaration",
        ),
        decorators=_types("attribute_list"),
        body_required=_types("method_declaration", "operator_declaration"),
    ),
    "bash": LanguageSpec(module="tree_sitter_bash", functions=_types("function_definition")),
    "kotlin": LanguageSpec(
        module="tree_sitter_kotlin",
        functions=_types("function_declaration", "secondary_constructor"),
        classes=_types("class_declaration", "object_declaration"),
        comments=_types("line_comment", "block_comment"),
        decorators=_types("modifiers"),
        body_required=_types("function_declaration"),
        body_paths=_table(
            function_declaration=("@function_body",), secondary_constructor=("@block",),
            class_declaration=("@class_body|enum_class_body",), object_declaration=("@class_body",),
        ),
        fixed_names=_table(secondary_constructor="constructor"),
    ),
    "lua": LanguageSpec(module="tree_sitter_lua", functions=_types("function_declaration")),
    "scala": LanguageSpec(
        module="tree_sitter_scala",
        functions=_types("function_definition"),
        classes=_types("class_definition", "object_definition", "trait_definition", "enum_definition"),
        comments=_types("comment", "block_comment"),
        decorators=_types("annotation"),
    ),
    "swift": LanguageSpec(
        module="tree_sitter_swift",
        functions=_types("function_declaration", "init_declaration", "deinit_declaration"),
        classes=_types("class_declaration", "protocol_declaration"),
        comments=_types("comment", "multiline_comment"),
        decorators=_types("attribute", "modifiers"),
        body_required=_types("function_declaration"),
        fixed_names=_table(init_declaration="init", deinit_declaration="deinit"),
    ),
    "zig": LanguageSpec(
        module="tree_sitter_zig",
        functions=_types("function_declaration"),
        # `const Point = struct { ... };`
        conditional=_table(variable_declaration=(
            ("class", "*", _types("struct_declaration", "enum_declaration", "union_declaration")),
        )),
        body_required=_types("function_declaration"),
        body_paths=_table(variable_declaration=("@struct_declaration|enum_declaration|union_declaration",)),
        name_fields=_table(variable_declaration="@identifier"),
    ),
    "elixir": LanguageSpec(
        module="tree_sitter_elixir",
        calls=_table(**{
            name: "function" for name in (
                "def", "defp", "defmacro", "defmacrop", "defguard", "defguardp", "defdelegate", "defn", "defnp",
            )
        }, **{name: "class" for name in ("defmodule", "defprotocol", "defimpl")}),
        body_paths=_table(call=("@do_block",)),
        merge_clauses=True,
    ),
    "haskell": LanguageSpec(
        module="tree_sitter_haskell",
        # A type signature and the equations after it are one chunk (merge_clauses).
        functions=_types("function", "signature", "bind"),
        classes=_types("class", "instance", "data_type", "newtype"),
        body_paths=_table(
            function=("match",), bind=("match",), data_type=("constructors",),
            newtype=("constructor",), **{"class": ("declarations",), "instance": ("declarations",)},
        ),
        comments=_types("comment", "haddock"),
        name_types=_types("variable", "name"),
        merge_clauses=True,
    ),
    "objc": LanguageSpec(
        module="tree_sitter_objc",
        functions=_types("function_definition", "method_definition"),
        classes=_types("class_implementation", "struct_specifier", "enum_specifier"),
        body_required=_types("function_definition"),
        wrappers=_types("type_definition"),
        body_paths=_table(
            method_definition=("@compound_statement",), class_implementation=("@implementation_definition",),
        ),
        name_fields=_table(method_definition="@identifier", class_implementation="@identifier"),
        declarator_names=True,
    ),
    "julia": LanguageSpec(
        module="tree_sitter_julia",
        functions=_types("function_definition", "macro_definition"),
        classes=_types("struct_definition", "abstract_definition"),
        comments=_types("line_comment", "block_comment"),
        body_paths=_table(struct_definition=("@type_head",), abstract_definition=("@type_head",)),
        name_fields=_table(
            function_definition="@signature", macro_definition="@signature",
            struct_definition="@type_head", abstract_definition="@type_head",
        ),
        name_types=_types("identifier"),
    ),
    "ocaml": LanguageSpec(
        module="tree_sitter_ocaml",
        entry="language_ocaml",
        # `let add a b = ...` and `let f = fun x -> ...` are functions; `let x = 1` is not.
        conditional=_table(let_binding=(
            ("function", "*", _types("parameter")),
            ("function", "body", _types("fun_expression", "function_expression")),
        )),
        classes=_types("module_binding", "type_binding", "class_binding"),
        wrappers=_types("value_definition", "module_definition", "type_definition", "class_definition"),
        body_paths=_table(let_binding=("body",), module_binding=("body",), type_binding=("body",)),
        name_fields=_table(let_binding="pattern", module_binding="@module_name", type_binding="name"),
    ),
    "perl": LanguageSpec(
        module="tree_sitter_perl",
        functions=_types("subroutine_declaration_statement"),
        body_required=_types("subroutine_declaration_statement"),
    ),
})

# Languages without a grammar here: their text is cut into blocks of lines (codesearch.fallback),
# each named after its first line that looks like a definition. Name -> (extensions and file names).
FALLBACK: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "dart": (".dart",),
    "fsharp": (".fs", ".fsi", ".fsx"),
    "r": (".r",),
    "groovy": (".groovy", ".gradle"),
    "clojure": (".clj", ".cljs", ".cljc"),
    "erlang": (".erl", ".hrl"),
    "powershell": (".ps1", ".psm1"),
    "sql": (".sql",),
    "vue": (".vue",),
    "svelte": (".svelte",),
    "proto": (".proto",),
    "terraform": (".tf",),
    "makefile": (".mk", "Makefile", "GNUmakefile", "makefile"),
    "dockerfile": (".dockerfile", "Dockerfile", "Containerfile"),
})

GRAMMAR_LANGUAGES: tuple[str, ...] = tuple(SPECS)
LANGUAGES: tuple[str, ...] = GRAMMAR_LANGUAGES + tuple(FALLBACK)

_EXTENSIONS: Mapping[str, str] = MappingProxyType({
    ".py": "python", ".pyi": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".java": "java",
    ".rb": "ruby",
    ".php": "php",
    ".rs": "rust",
    ".c": "c", ".h": "c",  # a .h file's language is decided by its text: `header_language`
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".hxx": "cpp",
    ".cs": "csharp",
    ".sh": "bash", ".bash": "bash", ".zsh": "bash", ".ksh": "bash",
    ".kt": "kotlin", ".kts": "kotlin",
    ".lua": "lua",
    ".scala": "scala", ".sc": "scala",
    ".swift": "swift",
    ".zig": "zig",
    ".ex": "elixir", ".exs": "elixir",
    ".hs": "haskell",
    ".m": "objc", ".mm": "objc",
    ".jl": "julia",
    ".ml": "ocaml",
    ".pl": "perl", ".pm": "perl",
    **{name: language for language, names in FALLBACK.items() for name in names if name.startswith(".")},
})
_FILE_NAMES: Mapping[str, str] = MappingProxyType(
    {name: language for language, names in FALLBACK.items() for name in names if not name.startswith(".")}
)


def language_for_path(path: str) -> str | None:
    """The language of a file by its extension or name (`.h` counts as C until its text is read:
    `header_language`), or None when it is not a code file."""
    name = PurePosixPath(path.replace("\\", "/")).name
    return _FILE_NAMES.get(name) or _EXTENSIONS.get(PurePosixPath(name).suffix.lower())


# Interpreters named on a script's `#!` line, and the modes Emacs (`-*- mode -*-`) and Vim
# (`vim: ft=...`) lines name, for files with no extension (`bin/deploy`, bash-completion's scripts).
_INTERPRETERS: Mapping[str, str] = MappingProxyType({
    "sh": "bash", "bash": "bash", "dash": "bash", "zsh": "bash", "ksh": "bash", "python": "python",
    "python3": "python", "python2": "python", "ruby": "ruby", "node": "javascript", "nodejs": "javascript",
    "perl": "perl", "php": "php", "lua": "lua", "elixir": "elixir", "julia": "julia", "deno": "typescript",
    "ts-node": "typescript", "runhaskell": "haskell", "scala": "scala", "kotlin": "kotlin", "swift": "swift",
})
_MODES: Mapping[str, str] = MappingProxyType({
    "shell-script": "bash", "sh": "bash", "bash": "bash", "python": "python", "ruby": "ruby", "perl": "perl",
    "cperl": "perl", "javascript": "javascript", "js": "javascript", "lua": "lua", "php": "php",
})
_SHEBANG = re.compile(rb"\A#!\s*(?:\S*/)?(?:env\s+(?:-\S+\s+)*)?([A-Za-z][\w.+-]*)")
_MODE_LINE = re.compile(rb"-\*-\s*(?:mode:\s*)?([\w+-]+)\s*;?[^\n]*?-\*-|\bvim?:[^\n]*\b(?:ft|filetype)=([\w+-]+)")


def language_for_head(head: bytes) -> str | None:
    """The language of a file with no extension from its first lines: the interpreter its `#!` line
    names (`#!/usr/bin/env python3`, `#!/bin/sh`), else an Emacs or Vim mode line; None otherwise."""
    found = _SHEBANG.match(head)
    if found:
        name = found.group(1).decode("ascii", "replace").lower()
        return _INTERPRETERS.get(name) or _INTERPRETERS.get(name.rstrip("0123456789.").rstrip("-"))
    top = b"\n".join(head.split(b"\n", 3)[:3])
    mode = _MODE_LINE.search(top) or _MODE_LINE.search(head[-512:])
    if mode:
        return _MODES.get((mode.group(1) or mode.group(2)).decode("ascii", "replace").lower())
    return None


_OBJC_HEADER = re.compile(rb"^\s*@(?:interface|protocol|implementation)\b|^\s*#import\b", re.M)
_CPP_HEADER = re.compile(
    rb"^\s*(?:class\s+\w+\s*[:{]|namespace\b[^;]*\{?\s*$|template\s*<|(?:public|private|protected)\s*:"
    rb"|#include\s*<(?:string|vector|map|memory|iostream|utility|cstdint|cstddef|algorithm|functional"
    rb"|type_traits|optional|unordered_map|array|atomic|mutex|thread|chrono|cstring|cstdlib|limits|tuple)>)"
    rb"|std::|\bconstexpr\b|\bnullptr\b|\boverride\b|\btypename\b",
    re.M,
)


def header_language(text: str) -> str:
    """A `.h` file's language read from its text: "objc" (`@interface`, `#import`), "cpp" (`class X {`,
    `namespace`, `template<`, `public:`, `std::`, `<vector>`-style includes), else "c"."""
    head = text.encode("utf-8", "surrogatepass")[:200_000]
    if _OBJC_HEADER.search(head):
        return "objc"
    return "cpp" if _CPP_HEADER.search(head) else "c"


@cache
def grammar(language: str) -> Language | None:
    """The Tree-Sitter grammar of a language name from LANGUAGES (loaded once; Language is immutable),
    or None when it has none here or its wheel does not load (then the fallback chunker cuts it)."""
    spec = SPECS.get(language)
    if spec is None:
        return None
    try:
        with warnings.catch_warnings():  # tree-sitter-perl still returns an int, which tree-sitter 0.26 deprecates
            warnings.simplefilter("ignore", DeprecationWarning)
            return Language(getattr(importlib.import_module(spec.module), spec.entry)())
    except (ImportError, AttributeError, ValueError, TypeError, OSError):
        return None


def languages_table() -> str:
    """The Markdown table of README.md's "Languages" section, made from these tables."""
    rows = ["| language | files | definitions chunked | grammar |", "| --- | --- | --- | --- |"]
    names = {lang: [] for lang in LANGUAGES}
    for ext, lang in _EXTENSIONS.items():
        names[lang].append(f"`{ext}`")
    for file_name, lang in _FILE_NAMES.items():
        names[lang].append(f"`{file_name}`")
    for lang in LANGUAGES:
        spec = SPECS.get(lang)
        if spec is None or grammar(lang) is None:
            kinds, source = "blocks of lines, named by their first definition-like line", "none (fallback)"
        else:
            kinds = ", ".join(f"`{k}`" for k in sorted(
                spec.functions | spec.classes | spec.scopes | set(spec.conditional) | set(spec.calls)
            ))
            source = f"`{spec.module.replace('_', '-')}`"
        rows.append(f"| {lang} | {' '.join(names[lang])} | {kinds} | {source} |")
    return "\n".join(rows) + "\n"
