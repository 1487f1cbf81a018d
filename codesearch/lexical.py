"""Lexical tokens for full-text search: identifiers split at camelCase, snake_case and digits.

The same function feeds the index's full-text column and the queries, so `parseJSONFile`,
`parse_json_file` and "parse json file" all meet on the tokens parse, json, file.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[^\W\d]\w*|\d+")
# Boundaries inside an identifier: lower->Upper, ACRONYMWord, letter<->digit.
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


def identifier_tokens(text: str) -> list[str]:
    """Lower-case word tokens of `text`: each identifier's parts, then the whole identifier if compound.

    >>> identifier_tokens("def parseJSONFile(path_name):")
    ['def', 'parse', 'json', 'file', 'parsejsonfile', 'path', 'name', 'path_name']
    """
    tokens: list[str] = []
    for word in _WORD.findall(text):
        parts = [
            p.lower()
            for piece in word.split("_")
            for p in (_CAMEL.findall(piece) if piece.isascii() else [piece])
        ]
        tokens.extend(parts)
        whole = word.lower().strip("_")
        if len(parts) > 1 and whole:
            tokens.append(whole)
    return tokens


def lexical_text(text: str) -> str:
    """`identifier_tokens` joined by spaces: what the full-text index stores and is queried with."""
    return " ".join(identifier_tokens(text))
