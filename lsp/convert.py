"""Small pure helpers between the protocol and the engine: request params in, engine results out.

Custom requests arrive from pygls as namedtuples (it builds them from the JSON), so they are turned
back into plain data and checked here; a bad field raises JsonRpcInvalidParams with a message that
says which field and why. Results go out as lsprotocol types or plain JSON objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.uris import from_fs_path, to_fs_path

from codesearch.daemon import LiveIndex
from codesearch.indexer import IndexReport
from codesearch.search import MODES, Hit, IndexStatus

SNIPPET_LINES = 8  # lines of code sent with each hit
MAX_K = 1000
MAX_QUERY_CHARS = 2_000  # a search query (README): longer ones are refused, not embedded for minutes
MAX_CODE_CHARS = 100_000  # the code of codesearch/similar (about 2,500 lines)

_SYMBOL_KINDS = {
    "function": types.SymbolKind.Function, "method": types.SymbolKind.Method, "class": types.SymbolKind.Class,
    "module": types.SymbolKind.Module, "file": types.SymbolKind.File,  # module-level code, a file's summary
}


# --- requests ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchRequest:
    query: str
    k: int = 20
    mode: str = "hybrid"
    languages: tuple[str, ...] = ()
    path: str | None = None


@dataclass(frozen=True)
class SimilarRequest:
    """Either a place (uri + 0-based position) or a piece of code."""

    uri: str | None = None
    line: int = 0  # 1-based, as the engine counts
    code: str | None = None
    k: int = 20
    threshold: float = 0.0  # drop hits scoring below it (code lenses ask for their near-duplicates only)
    mode: str = "hybrid"  # as Index.similar's; a threshold is a cosine, so with one the default is semantic


def plain(value: Any) -> Any:
    """pygls' namedtuples (and lsprotocol objects' dict form) as plain dicts and lists."""
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def search_request(params: Any) -> SearchRequest:
    data = _object(params)
    query = data.get("query")
    if not isinstance(query, str) or not query.strip():
        raise JsonRpcInvalidParams("'query' must be a non-empty string")
    query = query_text(query, "query")
    mode = data.get("mode") or "hybrid"
    if mode not in MODES:
        raise JsonRpcInvalidParams(f"'mode' must be one of {', '.join(MODES)}, got {mode!r}")
    lang = data.get("lang") or ()
    languages = (lang,) if isinstance(lang, str) else lang
    if not isinstance(languages, (list, tuple)) or not all(isinstance(x, str) for x in languages):
        raise JsonRpcInvalidParams("'lang' must be a language name or a list of them")
    for language in languages:
        query_text(language, "lang")
    path = data.get("path")
    if path is not None and not isinstance(path, str):
        raise JsonRpcInvalidParams("'path' must be a glob string")
    if path is not None:
        query_text(path, "path")
    return SearchRequest(query, _k(data), mode, tuple(languages), path or None)


def similar_request(params: Any) -> SimilarRequest:
    data = _object(params)
    uri, code, position = data.get("uri"), data.get("code"), data.get("position")
    threshold = data.get("threshold", 0.0)
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not -1.0 <= threshold <= 1.0:
        raise JsonRpcInvalidParams("'threshold' must be a number between -1 and 1")
    mode = data.get("mode") or ("semantic" if "threshold" in data else "hybrid")
    if mode not in MODES:
        raise JsonRpcInvalidParams(f"'mode' must be one of {', '.join(MODES)}, got {mode!r}")
    if isinstance(code, str) and code.strip() and uri is None:
        code = query_text(code, "code", MAX_CODE_CHARS)
        return SimilarRequest(code=code, k=_k(data), threshold=float(threshold), mode=mode)
    if not isinstance(uri, str) or not isinstance(position, dict):
        raise JsonRpcInvalidParams("give 'uri' and 'position' ({line, character}), or a non-empty 'code'")
    uri = query_text(uri, "uri")
    line = position.get("line")
    if not isinstance(line, int) or isinstance(line, bool) or line < 0:
        raise JsonRpcInvalidParams("'position.line' must be a 0-based line number")
    return SimilarRequest(uri=uri, line=line + 1, k=_k(data), threshold=float(threshold), mode=mode)


def query_text(text: str, name: str, limit: int = MAX_QUERY_CHARS) -> str:
    """`text` when it is valid Unicode of at most `limit` characters: a lone surrogate (which JSON can
    carry, and the tokenizer cannot take) or an endless query is the request's fault, not the index's."""
    if len(text) > limit:
        raise JsonRpcInvalidParams(f"'{name}' is {len(text):,} characters long: the limit is {limit:,}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise JsonRpcInvalidParams(f"'{name}' holds a lone surrogate (\\u{ord(text[_first_surrogate(text)]):04x}), "
                                   "which is not Unicode text") from None
    return text


def _first_surrogate(text: str) -> int:
    return next(i for i, ch in enumerate(text) if 0xD800 <= ord(ch) <= 0xDFFF)


def _object(params: Any) -> dict:
    data = plain(params)
    if not isinstance(data, dict):
        raise JsonRpcInvalidParams("params must be an object")
    return data


def _k(data: dict) -> int:
    k = data.get("k", 20)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise JsonRpcInvalidParams(f"'k' must be an integer from 1 to {MAX_K}, got {k!r}")
    return k


def command_params(arguments: Sequence[Any] | None, positional: Sequence[str]) -> dict:
    """workspace/executeCommand arguments as request params: one object, or values in `positional` order."""
    args = plain(list(arguments or []))
    if len(args) == 1 and isinstance(args[0], dict):
        return args[0]
    if len(args) > len(positional):
        raise JsonRpcInvalidParams(f"expected at most {len(positional)} arguments ({', '.join(positional)})")
    return dict(zip(positional, args))


def uri_path(uri: str) -> Path | None:
    """The file a `file:` URI names, or None for any other scheme."""
    path = to_fs_path(uri) if uri.startswith("file:") else None
    return Path(path) if path else None


# --- results -------------------------------------------------------------------------------------


def file_uri(root: Path, path: str) -> str:
    return from_fs_path(str(root / path))


def hit_range(hit: Hit) -> types.Range:
    """The lines of a hit (LSP counts from 0; the end is the end of its last line, in UTF-16 units)."""
    last = hit.code.rsplit("\n", 1)[-1]
    end = hit.start_line - 1 + hit.code.count("\n")
    return types.Range(types.Position(hit.start_line - 1, 0), types.Position(end, len(last.encode("utf-16-le")) // 2))


def hit_location(hit: Hit, root: Path) -> types.Location:
    return types.Location(file_uri(root, hit.path), hit_range(hit))


def hit_json(hit: Hit, root: Path) -> dict:
    """One hit of codesearch/search or codesearch/similar, as the editor clients read it."""
    return {
        "uri": file_uri(root, hit.path),
        "range": hit_range(hit),
        "name": hit.name,
        "kind": hit.kind,
        "language": hit.language,
        "score": hit.score,
        "path": hit.path,
        "line": hit.start_line,
        "snippet": "\n".join(hit.code.splitlines()[:SNIPPET_LINES]),
    }


def symbol_information(hit: Hit, root: Path) -> types.SymbolInformation:
    return types.SymbolInformation(
        name=hit.name,
        kind=_SYMBOL_KINDS.get(hit.kind, types.SymbolKind.Function),
        location=hit_location(hit, root),
        container_name=hit.path,
    )


def similar_lens(this: Hit, alike: list[Hit], root: Path, threshold: float) -> types.CodeLens:
    """"N similar" above a function; its command asks the server for those functions (the clients
    show the hits of codesearch.similar), and carries their locations for clients that show them directly."""
    where = hit_range(this)
    arguments = {
        "uri": file_uri(root, this.path),
        "position": types.Position(where.start.line, 0),
        "k": len(alike),
        "threshold": threshold,
        "mode": "semantic",  # near_duplicates' cosine, so the command returns exactly these
        "locations": [hit_location(hit, root) for hit in alike],
    }
    title = f"{len(alike)} similar"
    return types.CodeLens(range=where, command=types.Command(title=title, command="codesearch.similar", arguments=[arguments]))


def duplicate_diagnostic(this: Hit, alike: list[Hit], root: Path) -> types.Diagnostic:
    best = alike[0]
    more = f" and {len(alike) - 1} more" if len(alike) > 1 else ""
    where = hit_range(this)
    return types.Diagnostic(
        range=types.Range(where.start, types.Position(where.start.line, len(this.code.split("\n", 1)[0]))),
        message=f"{this.name} is like {best.name} ({best.path}:{best.start_line}, {best.score:.2f}){more}",
        severity=types.DiagnosticSeverity.Hint,
        source="codesearch",
        related_information=[
            types.DiagnosticRelatedInformation(hit_location(hit, root), f"{hit.name} ({hit.score:.2f})") for hit in alike
        ],
    )


def status_json(live: LiveIndex, status: IndexStatus | None) -> dict:
    """One folder of codesearch/status: the worker's state, and the index's when there is one."""
    out = {"root": str(live.root), "state": live.state, "pending": live.pending, "error": live.last_error}
    if status is not None:
        out.update(
            indexed=True, modelId=status.model_id, files=status.files, chunks=status.chunks,
            languages=status.languages, updatedAt=status.updated_at, complete=status.complete,
            staleFiles=status.stale_files,
        )
    else:
        out["indexed"] = False
    return out


def report_json(report: IndexReport) -> dict:
    """What one indexing run did, for codesearch.reindex."""
    return {
        "root": report.root, "files": report.files, "chunks": report.chunks, "filesChanged": report.files_changed,
        "filesDeleted": report.files_deleted, "chunksEmbedded": report.chunks_embedded,
        "skipped": dict(report.skipped), "rebuilt": report.rebuilt, "seconds": round(report.seconds, 3),
    }
