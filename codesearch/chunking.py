"""What is a function: split source text into function, method and class chunks with Tree-Sitter.

With `cover=True` the chunks also cover the rest of the file: the module-level code between
definitions (kind "module") and one short summary of the file (kind "file": path, opening comment,
top-level names; lines 1 to the last). A language without a grammar is cut into blocks of lines
(codesearch.fallback), and a `.h` file is read as C, C++ or Objective-C by its text.

One walker serves every language; what differs (node types, where names and bodies are) lives
in the tables of `codesearch.languages`. The walk descends into classes and scopes, emits each
definition it meets, and never descends into a function: nested functions stay part of their
parent's code. Tree-Sitter works on UTF-8 bytes, so every offset is a byte offset into
`text.encode()`; lines are 1-based and count "\\n" only, so CRLF files number as editors do.

Thread safety: `Parser` objects are not thread-safe, so each thread keeps its own (one per language).

Pathological text (a file of quotes, random punctuation) can keep Tree-Sitter busy for tens of
seconds; each parse has a CPU-time allowance, and a file that runs past it is skipped whole.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import re
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tree_sitter import Node, Parser, Point, Tree

from codesearch import fallback
from codesearch.files import SkipFile
from codesearch.languages import (
    GRAMMAR_LANGUAGES,
    LANGUAGES,
    SPECS,
    LanguageSpec,
    grammar,
    header_language,
    language_for_path,
)

__all__ = [
    "GRAMMAR_LANGUAGES", "LANGUAGES", "Chunk", "ChunkResult", "chunk_text", "code_without_docstring", "docstring_as_line",
    "language_for_path", "rewrite_docstring", "string_literal_parts",
]

# The CPU time a parse may take: PARSE_SECONDS plus PARSE_SECONDS_PER_MB for each megabyte of source.
# Real code parses at 0.3-0.5 s/MB, the slowest real file measured (a C header) at 4.3 s/MB; garbage
# runs at 3-22 s/MB (a 1 MB file of quotes: 22 s). CPU time of the parsing thread, not wall time,
# so that a busy machine (the daemon runs niced) does not time out ordinary files.
DEFINITION_KINDS = ("function", "method", "class")  # the other kinds, with cover=True: "module", "file"
PARSE_SECONDS = 2.0
PARSE_SECONDS_PER_MB = 10.0
_READ_BYTES = 4096  # the parser reads the source in slices this size; the allowance is checked per slice


@dataclass(frozen=True)
class Chunk:
    """One function, method or class (or module-level code, or a file's summary), with where it is
    and what it says about itself."""

    path: str          # repo-relative posix path, as given by the caller
    language: str      # one of LANGUAGES
    kind: str          # "function" | "method" | "class"; with cover=True also "module" | "file"
    name: str          # qualified name, e.g. "Parser.parse_json"; a "file" chunk's is its path
    signature: str     # declaration up to the body, whitespace-collapsed
    docstring: str     # Python docstring or the comment block right above, markers stripped; "" if none
    start_line: int    # 1-based, inclusive; decorators (Python) and annotations (Java) included
    end_line: int      # 1-based, inclusive
    code: str          # source of start_line..end_line, from the line's indentation to the node's end;
                       # a "file" chunk's is its summary (fallback.file_summary)
    content_hash: str  # sha256 hex of `code` only, so a moved function keeps its hash


@dataclass(frozen=True)
class ChunkResult:
    """The chunks of one text, and whether its parse tree had ERROR/MISSING nodes.

    Chunks whose own node contains an error are dropped; the clean ones are kept.
    """

    chunks: list[Chunk]
    had_errors: bool


@dataclass(frozen=True)
class _Definition:
    """A definition found by the walk, before it is turned into text."""

    node: Node
    kind: str
    name: str


_threads = threading.local()


def _parser(language: str) -> Parser:
    if not hasattr(_threads, "parsers"):
        _threads.parsers = {}
    parsers: dict[str, Parser] = _threads.parsers
    if language not in parsers:
        found = grammar(language)
        assert found is not None, language
        parsers[language] = Parser(found)
    return parsers[language]


def chunk_text(text: str, language: str, path: str = "", *, cover: bool = False) -> ChunkResult:
    """Split `text`, source in `language`, into chunks; with `cover`, also its module-level code and
    one summary chunk for the file (see the module's docstring).

    A `.h` path read as "c" is chunked as the language its text shows (`header_language`), and its
    chunks say so. Raises SkipFile("parse timeout") when parsing runs past its allowance (pathological
    text), ValueError for a language name not in LANGUAGES, and nothing else on any text.
    """
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}; expected one of {', '.join(LANGUAGES)}")
    if language == "c" and path.lower().endswith(".h"):
        language = header_language(text)
    lines = text.split("\n")
    if grammar(language) is None:
        chunks, had_errors = _block_chunks(lines, language, path), False
    else:
        spec = SPECS[language]
        source = text.encode("utf-8", "surrogatepass")
        root = _parse(_parser(language), source, path).root_node
        definitions, comments = _walk(root, spec, source)
        chunks = []
        for definition in definitions:
            chunk = _to_chunk(definition, spec, source, comments, language, path)
            if chunk is not None:
                chunks.append(chunk)
        chunks.sort(key=lambda c: (c.start_line, -c.end_line))
        if spec.merge_clauses:
            chunks = _merge_clauses(chunks, lines)
        had_errors = root.has_error
    if cover and text.strip():
        chunks = _cover(chunks, lines, language, path)
    return ChunkResult(chunks=chunks, had_errors=had_errors)


def _text_chunk(lines: list[str], block: fallback.Block, kind: str, name: str, language: str, path: str,
                docstring: str = "") -> Chunk:
    """A chunk of whole lines, block.start_line..block.end_line."""
    code = "\n".join(lines[block.start_line - 1 : block.end_line]).rstrip("\r")
    return Chunk(path, language, kind, name, block.heading, docstring, block.start_line, block.end_line, code,
                 hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest())


def _place(path: str, line: int) -> str:
    return f"{path.rsplit('/', 1)[-1] or '(text)'}:{line}"


def _block_chunks(lines: list[str], language: str, path: str) -> list[Chunk]:
    """A file without a grammar: its blocks, each a "function" when a line names it, else "module"."""
    return [
        _text_chunk(lines, b, "function" if b.name else "module", b.name or _place(path, b.start_line), language, path)
        for b in fallback.blocks(lines)
    ]


def _merge_clauses(chunks: list[Chunk], lines: list[str]) -> list[Chunk]:
    """One chunk for consecutive definitions of one name (a Haskell signature and its equations,
    Elixir's clauses `def f(0)`, `def f(n)`), when only blank or comment lines lie between them."""
    out: list[Chunk] = []
    for chunk in chunks:
        last = out[-1] if out else None
        if (last is not None and (last.kind, last.name) == (chunk.kind, chunk.name)
                and chunk.start_line > last.end_line
                and not any(x.strip() and not fallback.is_comment(x) for x in lines[last.end_line : chunk.start_line - 1])):
            newline = "\r\n" if lines[last.end_line - 1].endswith("\r") else "\n"
            code = newline.join([last.code, *lines[last.end_line : chunk.start_line - 1], chunk.code])
            out[-1] = dataclasses.replace(
                last, end_line=chunk.end_line, code=code,
                content_hash=hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest(),
            )
        else:
            out.append(chunk)
    return out


def _cover(chunks: list[Chunk], lines: list[str], language: str, path: str) -> list[Chunk]:
    """`chunks` plus the module-level code outside them and the file's summary chunk."""
    top: list[Chunk] = []  # definitions not inside another one
    for chunk in chunks:
        if not top or chunk.start_line > top[-1].end_line:
            top.append(chunk)
    module = [
        _text_chunk(lines, b, "module", f"{_place(path, b.start_line).rsplit(':', 1)[0]}:{b.name or b.start_line}",
                    language, path)
        for b in fallback.module_blocks(lines, [(c.start_line, c.end_line) for c in top])
    ]
    names = [c.name for c in top if c.kind != "module"]
    summary = fallback.file_summary(path, lines, names)
    last_line = len(lines) - (1 if len(lines) > 1 and not lines[-1].strip() else 0)
    doc = fallback.leading_comment(lines)
    file_chunk = Chunk(path, language, "file", path or "(text)", path or "(text)", doc, 1, max(last_line, 1), summary,
                       hashlib.sha256(summary.encode("utf-8", "surrogatepass")).hexdigest())
    merged = sorted(chunks + module, key=lambda c: (c.start_line, -c.end_line))
    return [file_chunk, *merged]


def _parse(parser: Parser, source: bytes, path: str) -> Tree:
    """Parse `source`, or raise SkipFile("parse timeout") once it has used up its CPU-time allowance.

    py-tree-sitter has no timeout any more, but it can read the source through a callback, and an
    empty slice ends the input: the callback checks the clock, and a cut parse is never used.
    """
    allowance = PARSE_SECONDS + PARSE_SECONDS_PER_MB * len(source) / 1e6
    deadline = time.thread_time() + allowance
    cut = False

    def read(offset: int, _point: Point) -> bytes:
        nonlocal cut
        if offset < len(source) and time.thread_time() > deadline:
            cut = True
            return b""
        return source[offset : offset + _READ_BYTES]

    tree = parser.parse(read)
    if cut:
        raise SkipFile("parse timeout", path)
    return tree


def code_without_docstring(chunk: Chunk) -> str:
    """The chunk's code without its Python docstring statement; other languages' code as is.

    Doc comments of other languages sit above the definition, outside `code`, so there is
    nothing to remove. Used by the trainer to build (docstring, code) pairs.
    """
    if chunk.language != "python":
        return chunk.code
    return rewrite_docstring(chunk.code, lambda literal: "")


def docstring_as_line(code: str, *, only_if_clean: bool = False) -> str:
    """Python code whose docstring is one line of plain text, without its quotes, where it stood.

    What a model folder with the "docstring-line" code view embeds (codesearch.model): models trained
    on (first docstring sentence, function) pairs read a quoted docstring as the query itself, so a
    docstring that does not repeat the query pulls the function away from it. Code without a
    docstring comes back as it is; so does code that does not parse as Python when `only_if_clean`
    (text whose language is not known).
    """
    return rewrite_docstring(code, lambda literal: " ".join(_docstring_text(literal).split()), only_if_clean)


def _docstring_text(literal: str) -> str:
    """What a string literal says: its text without the prefix and the quotes."""
    parts = string_literal_parts(literal)
    return parts[2] if parts else literal


_STRING_LITERAL = re.compile(r"([a-zA-Z]*)(\"\"\"|'''|\"|')(.*)\2", re.DOTALL)


def string_literal_parts(literal: str) -> tuple[str, str, str] | None:
    """A Python string literal's prefix, quotes and text, as written; None for anything else."""
    match = _STRING_LITERAL.fullmatch(literal)
    return match.groups() if match else None


def rewrite_docstring(code: str, replace: Callable[[str], str], only_if_clean: bool = False) -> str:
    """`code` (one Python definition, maybe indented) with its docstring statement replaced by
    `replace(literal)`, the string literal as written; a line left empty is dropped. Unchanged
    without a docstring, and when `only_if_clean` and `code` does not parse as Python."""
    text = code.replace("\r\n", "\n")  # textwrap.dedent sees "\r" as text, not indentation
    dedented = textwrap.dedent(text)
    source = dedented.encode("utf-8", "surrogatepass")
    root = _parser("python").parse(source).root_node
    if only_if_clean and root.has_error:
        return code
    definition = next((c for c in root.named_children if c.type != "comment"), None)
    if definition is not None and definition.type == "decorated_definition":
        definition = definition.child_by_field_name("definition")
    statement = _python_docstring_node(definition) if definition is not None else None
    if statement is None:
        return code
    replacement = replace(_text(source, statement.named_children[0]))
    # Map the statement's (row, column) in the dedented text back to the original lines.
    lines, dedented_lines = text.split("\n"), dedented.split("\n")
    (row0, col0), (row1, col1) = _row_col(source, statement.start_byte), _row_col(source, statement.end_byte)
    before = lines[row0][: col0 + len(lines[row0]) - len(dedented_lines[row0])]
    after = lines[row1][col1 + len(lines[row1]) - len(dedented_lines[row1]) :]
    after = after.strip().removeprefix(";").strip()  # `def f(): """Doc."""; return 1`
    joined = (before + replacement if replacement else before.rstrip()) + (" " + after if after else "")
    kept = [joined] if joined.strip() else []
    result = "\n".join(lines[:row0] + kept + lines[row1 + 1 :])
    return result.replace("\n", "\r\n") if text != code else result


# --- the walk -------------------------------------------------------------------------------


def _walk(root: Node, spec: LanguageSpec, source: bytes) -> tuple[list[_Definition], dict[int, Node]]:
    """Definitions in the tree, and the whole-line comments seen, by the row they end on.

    Iterative, so a deeply nested tree cannot exhaust Python's recursion limit.
    """
    definitions: list[_Definition] = []
    comments: dict[int, Node] = {}
    stack: list[tuple[Node, tuple[str, ...]]] = [(root, ())]
    while stack:
        node, scope = stack.pop()
        if node.type in spec.comments:
            if _starts_line(source, node):
                comments.setdefault(_last_row(node), node)
            continue
        role = _role(node, spec, source)
        if role is not None:
            name = _name(node, spec, source)
            if name is None:
                continue  # an anonymous class or function: nothing to call it by
            if role == "function":
                if node.type not in spec.body_required or _body(node, spec) is not None:
                    qualified = ".".join(scope + (name,))
                    is_method = bool(scope) or "." in name
                    definitions.append(_Definition(node, "method" if is_method else "function", qualified))
                continue
            if role == "class" and _body(node, spec) is not None:
                definitions.append(_Definition(node, "class", ".".join(scope + (name,))))
            scope = scope + (name,)
        stack.extend((child, scope) for child in reversed(node.named_children))
    return definitions, comments


def _role(node: Node, spec: LanguageSpec, source: bytes) -> str | None:
    """The role a node plays: "function", "class", "scope", or None when it defines nothing."""
    kind = node.type
    if kind in spec.functions:
        return "function"
    if kind in spec.classes:
        return "class"
    if kind in spec.scopes:
        return "scope"
    for role, field, types in spec.conditional.get(kind, ()):
        if field == "*":
            if any(c.type in types for c in node.named_children):
                return role
            continue
        child = _child(node, field)
        if child is not None and child.type in types:
            return role
    if spec.calls and kind == "call":
        target = node.child_by_field_name("target")
        if target is not None and target.type == "identifier":
            return spec.calls.get(_text(source, target))
    return None


def _child(node: Node, key: str) -> Node | None:
    """The child in field `key`; "*" is the first named child, "@a|b" the first named child of type a or b."""
    if key == "*":
        return node.named_children[0] if node.named_child_count else None
    if key.startswith("@"):
        types = key[1:].split("|")
        return next((c for c in node.named_children if c.type in types), None)
    return node.child_by_field_name(key)


def _name(node: Node, spec: LanguageSpec, source: bytes) -> str | None:
    """The definition's name, qualified by what the syntax itself says (Go receiver, C++ `Foo::`)."""
    if spec.declarator_names and node.type == "function_definition":
        return _declarator_name(node, source)
    if node.type in spec.fixed_names:
        return spec.fixed_names[node.type]
    if spec.calls and node.type == "call":
        return _call_name(node, source)
    name_node = _child(node, spec.name_fields.get(node.type, "name"))
    if name_node is None:
        parent = node.parent  # `typedef struct {...} pair_t;` is named by its typedef
        declarator = parent.child_by_field_name("declarator") if parent is not None else None
        if parent is None or parent.type not in spec.wrappers or declarator is None:
            return None
        name_node = declarator
    if name_node.named_child_count:  # `impl<T> Wrapper<T>`, `template<> class Foo<int>`
        name_node = _first_of_type(name_node, spec.name_types) or name_node
    name = _clean_name(_text(source, name_node))
    receiver = node.child_by_field_name("receiver")  # Go: func (p *Point) Dist()
    if receiver is not None:
        receiver_type = _first_of_type(receiver, "type_identifier")
        if receiver_type is not None:
            name = f"{_text(source, receiver_type)}.{name}"
    return name or None


def _call_name(node: Node, source: bytes) -> str | None:
    """Elixir: `def add(a, b)` -> add, `def f(x) when x > 0` -> f, `defmodule A.B` -> A.B."""
    arguments = next((c for c in node.named_children if c.type == "arguments"), None)
    first = arguments.named_children[0] if arguments is not None and arguments.named_child_count else None
    for _ in range(4):
        if first is None:
            return None
        if first.type == "binary_operator":  # a guard: `f(x) when ...`
            first = first.child_by_field_name("left")
        elif first.type == "call":
            first = first.child_by_field_name("target")
        else:
            return _clean_name(_text(source, first)) or None
    return None


def _declarator_name(node: Node, source: bytes) -> str | None:
    """C/C++: follow the declarator chain (`*`, parentheses) down to the function's name."""
    declarator = node.child_by_field_name("declarator")
    for _ in range(64):
        if declarator is None:
            return None
        if declarator.type == "function_declarator":
            target = declarator.child_by_field_name("declarator")
            if target is None or target.type in ("parenthesized_declarator", "pointer_declarator"):
                declarator = target  # `int (*f(int))(int)`: the name is further in
                continue
            return _qualified(target, source) or None
        declarator = declarator.child_by_field_name("declarator") or (
            declarator.named_children[0] if declarator.named_child_count else None
        )
    return None


def _qualified(node: Node, source: bytes) -> str:
    """`Foo<T>::Inner::bar` -> "Foo.Inner.bar": scopes without template arguments, the name as written."""
    parts = []
    while node.type == "qualified_identifier":
        scope, node = node.child_by_field_name("scope"), node.child_by_field_name("name")
        if scope is not None:
            scope_name = scope.child_by_field_name("name") if scope.type == "template_type" else scope
            parts.append(_text(source, scope_name or scope))
        if node is None:
            return ".".join(parts)
    if node.type in ("template_function", "template_method"):
        node = node.child_by_field_name("name") or node
    return ".".join(parts + [_text(source, node)])


def _clean_name(name: str) -> str:
    """`Foo::bar` and Lua's `Parser:run` -> dotted; quotes of a string key dropped."""
    return "".join(name.split()).replace("::", ".").replace(":", ".").strip("'\"`")


def _first_of_type(node: Node, node_type: str | frozenset[str]) -> Node | None:
    """The first node of a type (or of one of the types) in a preorder walk of `node`'s subtree."""
    types = {node_type} if isinstance(node_type, str) else node_type
    stack = [node]
    while stack:
        current = stack.pop()
        if current.type in types:
            return current
        stack.extend(reversed(current.named_children))
    return None


def _body(node: Node, spec: LanguageSpec) -> Node | None:
    current: Node | None = node
    for field in spec.body_paths.get(node.type, ("body",)):
        current = _child(current, field)
        if current is None:
            return None
    return current


# --- from a definition to a chunk -------------------------------------------------------------


def _to_chunk(
    definition: _Definition,
    spec: LanguageSpec,
    source: bytes,
    comments: dict[int, Node],
    language: str,
    path: str,
) -> Chunk | None:
    span = _span(definition.node, spec, source)
    if span.has_error:
        return None
    start = span.start_byte
    if _starts_line(source, span):
        start -= span.start_point.column  # keep the indentation, so the code's columns are the file's
    code_bytes = source[start : span.end_byte].rstrip(b"\r\n")
    code = code_bytes.decode("utf-8", "replace")
    if not code.strip():
        return None
    start_line = span.start_point.row + 1
    docstring = _python_docstring(definition.node, source) if language == "python" else ""
    return Chunk(
        path=path,
        language=language,
        kind=definition.kind,
        name=definition.name,
        signature=_signature(definition.node, span, spec, source),
        docstring=docstring or _doc_comment(span, spec, source, comments),
        start_line=start_line,
        end_line=start_line + code_bytes.count(b"\n"),
        code=code,
        content_hash=hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest(),
    )


def _span(node: Node, spec: LanguageSpec, source: bytes) -> Node:
    """The node plus the wrappers that hold only it (decorators, `export`, `const f = ...`)."""
    while (parent := node.parent) is not None and parent.type in spec.wrappers:
        others = (c for c in parent.named_children if c != node)
        if any(_role(c, spec, source) in ("function", "class") for c in others):
            break  # `const a = () => 1, b = () => 2`: each declarator is its own chunk
        node = parent
    return node


def _signature(node: Node, span: Node, spec: LanguageSpec, source: bytes) -> str:
    """The declaration from its first keyword (decorators skipped) to the body, on one line."""
    skipped = spec.decorators | spec.comments
    first = next((c for c in span.children if c.type not in skipped), span)
    start = first.start_byte
    body = _body(node, spec)
    if body is not None and body.start_byte >= start:
        previous = body.prev_sibling
        while previous is not None and previous.type in spec.comments:
            previous = previous.prev_sibling
        end = previous.end_byte if previous is not None and previous.end_byte > start else body.start_byte
    else:
        newline = source.find(b"\n", start, span.end_byte)
        end = span.end_byte if newline < 0 else newline
    text = " ".join(source[start:end].decode("utf-8", "replace").split())
    return text.removesuffix("{").rstrip().removesuffix(";").rstrip()


def _python_docstring_node(definition: Node) -> Node | None:
    """The expression statement holding a Python function's or class's docstring, if any."""
    body = definition.child_by_field_name("body")
    if body is None:
        return None
    first = next((c for c in body.named_children if c.type != "comment"), None)
    if first is None or first.type != "expression_statement" or first.named_child_count != 1:
        return None
    return first if first.named_children[0].type == "string" else None


def _python_docstring(node: Node, source: bytes) -> str:
    statement = _python_docstring_node(node)
    if statement is None:
        return ""
    parts = string_literal_parts(_text(source, statement).replace("\r\n", "\n"))
    return inspect.cleandoc(parts[2]) if parts else ""


def _doc_comment(span: Node, spec: LanguageSpec, source: bytes, comments: dict[int, Node]) -> str:
    """The block of whole-line comments that ends on the line right above the definition.

    Attributes and decorators between the comment and the definition (`#[derive]`, `@Log()`) are skipped.
    """
    anchor = span
    while (previous := anchor.prev_named_sibling) is not None and previous.type in spec.decorators:
        anchor = previous
    block: list[Node] = []
    row = anchor.start_point.row - 1
    while (comment := comments.get(row)) is not None and comment.start_byte < anchor.start_byte:
        block.append(comment)
        row = comment.start_point.row - 1
    return _strip_comment_markers("\n".join(_text(source, c).rstrip("\r\n") for c in reversed(block)))


# An opening `/**` `(**`, a line marker `///` `//!` `//` `#` `--` (Lua, Haskell's `-- |`), or a block comment's leading `*`.
_COMMENT_MARKER = re.compile(r"^(?:/\*+!?|\(\*+|//[/!]?|#|--+(?: ?\|)?|\*(?!/))")


def _strip_comment_markers(text: str) -> str:
    """`/** ... */`, `///`, `//`, `#` comments -> their text, dedented, without C#'s <summary> tags."""
    lines = []
    for line in text.replace("\r", "").split("\n"):
        line = re.sub(r"\*+[/)]$", "", line.rstrip())
        bare = line.lstrip()
        if marker := _COMMENT_MARKER.match(bare):
            line = bare[marker.end() :]
            line = line[1:] if line.startswith(" ") else line
        lines.append(line.rstrip())
    doc = textwrap.dedent("\n".join(lines)).strip("\n")
    return re.sub(r"</?summary>", "", doc).strip()


# --- byte helpers -----------------------------------------------------------------------------


def _text(source: bytes, node: Node) -> str:
    return source[node.start_byte : node.end_byte].decode("utf-8", "replace")


def _starts_line(source: bytes, node: Node) -> bool:
    """Whether only indentation precedes the node on its line.

    Columns past 256 count as "no": deeper indentation does not occur in real code, and the
    cap keeps minified one-line files linear (each check would otherwise rescan the line).
    """
    start, column = node.start_byte, node.start_point.column
    return column <= 256 and not source[start - column : start].strip()


def _last_row(node: Node) -> int:
    """The row of the node's last character (Rust's `///` comments end after their newline)."""
    end = node.end_point
    return end.row - 1 if end.column == 0 and end.row > node.start_point.row else end.row


def _row_col(source: bytes, offset: int) -> tuple[int, int]:
    """(row, column in characters) of a byte offset."""
    before = source[:offset].decode("utf-8", "replace")
    return before.count("\n"), len(before) - before.rfind("\n") - 1
