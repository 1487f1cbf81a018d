"""Keep a repository's index fresh while an editor works in it, and hand out an `Index` for queries.

A LiveIndex watches the tree (watchdog), debounces changes per file, and re-indexes only the files
that changed (`update_files`) on one worker thread, so there is one writer per index. It starts
with an incremental walk of the whole tree (`build_index`), and walks it again when an ignore file
changes or the index directory is deleted under it. Queries go to an Index opened `live`, which
sees each LanceDB commit: old rows or new ones for a file, never half of it. A concurrent
`codesearch index` holds the writer lock; the work is then retried a moment later.

Indexing gives way to the editor: the worker thread runs at a lower OS priority (`daemon_nice`,
Linux, where niceness is per thread), embeds with its own ONNX Runtime session capped at
`daemon_threads`, in small batches, and pauses before each batch while a query is being answered.
Queries embed with a second session, made before the worker lowers its priority, so that neither
its threads nor LanceDB's runtime inherit the lower priority.

An index in object storage (`index_dir = "s3://..."`) is served read-only: it has one writer
elsewhere (a CI job, `codesearch index --index s3://...`), so the LiveIndex opens it `live`, sees
that writer's commits, and neither watches the tree nor writes.

No LSP here: the language server listens through a `Listener`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from codesearch.config import Settings
from codesearch.errors import CodesearchError
from codesearch.files import CODESEARCH_IGNORE_FILE, IGNORE_FILE
from codesearch.indexer import IndexReport, Progress, WriterBusy, build_index, update_files
from codesearch.model import Encoder, resolve_model
from codesearch.search import Index
from codesearch.store import read_meta

log = logging.getLogger(__name__)

YIELD_MAX_S = 0.5  # the longest the worker waits for queries before embedding its next batch
INDEX_BATCH_TOKENS = 4096  # small batches: a query waits for at most one of them
BUSY_RETRY_S = 1.0  # wait before retrying when another process holds the writer lock, or after a failure
MAX_RETRIES = 2  # failed runs retried (the last one as a rebuild from scratch) before the error is reported
_RULE_FILES = (IGNORE_FILE, CODESEARCH_IGNORE_FILE, ".git/info/exclude")


def _nothing(*args) -> None:
    return None


@dataclass
class Listener:
    """What a LiveIndex tells its owner, on the worker thread; each defaults to nothing."""

    build_started: Callable[[], None] = _nothing        # a walk of the whole tree begins
    progress: Progress = _nothing                       # (stage, done, total) during it
    build_finished: Callable[[], None] = _nothing       # it ended, well or not
    updated: Callable[[IndexReport], None] = _nothing   # a run committed (full or a few files)
    failed: Callable[[str], None] = _nothing            # a run failed; the message is for a human


class LiveIndex:
    """One repository's index, kept up to date in the background: `start()`, then `index` for queries."""

    def __init__(
        self,
        root: Path,
        settings: Settings,
        *,
        debounce: float = 0.3,
        listener: Listener | None = None,
        watch: bool = True,
    ) -> None:
        self.root = Path(os.path.realpath(root))
        self.settings = settings
        self.debounce = debounce
        self.listener = listener or Listener()
        self.watch = watch
        self.index_path = settings.index_path(self.root)
        self.read_only = settings.remote_index  # served, never written (see the module's docstring)
        self.state = "starting"  # starting | building | updating | idle | stopped
        self.last_error = ""
        self.last_report: IndexReport | None = None
        self._index: Index | None = None
        self._encoder: Encoder | None = None  # for queries
        self._index_encoder: Encoder | None = None  # for indexing, on the worker thread
        self._queries = 0  # queries being answered now; the worker waits for them between batches
        self._cond = threading.Condition()
        self._due: dict[str, float] = {}  # repo-relative path -> monotonic time to re-index it
        self._full_due: float | None = None  # when to walk the whole tree, if asked
        self._full_waiters: list[Future[IndexReport]] = []
        self._stopping = False
        self._failures = 0  # failed runs in a row
        self._rebuild = False  # start the index over on the next run
        worker = self._serve_remote if self.read_only else self._work
        self._thread = threading.Thread(target=worker, name=f"codesearch index {self.root.name}", daemon=True)
        self._observer = None

    # --- the owner's side ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker (it loads the model, opens the index left by an earlier run so queries work
        at once, then brings it up to date) and the watcher."""
        if self.read_only:
            self._thread.start()
            return
        self.sync()
        self._thread.start()
        if self.watch:
            self._observer = _watch(self)

    def close(self, timeout: float = 5.0) -> None:
        if self._observer is not None:
            self._observer.stop()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.state = "stopped"

    @property
    def index(self) -> Index | None:
        """The index to query, or None while there is none yet."""
        return self._index

    @contextlib.contextmanager
    def querying(self):
        """Wrap the answer to a query: indexing pauses before its next batch until the answer is done."""
        with self._cond:
            self._queries += 1
        try:
            yield
        finally:
            with self._cond:
                self._queries -= 1

    @property
    def pending(self) -> int:
        """Files waiting for their debounce or for the worker."""
        return len(self._due)

    def changed(self, paths: Iterable[str | os.PathLike[str]]) -> None:
        """Re-index these files (absolute, or relative to the root) once none of them changed for
        `debounce` seconds; what they are now on disk is what gets indexed."""
        if self.read_only:
            return  # its writer indexes them
        now = time.monotonic()
        with self._cond:
            for path in paths:
                rel = self.relative(path)
                if rel is None or rel == ".git" or rel.startswith(".git/") and rel != ".git/info/exclude":
                    continue
                if rel == self.settings.index_dir or rel.startswith(self.settings.index_dir.rstrip("/") + "/"):
                    if not (self.index_path / "meta.json").exists():  # deleted under us: build it again
                        self._full_due = now + self.debounce  # once the deletion is over
                    continue
                if rel.endswith(_RULE_FILES):  # which files are in scope may have changed
                    self._full_due = min(self._full_due or now + self.debounce, now + self.debounce)
                self._due[rel] = now + self.debounce
            self._cond.notify()

    def sync(self) -> Future[IndexReport]:
        """Walk the whole tree (incrementally: only changed files are read) as soon as the worker is free."""
        future: Future[IndexReport] = Future()
        if self.read_only:  # nothing to walk: reopen at the writer's latest generation instead
            self._serve_remote()
            future.set_exception(CodesearchError(
                f"the index of {self.root} is in object storage ({self.settings.index_dir}) and read-only here "
                "(reopened at its latest version): it is updated by `codesearch index --index` where it is written"
            ))
            return future
        with self._cond:
            self._full_waiters.append(future)
            self._full_due = time.monotonic()
            self._cond.notify()
        return future

    def relative(self, path: str | os.PathLike[str]) -> str | None:
        """`path` relative to the root in posix form, or None when it is outside."""
        absolute = os.path.join(self.root, path)
        rel = os.path.relpath(os.path.realpath(os.path.dirname(absolute)), self.root)
        rel = os.path.normpath(os.path.join(rel, os.path.basename(absolute)))
        if rel == "." or rel == ".." or rel.startswith(".." + os.sep) or os.path.isabs(rel):
            return None
        return Path(rel).as_posix()

    # --- the worker ------------------------------------------------------------------------------

    def _work(self) -> None:
        # What queries use starts before the worker lowers its priority: threads inherit it.
        with contextlib.suppress(Exception):  # a bad model is reported by the first run
            self._load_encoder()
        self._open_existing()
        _start_lancedb(self.root)
        lower_thread_priority(self.settings.daemon_nice)
        while True:
            with self._cond:
                full, paths, waiters = self._next_job()
                if full is None:
                    return
            self._run(full, paths, waiters)

    def _serve_remote(self) -> None:
        """Open the object-storage index for queries; it follows its writer's commits by itself."""
        try:
            self._index = Index.open(self.root, self.settings, live=True, encoder=self._load_encoder())
            self.state = "idle"
        except Exception as exc:  # noqa: BLE001 - reported through status and the listener, as a failed run is
            self.last_error = str(exc)
            self.state = "stopped"
            self.listener.failed(self.last_error)

    def _next_job(self) -> tuple[bool | None, list[str], list[Future[IndexReport]]]:
        """Wait (holding the condition) for work that is due: (full walk?, paths, waiters), or None to stop."""
        while not self._stopping:
            now = time.monotonic()
            if self._full_due is not None and self._full_due <= now:
                waiters, self._full_waiters, self._full_due = self._full_waiters, [], None
                self._due.clear()  # the walk covers them
                return True, [], waiters
            ready = sorted(p for p, due in self._due.items() if due <= now)
            if ready:
                for path in ready:
                    del self._due[path]
                return False, ready, []
            deadlines = [*self._due.values(), *([self._full_due] if self._full_due is not None else [])]
            self._cond.wait(max(0.0, min(deadlines) - now) if deadlines else None)
        for waiter in self._full_waiters:
            waiter.cancel()
        return None, [], []

    def _run(self, full: bool, paths: list[str], waiters: list[Future[IndexReport]]) -> None:
        try:
            self._load_encoder()  # queries need it as soon as there is an index
            encoder = self._load_index_encoder()
        except Exception as exc:  # noqa: BLE001 - a missing or bad model: nothing to retry until it changes
            self._fail(exc, waiters)
            return
        rebuild, self._rebuild = self._rebuild, False
        full = full or rebuild
        self.state = "building" if full else "updating"
        if full:
            self.listener.build_started()
        try:
            if full:
                report = build_index(
                    self.root, self.settings, rebuild=rebuild, encoder=encoder, progress=self.listener.progress
                )
            else:
                report = update_files(self.root, self.settings, paths, encoder=encoder)
            self._refresh_index()
        except WriterBusy:
            self._retry_later(full, paths, waiters)
            return
        except Exception as exc:  # noqa: BLE001 - the worker must outlive any one run
            self._failures += 1
            if self._failures > MAX_RETRIES:
                self._fail(exc, waiters)
                return
            # An I/O race (a file or the index deleted mid-run) passes on a second try; an index that
            # still fails is damaged, and the last try starts it over.
            log.warning("indexing %s failed (%s): trying again", self.root, exc)
            self._rebuild = self._failures == MAX_RETRIES
            self._retry_later(full or self._rebuild, paths, waiters)
            return
        finally:
            self.state = "idle"
            if full:
                self.listener.build_finished()
        self.last_report, self.last_error, self._failures = report, "", 0
        for waiter in waiters:
            waiter.set_result(report)
        self.listener.updated(report)

    def _retry_later(self, full: bool, paths: list[str], waiters: list[Future[IndexReport]]) -> None:
        """Put a run back, due in BUSY_RETRY_S; a change that came meanwhile keeps its own time."""
        due = time.monotonic() + BUSY_RETRY_S
        with self._cond:
            if full:
                self._full_waiters.extend(waiters)
                self._full_due = due if self._full_due is None else max(self._full_due, due)
            for path in paths:
                self._due.setdefault(path, due)
            self._cond.notify()

    def _fail(self, exc: Exception, waiters: list[Future[IndexReport]]) -> None:
        if not isinstance(exc, CodesearchError):
            log.error("indexing %s failed", self.root, exc_info=exc)
        self._failures = 0
        self.last_error = str(exc) if isinstance(exc, CodesearchError) else f"{type(exc).__name__}: {exc}"
        for waiter in waiters:
            waiter.set_exception(exc)
        self.listener.failed(self.last_error)

    def _load_encoder(self) -> Encoder:
        if self._encoder is None:
            s = self.settings
            folder = resolve_model(s.model)
            self._encoder = Encoder(folder, device=s.device, threads=s.threads, batch_tokens=s.batch_tokens)
        return self._encoder

    def _load_index_encoder(self) -> Encoder:
        if self._index_encoder is None:
            s = self.settings
            threads = s.daemon_threads or max(1, (os.cpu_count() or 2) // 2)
            encoder = Encoder(
                resolve_model(s.model), device=s.device, threads=threads,
                batch_tokens=min(s.batch_tokens, INDEX_BATCH_TOKENS),
            )
            encoder.before_batch = self._yield_to_queries
            self._index_encoder = encoder
        return self._index_encoder

    def _yield_to_queries(self) -> None:
        deadline = time.monotonic() + YIELD_MAX_S
        with self._cond:
            while self._queries and not self._stopping and time.monotonic() < deadline:
                self._cond.wait(0.005)

    def _open_existing(self) -> None:
        """Serve the index an earlier run left, if any, while the first walk brings it up to date."""
        try:
            if read_meta(self.index_path) is not None:
                self._index = Index.open(self.root, self.settings, live=True, encoder=self._load_encoder())
        except Exception as exc:  # noqa: BLE001 - a damaged or foreign index is rebuilt by the first walk
            log.info("not serving the old index of %s: %s", self.root, exc)

    def _refresh_index(self) -> None:
        """After a run: reopen the Index when the tables were made anew, else just re-read meta.json."""
        meta = read_meta(self.index_path)
        current = self._index
        if current is None or meta is None or current.store.meta.created_at != meta.created_at:
            self._index = Index.open(self.root, self.settings, live=True, encoder=self._encoder)
        else:
            current.store.meta = meta


def lower_thread_priority(nice: int) -> None:
    """Add `nice` to the calling thread's niceness (Linux: per thread; elsewhere it would lower the
    whole process, so nothing is done). Threads it starts afterwards inherit it."""
    if nice <= 0 or not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError as exc:
        log.info("could not lower the indexing thread's priority: %s", exc)


def _start_lancedb(root: Path) -> None:
    """Start LanceDB's runtime threads now, at normal priority (they start on first connect, and would
    otherwise inherit the worker's lower priority and slow down queries)."""
    try:
        import lancedb

        lancedb.connect(str(root))  # opens nothing: tables are opened by name
    except Exception as exc:  # noqa: BLE001 - only a matter of speed
        log.info("lancedb: %s", exc)


def _watch(live: LiveIndex):
    """A watchdog observer that reports every created, changed, moved or deleted path to `live`."""
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers import Observer

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event) -> None:
            if event.event_type in ("opened", "closed_no_write"):
                return
            if event.is_directory and event.event_type in ("modified", "closed"):
                return  # a directory "changes" whenever a file in it does: that file is reported too
            paths = [event.src_path, getattr(event, "dest_path", "")]
            live.changed([os.fsdecode(p) for p in paths if p])

    observer = Observer()
    observer.schedule(Handler(), str(live.root), recursive=True)
    observer.daemon = True
    observer.start()
    return observer
