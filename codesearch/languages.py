"""Per-language tables for chunking: which Tree-Sitter node types are functions, classes and scopes.

chunking.py holds the one walker that reads these tables; adding a language means adding a
grammar here and a `LanguageSpec`, not new walking code. Node type names come from each
grammar's node-types.json (the wheels pinned in pyproject.toml).
"""

from __future__ import annotations

import importlib
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
)
_JS_COMMON = dict(
    functions=_types("function_declaration", "generator_function_declaration", "method_definition"),
    conditional=_JS_CONDITIONAL,
    wrappers=_types("export_statement", "lexical_declaration", "variable_declaration"),
    decorators=_types("decorator"),
    body_paths=_table(
        variable_declarator=("value", "body"),
        field_definition=("value", "body"),
        public_field_definition=("value", "body"),
    ),
    name_fields=_table(field_definition="property"),
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
})

LANGUAGES: tuple[str, ...] = tuple(SPECS)

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
    ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".hxx": "cpp",
    ".cs": "csharp",
})


def language_for_path(path: str) -> str | None:
    """The language of a file by its extension (`.h` counts as C), or None if unsupported."""
    return _EXTENSIONS.get(PurePosixPath(path.replace("\\", "/")).suffix.lower())


@cache
def grammar(language: str) -> Language:
    """The Tree-Sitter grammar of a language name from LANGUAGES (loaded once; Language is immutable)."""
    spec = SPECS[language]
    return Language(getattr(importlib.import_module(spec.module), spec.entry)())
