"""Chunks without a grammar: blocks of lines, for languages codesearch has no Tree-Sitter grammar for.

A file is cut at blank lines into paragraphs; paragraphs are merged into blocks of up to
TARGET_LINES, a block ends before a paragraph that opens with a new definition, and a paragraph
longer than MAX_LINES is cut into windows. Each block is named after its first line that looks like
a definition (`fun x`, `def x`, `function x`, `x() {`, `x <- function(`, `CREATE TABLE x`, a make
target); a block with none is named after the file and its first line. The same cutting serves the
module-level code between definitions of languages that do have a grammar (codesearch.chunking).
Pure text functions: lines are 1-based and count "\\n" only, as in chunking.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TARGET_LINES = 50   # merged paragraphs stay under this (the model reads ~50 lines of code well)
MAX_LINES = 80      # a longer paragraph is cut into windows of TARGET_LINES
HEADING_CHARS = 200  # a block's signature: its naming line, cut (a minified line is no signature)

_MODIFIERS = (
    r"(?:(?:export|default|public|private|protected|internal|static|async|override|abstract|final|open|"
    r"local|pub|inline|sealed|data|suspend|global|extern|virtual|external|factory|const|unsafe)\s+)*"
)
_KEYWORD = re.compile(
    _MODIFIERS
    + r"(?:def|defp|defn|defmodule|defmacro|fun|func|function|fn|sub|proc|procedure|class|struct|interface|"
    r"trait|object|module|enum|type|record|macro|message|service|rpc|mixin|extension|typedef|let|val|var|"
    r"method|task|filter|workflow|configuration)\s+([A-Za-z_$][\w$.:-]*)"
)
_PATTERNS = (
    _KEYWORD,
    re.compile(r"([A-Za-z_.][\w.]*)\s*(?:<-|=)\s*function\b"),                      # R: f <- function(x)
    re.compile(r"([A-Za-z_][\w.:-]*)\s*\(\)\s*\{"),                                  # shell: f() {
    re.compile(r"\((?:defn-?|defmacro|defmulti|defmethod|defprotocol|defrecord|deftype|def)\s+([^\s()\[\]]+)"),
    re.compile(r"([a-z]\w*)\(.*\)\s*(?:when\b.*)?->"),                               # Erlang: f(X) ->
    re.compile(r"(?i:create\s+(?:or\s+replace\s+)?(?:temp(?:orary)?\s+)?(?:table|view|function|procedure|index|"
               r"trigger|type|schema|materialized\s+view)\s+(?:if\s+not\s+exists\s+)?)([\w.\"`\[\]]+)"),
    re.compile(r"(?:resource|data)\s+\"([^\"]+)\"\s+\"([^\"]+)\""),                  # Terraform resource "t" "n"
    re.compile(r"(?:module|variable|output|provider)\s+\"([^\"]+)\""),
    re.compile(r"(?i:from\s+\S+\s+as\s+)(\S+)"),                                     # Dockerfile stage
    re.compile(r"([A-Za-z_][\w.-]*)\s*:(?![=:])(?:\s|$)(?!.*[=,{])"),                # make target: x: deps
    # C-like method with a return type: `Future<int> fetch(String url) {` (Dart, Groovy)
    re.compile(r"(?:[\w<>\[\]?,]+\s+)+(?!(?:if|for|while|switch|catch|return|else|new)\b)([A-Za-z_]\w*)"
               r"\s*\([^;]*\)\s*(?:async\s*)?(?:\{|=>)"),
)
_STATEMENT_NAME = re.compile(
    r"(?:export\s+)?(?:(?:const|let|var|val|my|our|local|static|final|public|private|readonly)\s+)*"
    r"([A-Za-z_$@][\w$.]*)\s*(?::[^=\n]*)?(?:=(?!=)|\(|\s*<-)"
)
# A comment line; `#include`-style directives, `#[attr]` and `#!` are not comments.
_COMMENT = re.compile(
    r"\s*(?://|#(?!\s*(?:include|import|define|undef|if|ifdef|ifndef|elif|else|endif|pragma|error|line)\b|\[|!)"
    r"|--|;|%|/\*|\*|\(\*|\{-|<!--)"
)


@dataclass(frozen=True)
class Block:
    """Lines start_line..end_line (1-based, inclusive) and what names them."""

    start_line: int
    end_line: int
    name: str          # the definition's name, or "" when no line looks like one
    heading: str       # the naming line (or the first line), stripped


def definition_name(line: str) -> str:
    """The name a line defines when it looks like a definition in some language, else ""."""
    bare = line.strip()[:300]  # a definition's line is short; this bounds every pattern's work
    if not bare or _COMMENT.match(line) and not bare.startswith("(def"):
        return ""
    for pattern in _PATTERNS:
        match = pattern.match(bare)
        if match:
            return ".".join(g.strip("\"`[]") for g in match.groups() if g).replace("::", ".").rstrip(":")
    return ""


def is_comment(line: str) -> bool:
    """Whether a line is a comment in one of the common syntaxes."""
    return bool(_COMMENT.match(line))


def statement_name(line: str) -> str:
    """The name a top-level statement assigns or calls (`ROUTES = [...]` -> ROUTES, `app.use(x)` -> app.use)."""
    match = _STATEMENT_NAME.match(line.strip()[:300])
    return match.group(1) if match else ""


def blocks(lines: list[str], first_line: int = 1) -> list[Block]:
    """Cut `lines` (numbered from `first_line`) into named blocks of non-blank lines."""
    paragraphs: list[tuple[int, int]] = []  # 0-based [start, end) into lines
    start = None
    for i, line in enumerate(lines + [""]):
        if line.strip():
            start = i if start is None else start
        elif start is not None:
            paragraphs.extend(_windows(start, i))
            start = None
    out: list[Block] = []
    current: tuple[int, int] | None = None
    current_named = False
    for begin, end in paragraphs:
        opens = bool(definition_name(lines[begin]))
        if current is not None and (end - current[0] > TARGET_LINES or (opens and current_named)):
            out.append(_block(lines, current, first_line))
            current = None
        if current is None:
            current, current_named = (begin, end), any(definition_name(x) for x in lines[begin:end])
        else:
            current = (current[0], end)
            current_named = current_named or any(definition_name(x) for x in lines[begin:end])
    if current is not None:
        out.append(_block(lines, current, first_line))
    return out


def _windows(start: int, end: int) -> list[tuple[int, int]]:
    if end - start <= MAX_LINES:
        return [(start, end)]
    return [(s, min(s + TARGET_LINES, end)) for s in range(start, end, TARGET_LINES)]


def _block(lines: list[str], span: tuple[int, int], first_line: int) -> Block:
    begin, end = span
    for line in lines[begin:end]:
        if name := definition_name(line):
            return Block(first_line + begin, first_line + end - 1, name, _heading(line))
    return Block(first_line + begin, first_line + end - 1, "", _heading(lines[begin]))


def _heading(line: str) -> str:
    return " ".join(line[:HEADING_CHARS].split())


def leading_comment(lines: list[str], limit: int = 30) -> str:
    """The file's opening comment, without markers, a shebang, or a licence block; "" if none.

    A Python-style module docstring (a first statement that is a triple-quoted string) counts too.
    """
    i = 0
    while i < len(lines) and (not lines[i].strip() or lines[i].startswith("#!") or "coding" in lines[i][:40]
                              and lines[i].lstrip().startswith("#")):
        i += 1
    while i < len(lines):
        block, i = _comment_block(lines, i)
        text = "\n".join(block)
        if not block:
            return ""
        if not re.search(r"(?i)copyright|licen[cs]e|spdx-", text):
            return "\n".join(block[:limit]).strip()
        while i < len(lines) and not lines[i].strip():
            i += 1
    return ""


def _comment_block(lines: list[str], i: int) -> tuple[list[str], int]:
    """The comment (or docstring) starting at line i, markers stripped, and the line after it."""
    first = lines[i].strip()
    for quote in ('"""', "'''"):
        if first.lstrip("rRuUbB").startswith(quote):
            body, j = [first.lstrip("rRuUbB")[3:]], i
            while quote not in body[-1] and j + 1 < len(lines):
                j += 1
                body.append(lines[j].strip())
            body[-1] = body[-1].split(quote)[0]
            return [b for b in body if b] or [""], j + 1
    block, j = [], i
    in_block = False
    while j < len(lines):
        bare = lines[j].strip()
        if in_block or bare.startswith(("/*", "(*", "{-", "<!--")):
            in_block = not re.search(r"\*/|\*\)|-\}|-->", bare)
        elif not bare or not _COMMENT.match(bare) or bare.startswith(("/*", "*", "(*", "{-", "<!--")):
            break
        text = re.sub(r"^(?:/\*+!?|\(\*+|\{-\|?|<!--|//[/!]?|#+'?|--+\|?|;+|%+|\*+(?!/))\s?", "", bare)
        text = re.sub(r"\s*(?:\*+/|\*\)|-\}|-->)$", "", text)
        block.append(text)
        j += 1
    while block and not block[-1].strip():
        block.pop()
    return block, j


# --- the code between definitions, and the file as a whole ---------------------------------------

_IMPORT = re.compile(
    r"\s*(?:import\b|from\s+\S+\s+import\b|#\s*(?:include|import|pragma)\b|using\b|use\b|require\b|package\b|"
    r"open\b|alias\b|extern\s+crate\b|library\(|source\b|@import\b|\w+\s*(?::=|=)\s*require\(|"
    r"(?:const|let|var)\s+[\w{}\s,]+=\s*require\()"
)
# A line that is only data: a literal, a bracket, or `key: literal` / `KEY = literal`.
_DATA = re.compile(
    r"""\s*(?:[\[\]{}(),]\s*)*(?:["'\d\-.]|(?:True|False|None|null|true|false|nil)\b"""
    r"""|[\w."']+\s*[:=]\s*(?:["'\d\-\[{(]|True|False|None|null|true|false|nil)|[\]})]+[,;]?\s*$)"""
)
DATA_SHARE = 0.8  # a block of module-level code this much data, after the first of its run, is left out
MIN_MODULE_LINES = 3  # module-level code with fewer non-blank lines (besides comments) is left out


def module_blocks(lines: list[str], covered: list[tuple[int, int]]) -> list[Block]:
    """The top-level code outside `covered` (1-based inclusive line spans of definitions), as blocks
    named by their first statement; runs of only imports, comments, or under MIN_MODULE_LINES lines of
    code are left out (the file's summary chunk carries its imports' absence of meaning better)."""
    taken = bytearray(len(lines) + 2)
    for start, end in covered:
        taken[start : end + 1] = b"\1" * (end - start + 1)
    out: list[Block] = []
    row = 1
    while row <= len(lines):
        if taken[row]:
            row += 1
            continue
        start = row
        while row <= len(lines) and not taken[row]:
            row += 1
        for i, block in enumerate(blocks(lines[start - 1 : row - 1], start)):
            code = [x for x in lines[block.start_line - 1 : block.end_line] if x.strip() and not _COMMENT.match(x)]
            if len(code) < MIN_MODULE_LINES or all(_IMPORT.match(x) for x in code):
                continue
            if i and sum(bool(_DATA.match(x)) for x in code) >= DATA_SHARE * len(code):
                continue  # more of a table whose first block was kept: more of the same, and costly to embed
            statements = [x for x in code if not _IMPORT.match(x)]
            first = next((x for x in statements if statement_name(x)), statements[0])
            out.append(Block(block.start_line, block.end_line, statement_name(first), _heading(first)))
    return out


SUMMARY_LINES = 40  # a file's summary chunk holds at most this many lines


def file_summary(path: str, lines: list[str], names: list[str]) -> str:
    """What stands for a whole file: its path, its opening comment or docstring, and the top-level names it defines."""
    out = [path or "(unnamed file)"]
    doc = leading_comment(lines)
    if doc:
        out += doc.split("\n")[: SUMMARY_LINES // 2]
    if names:
        unique = list(dict.fromkeys(names))
        line, rows = "defines:", []
        for name in unique:
            if len(line) + len(name) > 100:
                rows.append(line)
                line = " "
            line += " " + name + ","
        rows.append(line.rstrip(","))
        out += rows[: SUMMARY_LINES - len(out)]
    return "\n".join(out[:SUMMARY_LINES])
