"""The codesearch language server: pygls handlers over the engine.

Every handler has one shape: read the params, ask the engine once (through a CodesearchServer
method that finds the right workspace folder), convert with lsp.convert, return. Blocking work runs
in pygls' thread pool (`@server.thread()`); indexing runs on each folder's LiveIndex worker
(codesearch.daemon), which watches the tree and re-indexes saved files after a per-file debounce.

Beyond the LSP:
    codesearch/search   {query, k?, mode?, lang?, path?}          -> {"hits": [hit, ...]}
    codesearch/similar  {uri, position, k?, mode?, threshold?}
                        or {code, k?, mode?, threshold?}           -> {"hits": [hit, ...]}
    codesearch/status   {}                                        -> {"folders": [...]}
    hit = {uri, range, name, kind, language, score, path, line, snippet}
and the same as workspace/executeCommand: codesearch.search, codesearch.similar (one params object,
or positional values), and codesearch.reindex (walks every folder again; returns when done).
Code lenses ("2 similar") carry the command codesearch.similar with the params that return exactly
those functions, plus their locations.

Around the handlers: lsp.session reads the base protocol strictly and answers every request (limits
and rules there and in README "Who may connect to the language server"), lsp.transport listens on a
Unix socket or a loopback port with one session process per connection, and lsp.access decides who
may connect and which workspace folders are served (only directories the server's user owns).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInternalError, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from codesearch import __version__
from codesearch.config import Settings, load_settings
from codesearch.daemon import Listener, LiveIndex
from codesearch.errors import CodesearchError
from codesearch.indexer import IndexReport
from codesearch.search import Hit, Index
from lsp import access, convert, transport
from lsp.convert import SearchRequest, SimilarRequest
from lsp.options import ServerOptions, parse_options
from lsp.session import Session

log = logging.getLogger("codesearch.lsp")

SYMBOL_RESULTS = 50
PROGRESS_EVERY_S = 0.2  # at most this often a $/progress report


class RequestFailed(JsonRpcException):
    """LSP's RequestFailed: the request was valid, but the server cannot answer it now."""

    CODE = -32803


class CodesearchServer(LanguageServer):
    """The server's state: its options and one LiveIndex per workspace folder."""

    def __init__(self) -> None:
        super().__init__("codesearch", __version__)
        self.options = ServerOptions()
        self.roots: list[Path] = []
        self.folders: dict[Path, LiveIndex] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.refused: list[str] = []  # why workspace folders were not served (lsp.access), shown once initialized
        self.owned_folders_only = False  # a session a listener started serves only folders its user owns
        self._lock = threading.Lock()  # guards `folders` against the thread pool

    # --- folders ---------------------------------------------------------------------------------

    def open_folder(self, root: Path) -> None:
        """Start keeping `root`'s index fresh (building it in the background if there is none)."""
        try:
            settings = folder_settings(root, self.options)
        except CodesearchError as exc:
            self.warn(f"{root}: {exc}")
            return
        live = LiveIndex(root, settings, debounce=self.options.debounce_ms / 1000, listener=self._listener(root))
        with self._lock:
            old = self.folders.pop(live.root, None)
            self.folders[live.root] = live
        if old is not None:
            old.close()
        live.start()

    def close_folders(self) -> None:
        with self._lock:
            folders, self.folders = list(self.folders.values()), {}
        for live in folders:
            live.close()

    def folder_of(self, uri: str) -> tuple[LiveIndex, Path]:
        """The folder holding the file at `uri`, and the file's path; InvalidParams if none does."""
        path = convert.uri_path(uri)
        if path is not None:
            with self._lock:
                folders = sorted(self.folders.values(), key=lambda live: -len(str(live.root)))
            for live in folders:
                if live.relative(path) is not None:
                    return live, path
        raise JsonRpcInvalidParams(f"{uri} is not a file in a workspace folder")

    def changed(self, uris: list[str]) -> None:
        """Schedule the files at `uris` for re-indexing (each in its folder, after the debounce)."""
        for uri in uris:
            try:
                live, path = self.folder_of(uri)
            except JsonRpcInvalidParams:
                continue
            live.changed([path])

    # --- the engine, through the folders' indexes ------------------------------------------------

    def ask(self, live: LiveIndex, question: Callable[[Index], Any]) -> Any:
        """Run one engine query on `live`'s index, with engine failures turned into LSP errors."""
        index = live.index
        if index is None:
            detail = f": {live.last_error}" if live.last_error else " (see codesearch/status)"
            raise RequestFailed(f"no index of {live.root} yet: codesearch is building it{detail}")
        try:
            with live.querying():
                return question(index)
        except CodesearchError as exc:
            raise JsonRpcInvalidParams(str(exc)) from None
        except (TypeError, UnicodeError) as exc:  # about the request, not the index: nothing to rebuild
            log.exception("query on %s failed", live.root)
            raise JsonRpcInternalError(f"codesearch could not answer this request: {exc}") from None
        except Exception as exc:  # the index changed under us (deleted, damaged): rebuild it
            log.exception("query on %s failed", live.root)
            live.sync()
            raise RequestFailed(f"the index of {live.root} could not be read ({exc}); rebuilding it") from None

    def search(self, request: SearchRequest) -> list[tuple[Path, Hit]]:
        """Hits of every folder, best first."""
        found = []
        for live in self.live_folders():
            hits = self.ask(
                live,
                lambda index: index.search(
                    request.query, request.k, mode=request.mode, languages=request.languages, path=request.path
                ),
            )
            found.extend((live.root, hit) for hit in hits)
        return sorted(found, key=lambda pair: -pair[1].score)[: request.k]

    def similar(self, request: SimilarRequest) -> list[tuple[Path, Hit]]:
        if request.uri is not None:
            live, path = self.folder_of(request.uri)
            _, hits = self.ask(live, lambda index: index.similar_at(str(path), request.line, request.k,
                                                                    mode=request.mode))
            found = [(live.root, hit) for hit in hits]
        else:
            found = [
                (live.root, hit)
                for live in self.live_folders()
                for hit in self.ask(live, lambda index: index.similar(request.code, request.k, mode=request.mode))
            ]
        found = [pair for pair in found if pair[1].score >= request.threshold]
        return sorted(found, key=lambda pair: -pair[1].score)[: request.k]

    def near_duplicates(self, uri: str) -> tuple[Path, list[tuple[Hit, list[Hit]]]]:
        live, path = self.folder_of(uri)
        threshold = self.options.similarity_threshold
        return live.root, self.ask(live, lambda index: index.near_duplicates(str(path), threshold))

    def live_folders(self) -> list[LiveIndex]:
        with self._lock:
            folders = list(self.folders.values())
        if not folders:
            raise RequestFailed("no workspace folder is open")
        return folders

    # --- messages to the client, from any thread --------------------------------------------------

    def soon(self, send: Callable[..., Any], *args: Any) -> None:
        """Send from the protocol's event loop: the worker and watcher threads must not write themselves."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(send, *args)

    def warn(self, message: str, show: bool = False) -> None:
        log.warning(message)
        params = types.LogMessageParams(types.MessageType.Warning, f"codesearch: {message}")
        if self.loop is None:  # still in initialize, on the protocol thread
            self.window_log_message(params)
        else:
            self.soon(self.window_log_message, params)
        if show:
            self.soon(self.window_show_message, types.ShowMessageParams(types.MessageType.Warning, f"codesearch: {message}"))

    def supports(self, capability: str) -> bool:
        """Whether the client said it supports a dotted capability, e.g. "window.work_done_progress"."""
        value: Any = self.client_capabilities
        for name in capability.split("."):
            value = getattr(value, name, None)
        return bool(value)

    def publish_duplicates(self, uri: str) -> None:
        """Hint diagnostics on the functions of `uri` that have near-duplicates (none when turned off)."""
        diagnostics = []
        if self.options.duplicate_diagnostics:
            try:
                root, found = self.near_duplicates(uri)
            except JsonRpcException:
                return
            diagnostics = [convert.duplicate_diagnostic(this, alike, root) for this, alike in found]
        self.soon(self.text_document_publish_diagnostics, types.PublishDiagnosticsParams(uri, diagnostics))

    def refresh_views(self) -> None:
        """After the index changed: new code lenses, new duplicate diagnostics for open files."""
        if self.supports("workspace.code_lens.refresh_support"):
            self.soon(self.workspace_code_lens_refresh, None)
        for uri in list(self.workspace.text_documents):
            self.thread_pool.submit(self.publish_duplicates, uri)

    def _listener(self, root: Path) -> Listener:
        progress = _IndexProgress(self, root)
        shown = {"error": ""}

        def updated(report: IndexReport) -> None:
            shown["error"] = ""
            if report.files_changed or report.files_deleted or report.rebuilt:
                self.refresh_views()

        def failed(message: str) -> None:
            if message != shown["error"]:  # once per distinct failure, not on every save
                shown["error"] = message
                self.warn(f"indexing {root} failed: {message}", show=True)

        return Listener(progress.begin, progress.report, progress.end, updated, failed)


class _IndexProgress:
    """Work-done progress ($/progress begin, report, end) for one folder's full walks."""

    def __init__(self, ls: CodesearchServer, root: Path) -> None:
        self.ls, self.root = ls, root
        self.token: str | None = None
        self.last = 0.0

    def begin(self) -> None:
        ls = self.ls
        if ls.loop is None or not ls.supports("window.work_done_progress"):
            return
        token = f"codesearch-index-{uuid.uuid4().hex}"
        try:  # the client must accept the token before the first $/progress
            asyncio.run_coroutine_threadsafe(ls.work_done_progress.create_async(token), ls.loop).result(timeout=10)
        except Exception as exc:  # noqa: BLE001 - no progress bar is no reason to stop indexing
            log.warning("client refused a progress token: %s", exc)
            return
        self.token, self.last = token, 0.0
        title = f"codesearch: indexing {self.root.name}"
        ls.soon(ls.work_done_progress.begin, token, types.WorkDoneProgressBegin(title=title, percentage=0))

    def report(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if self.token is None or (now - self.last < PROGRESS_EVERY_S and done < total):
            return
        self.last = now
        share = done / total if total else 1.0
        percentage = int(30 * share) if stage == "reading" else 30 + int(70 * share)
        value = types.WorkDoneProgressReport(message=f"{stage} {done}/{total}", percentage=percentage)
        self.ls.soon(self.ls.work_done_progress.report, self.token, value)

    def end(self) -> None:
        if self.token is not None:
            self.ls.soon(self.ls.work_done_progress.end, self.token, types.WorkDoneProgressEnd(message="done"))
            self.token = None


def folder_settings(root: Path, options: ServerOptions) -> Settings:
    """The repository's settings, with the editor's model (relative to the folder) on top."""
    model = options.model
    if model:
        path = Path(model).expanduser()
        model = str(path if path.is_absolute() else (root / path).resolve())
    return load_settings(root, {"model": model or None})


def workspace_roots(params: types.InitializeParams) -> list[Path]:
    """The folders the client asks for (workspaceFolders, else rootUri, else rootPath), unchecked."""
    uris = [folder.uri for folder in params.workspace_folders or []] or [params.root_uri or ""]
    paths = [convert.uri_path(uri) for uri in uris if uri]
    if not paths and params.root_path:
        paths = [Path(params.root_path)]
    return [path for path in paths if path is not None]


server = CodesearchServer()


# --- lifecycle -------------------------------------------------------------------------------------


@server.feature(types.INITIALIZE)
def initialize(ls: CodesearchServer, params: types.InitializeParams) -> None:
    ls.options, warnings = parse_options(params.initialization_options)
    for warning in warnings:
        ls.warn(warning)
    ls.roots, ls.refused = [], []
    for root in workspace_roots(params):
        if (refusal := access.folder_refusal(root, owned_only=ls.owned_folders_only)) is None:
            ls.roots.append(root)
        else:  # never opened: see access.folder_refusal and README "Who may connect"
            ls.refused.append(refusal)
            ls.warn(refusal)


@server.feature(types.INITIALIZED)
def initialized(ls: CodesearchServer, params: types.InitializedParams) -> None:
    # Run on the protocol's loop before the next message is taken: a request sent right after
    # `initialized` already finds the folders open.
    ls.loop = asyncio.get_running_loop()
    if ls.supports("workspace.did_change_watched_files.dynamic_registration"):
        watchers = types.DidChangeWatchedFilesRegistrationOptions([types.FileSystemWatcher("**/*")])
        registration = types.Registration(str(uuid.uuid4()), types.WORKSPACE_DID_CHANGE_WATCHED_FILES, watchers)
        ls.client_register_capability(types.RegistrationParams([registration]))
    for refusal in ls.refused:
        ls.window_show_message(types.ShowMessageParams(types.MessageType.Warning, f"codesearch: {refusal}"))
    for root in ls.roots:
        ls.open_folder(root)


@server.feature(types.SHUTDOWN)
def shutdown(ls: CodesearchServer, params: None) -> None:
    ls.close_folders()


@server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
def did_change_folders(ls: CodesearchServer, params: types.DidChangeWorkspaceFoldersParams) -> None:
    for folder in params.event.removed:
        path = convert.uri_path(folder.uri)
        with ls._lock:
            live = ls.folders.pop(Path(os.path.realpath(path)), None) if path else None
        if live is not None:
            live.close()
    for folder in params.event.added:
        if (path := convert.uri_path(folder.uri)) is None:
            continue
        if (refusal := access.folder_refusal(path, owned_only=ls.owned_folders_only)) is not None:
            ls.warn(refusal, show=True)
        else:
            ls.open_folder(path)


@server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
def did_change_configuration(ls: CodesearchServer, params: types.DidChangeConfigurationParams) -> None:
    old = ls.options
    ls.options, warnings = parse_options(params.settings, base=old)
    for warning in warnings:
        ls.warn(warning)
    if ls.options.model != old.model:  # another model: every index is rebuilt with it
        for root in list(ls.folders):
            ls.open_folder(root)
    for live in list(ls.folders.values()):
        live.debounce = ls.options.debounce_ms / 1000
    ls.refresh_views()


# --- changes: each schedules the files for re-indexing; what is on disk gets indexed -----------------


@server.feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))
def did_save(ls: CodesearchServer, params: types.DidSaveTextDocumentParams) -> None:
    ls.changed([params.text_document.uri])


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: CodesearchServer, params: types.DidChangeTextDocumentParams) -> None:
    ls.changed([params.text_document.uri])


@server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
def did_change_watched_files(ls: CodesearchServer, params: types.DidChangeWatchedFilesParams) -> None:
    ls.changed([change.uri for change in params.changes])


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
@server.thread()
def did_open(ls: CodesearchServer, params: types.DidOpenTextDocumentParams) -> None:
    ls.publish_duplicates(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: CodesearchServer, params: types.DidCloseTextDocumentParams) -> None:
    ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(params.text_document.uri, []))


# --- queries ---------------------------------------------------------------------------------------


@server.feature(types.WORKSPACE_SYMBOL)
@server.thread()
def workspace_symbol(ls: CodesearchServer, params: types.WorkspaceSymbolParams) -> list[types.SymbolInformation]:
    if not params.query.strip():
        return []  # editors ask with "" first: listing every function helps no one
    query = convert.query_text(params.query, "query")
    try:
        found = ls.search(SearchRequest(query, k=SYMBOL_RESULTS))
    except RequestFailed:
        return []  # no index yet: an empty list, as for any other not-yet-known symbol
    return [convert.symbol_information(hit, root) for root, hit in found]


@server.feature("codesearch/search")
@server.thread()
def search(ls: CodesearchServer, params: Any) -> dict:
    found = ls.search(convert.search_request(params))
    return {"hits": [convert.hit_json(hit, root) for root, hit in found]}


@server.feature("codesearch/similar")
@server.thread()
def similar(ls: CodesearchServer, params: Any) -> dict:
    found = ls.similar(convert.similar_request(params))
    return {"hits": [convert.hit_json(hit, root) for root, hit in found]}


@server.feature("codesearch/status")
@server.thread()
def status(ls: CodesearchServer, params: Any) -> dict:
    with ls._lock:
        folders = list(ls.folders.values())
    return {"folders": [convert.status_json(live, _index_status(live)) for live in folders]}


def _index_status(live: LiveIndex):
    try:
        return live.index.status() if live.index is not None else None
    except Exception as exc:  # noqa: BLE001 - status must answer even about a broken index
        log.info("status of %s: %s", live.root, exc)
        return None


@server.feature(types.TEXT_DOCUMENT_CODE_LENS, types.CodeLensOptions(resolve_provider=False))
@server.thread()
def code_lens(ls: CodesearchServer, params: types.CodeLensParams) -> list[types.CodeLens]:
    if not ls.options.code_lens:
        return []
    try:
        root, found = ls.near_duplicates(params.text_document.uri)
    except JsonRpcException:
        return []  # not indexed (yet): no lenses
    threshold = ls.options.similarity_threshold
    return [convert.similar_lens(this, alike, root, threshold) for this, alike in found]


# --- commands --------------------------------------------------------------------------------------


@server.command("codesearch.search")
@server.thread()
def search_command(ls: CodesearchServer, *args: Any) -> dict:
    return search(ls, convert.command_params(args, ("query", "k", "mode", "lang", "path")))


@server.command("codesearch.similar")
@server.thread()
def similar_command(ls: CodesearchServer, *args: Any) -> dict:
    return similar(ls, convert.command_params(args, ("uri", "position", "k")))


@server.command("codesearch.reindex")
@server.thread()
def reindex_command(ls: CodesearchServer, *args: Any) -> dict:
    """Walk every folder again (incrementally) and answer when done, with what each run did."""
    runs = [(live, live.sync()) for live in ls.live_folders()]
    reports = []
    for live, run in runs:
        try:
            reports.append(convert.report_json(run.result()))
        except Exception as exc:  # noqa: BLE001 - one folder's failure is reported, not raised
            reports.append({"root": str(live.root), "error": str(exc)})
    return {"folders": reports}


def _not_a_bad_request(record: logging.LogRecord) -> bool:
    """Keep pygls from logging a traceback for each error we answer on purpose (bad params, no index;
    params that do not fit their method, which lsp.session reports in one line)."""
    if str(record.msg).startswith("Unable to deserialize message"):
        return False
    return not (record.exc_info and isinstance(record.exc_info[1], JsonRpcException))


def start(*, socket_path: str | None = None, tcp: bool = False, host: str = "127.0.0.1", port: int = 2087,
          token_fd: int | None = None, listened: bool = False) -> None:
    """Serve one client on stdio (what editors start), or listen: on a Unix socket (`socket_path`, ""
    for the default one) or on a TCP port of `host` (loopback), one session process per connection
    (lsp.transport). `token_fd` is the pipe a TCP listener hands its session the token on; `listened`
    marks such a session, which serves only folders the server's user owns (access.folder_refusal)."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="codesearch lsp: %(levelname)s: %(message)s")
    logging.getLogger("pygls.protocol.json_rpc").addFilter(_not_a_bad_request)
    if socket_path is not None:
        transport.serve_unix(socket_path)
        return
    if tcp:
        transport.serve_tcp(host, port)
        return
    token = access.read_token(token_fd) if token_fd is not None else None
    server.owned_folders_only = listened
    # lancedb takes seconds to import: start now, while the editor is still getting ready to initialize.
    threading.Thread(target=importlib.import_module, args=("lancedb",), daemon=True).start()
    Session(server, *_protocol_fds(), token=token).run()


def _protocol_fds() -> tuple[int, int]:
    """Private copies of stdin and stdout for the protocol; fd 0 becomes /dev/null and fd 1 stderr, so
    that a stray print or a library's output cannot corrupt the stream."""
    read_fd, write_fd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return read_fd, write_fd
