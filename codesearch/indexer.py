"""files -> chunks -> embeddings -> store, incrementally.

A run reads only files whose size or mtime changed (and re-chunks only those whose bytes changed),
embeds only chunks whose content hash has no vectors yet for this model (a moved function keeps its
vectors), writes each batch of files in one commit and deletes the rows of deleted files. The index
stays queryable throughout; an interrupted run leaves `complete: false` in meta.json and the next
run finishes the work. `update_files` does the same for a few named files (the daemon's saves).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from codesearch.chunking import LANGUAGES, Chunk, chunk_text
from codesearch.config import Settings
from codesearch.errors import CodesearchError
from codesearch.files import NOT_CODE, SkipFile, SourceFile, read_source, scope_of, walk
from codesearch.indexdir import claim_index_dir, open_lock
from codesearch.lexical import lexical_text
from codesearch.model import Encoder, ModelFolder, resolve_model
from codesearch.objectstore import empty_store, is_remote, open_store
from codesearch.secrets import fingerprint, rules_for
from codesearch.store import (
    SCHEMA_VERSION, DamagedIndex, FileState, IndexMeta, Store, replace_meta, row_id,
)

Progress = Callable[[str, int, int], None]  # (stage, done, total)

_BATCH_CHUNKS = 1024  # chunks embedded and committed together
SECRET_RULES_FILE = "secret-rules"  # in the index folder: the secret rules its files were last all read under


@dataclass
class IndexReport:
    root: str
    index_path: str
    model_id: str
    files: int = 0  # files in scope after ignores
    files_read: int = 0  # files whose bytes were read this run
    files_changed: int = 0  # files whose chunks were rewritten
    files_deleted: int = 0
    chunks: int = 0  # chunks in the index after the run (functions, module-level code, file summaries)
    functions: int = 0  # of which functions, methods and classes
    chunks_embedded: int = 0
    chunks_reused: int = 0
    windows_embedded: int = 0
    syntax_errors: int = 0  # files indexed partially because Tree-Sitter found errors
    skipped: Counter = field(default_factory=Counter)
    skipped_paths: list[tuple[str, str]] = field(default_factory=list)
    secret_rules: dict[str, str] = field(default_factory=dict)  # path -> the rule that found a secret in it
    rebuilt: str = ""  # why the index was rebuilt from scratch, if it was
    seconds: float = 0.0

    @property
    def embedded_per_s(self) -> float:
        return self.chunks_embedded / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Pending:
    """A file read and chunked this run, waiting for its vectors."""

    file: SourceFile
    sha256: str
    chunks: list[Chunk]


def check_languages(settings: Settings) -> None:
    unknown = [lang for lang in settings.languages if lang not in LANGUAGES]
    if unknown:
        raise CodesearchError(f"unknown language {unknown[0]!r} (supported: {', '.join(LANGUAGES)})")


class WriterBusy(CodesearchError):
    """Another process (or thread) is writing this index."""


@contextmanager
def writer_lock(index_path: Path | str):
    """One writer per index: a second `codesearch index` (or daemon) fails fast instead of interleaving.
    An index in object storage has no lock to take: one writer is assumed there (objectstore.py)."""
    if is_remote(index_path):
        yield
        return
    index_path = Path(index_path)
    claim_index_dir(index_path)
    handle = open_lock(index_path / "write.lock")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WriterBusy(f"another codesearch process is writing the index at {index_path}") from None
        yield
    finally:
        os.close(handle)


def chunk_rows(chunk: Chunk, vectors: np.ndarray, repo: str = "", repo_in_ids: bool = False) -> list[dict]:
    """Store rows for one chunk: one per embedded window; window 0 carries the full-text field."""
    named = repo if repo_in_ids else ""
    chunk_id = row_id(chunk.path, chunk.kind, chunk.name, chunk.start_line, chunk.content_hash, named)
    lexical = lexical_text(f"{chunk.name} {chunk.name} {Path(chunk.path).stem} {chunk.docstring} {chunk.code}")
    return [
        {
            "id": f"{chunk_id}:{window}",
            "chunk_id": chunk_id,
            "window": window,
            "path": chunk.path,
            "language": chunk.language,
            "kind": chunk.kind,
            "name": chunk.name,
            "signature": chunk.signature,
            "docstring": chunk.docstring,
            "start_line": chunk.start_line,
            "end_line": chunk.end_line,
            "code": chunk.code,
            "content_hash": chunk.content_hash,
            "lexical": lexical if window == 0 else "",
            "vector": vector,
            "repo": repo,
        }
        for window, vector in enumerate(vectors)
    ]


def _open_store(
    index_path: Path | str, folder: ModelFolder, settings: Settings, rebuild: bool, report: IndexReport
) -> tuple[Store, bool]:
    """The store to write, and whether it starts empty (new, rebuilt, or made for another model).

    An existing index that can be updated is updated in place. Anything else is built in a new
    generation (or an interrupted build of the same kind is resumed) while the old index, if there
    is one, keeps answering queries until `Store.finish` switches to the new one.
    """
    wanted = IndexMeta(
        schema=SCHEMA_VERSION,
        model_id=folder.model_id,
        dimension=folder.dimension,
        max_length=folder.max_length,
        window_overlap=settings.window_overlap,
        created_at=time.time(),
    )
    try:
        store = open_store(index_path, create=True)
        old = store.meta
        if old is not None and not rebuild:
            store.file_states()  # a damaged index fails here, with its message, rather than mid-run
    except DamagedIndex:
        if not rebuild:
            raise
        old, store = None, empty_store(index_path)
    if old is not None and not rebuild and wanted.same_vectors(old):
        store.write_meta(replace_meta(old, complete=False))
        return store, False
    if rebuild:
        report.rebuilt = "--rebuild asked for"
    elif old is not None and old.model_id != wanted.model_id:
        report.rebuilt = f"model changed from {old.model_id} to {wanted.model_id}: rebuilding the index"
    elif old is not None:
        report.rebuilt = "index format or windowing changed: rebuilding the index"
    if old is None and not store.meta_exists():
        store.reset(wanted)  # nothing to keep serving: the new index is visible as it fills
    else:
        store.begin(wanted)
    return store, True


def scope_to_repo(store: Store, settings: Settings, root: Path) -> None:
    """Name the repository a run writes. A repository's own index (a folder inside it) keeps the name
    it was first indexed under, so a moved or copied checkout is not indexed twice under two names;
    an index several repositories share (elsewhere, or in object storage) takes `repo_name` or the
    folder's name, and names the repository in row ids too."""
    root = root.resolve()
    own = not settings.remote_index and settings.index_path(root).is_relative_to(root)
    name = settings.repo_name
    if not name and own:
        known = store.repos()
        name = next(iter(known)) if len(known) == 1 else ""
    store.scope_to_repo(name or root.name, shared=not own)


def secret_rules_note(store: Store) -> str:
    """Where the secret rules a repository's files were last all read under are kept: one per
    repository in a shared index, whose repositories may each have their own rules."""
    if not store.repo_in_ids:
        return SECRET_RULES_FILE
    return f"{SECRET_RULES_FILE}-{hashlib.sha1(store.repo.encode('utf-8', 'surrogatepass')).hexdigest()[:16]}"


@dataclass
class _Run:
    """What one indexing run works with: the repository, its settings, the model, and the report."""

    root: Path
    settings: Settings
    folder: ModelFolder
    report: IndexReport
    tick: Progress
    encoder: Encoder | None
    batch_chunks: int

    @classmethod
    def start(
        cls, root: Path, settings: Settings, encoder: Encoder | None, progress: Progress | None, batch_chunks: int
    ) -> "_Run":
        root = root.resolve()
        if not root.is_dir():
            raise CodesearchError(f"not a directory: {root}")
        check_languages(settings)
        folder = encoder.folder if encoder else resolve_model(settings.model)
        report = IndexReport(root=str(root), index_path=settings.index_location(root), model_id=folder.model_id)
        return cls(root, settings, folder, report, progress or (lambda stage, done, total: None), encoder, batch_chunks)

    @property
    def walk_options(self) -> dict:
        return walk_options(self.settings)

    def sync_tree(self, store: Store) -> None:
        """Bring every file of the tree up to date and drop the rows of files no longer in it."""
        walked = walk(self.root, **self.walk_options)
        self.report.files = len(walked.files)
        self.report.skipped.update(walked.skipped)
        self.report.skipped_paths.extend(walked.skipped_paths)
        self.report.secret_rules.update(walked.secret_rules)
        states = store.file_states()
        in_scope = {f.path for f in walked.files}
        # Under new secret rules (or a first run of this version) every file is read again, so that
        # one indexed before a rule found its secret loses its rows; unchanged ones are not re-embedded.
        rules, note = fingerprint(self.settings), secret_rules_note(store)
        reread = store.read_note(note) != rules
        self.write(store, walked.files, [p for p in states if p not in in_scope], states, reread)
        if reread:
            store.write_note(note, rules)

    def sync_paths(self, store: Store, paths: Iterable[str]) -> None:
        """Bring just `paths` up to date; a path that is gone or out of scope loses its rows (a gone
        directory, every file below it)."""
        states = store.file_states()
        files, gone = [], []
        for path in sorted(set(paths)):
            found = scope_of(self.root, path, **self.walk_options)
            if isinstance(found, SourceFile):
                files.append(found)
                continue
            gone.extend(p for p in states if p == path or p.startswith(path.rstrip("/") + "/"))
            if found != NOT_CODE:
                self.report.skipped[found] += 1
                self.report.skipped_paths.append((path, found))
        self.report.files = len(files)
        self.write(store, files, sorted(set(gone)), states)

    def write(
        self, store: Store, files: list[SourceFile], gone: list[str], states: dict[str, FileState], reread: bool = False
    ) -> None:
        """Re-read the files whose size or mtime changed (all of them with `reread`), embed what is new,
        commit, drop `gone`."""
        deleted = sorted(gone)
        candidates = [
            f for f in files
            if reread or (s := states.get(f.path)) is None or (s.size, s.mtime_ns) != (f.size, f.mtime_ns)
        ]
        pending, touched = self.read(candidates, states, deleted)
        if touched:  # same bytes, new mtime: record the new stat so the next run skips them
            store.replace_files([], [], touched)
        if pending:
            _embed_and_write(store, self.embedder(), pending, self.settings, self.report, self.tick, self.batch_chunks)
        if deleted:
            store.delete_files(deleted)
            self.report.files_deleted = len(deleted)
        found_secrets = bool(self.report.secret_rules)
        if found_secrets and set(self.report.secret_rules) & set(states):
            store.purge_history()  # rows that held a secret must not live on in old versions
        store.finish(changed=bool(pending or deleted or touched or self.report.rebuilt),
                     drop_replaced=found_secrets and bool(self.report.rebuilt))
        counts = store.counts()
        self.report.chunks, self.report.functions = counts["chunks"], counts["functions"]


    def read(
        self, candidates: list[SourceFile], states: dict[str, FileState], deleted: list[str]
    ) -> tuple[list[_Pending], list[FileState]]:
        """Read and chunk the files that may have changed, here (cluster.py spreads this over workers)."""
        return _read_candidates(candidates, states, self.settings, self.report, deleted, self.tick)

    def embedder(self) -> Embed:
        """What embeds the new chunks: this process's encoder (cluster.py: actors on the workers)."""
        s = self.settings
        self.encoder = self.encoder or Encoder(
            self.folder, device=s.device, threads=s.threads, batch_tokens=s.batch_tokens
        )
        return functools.partial(embed_chunks, self.encoder, s.window_overlap)


Embed = Callable[[list[Chunk]], list[np.ndarray]]  # chunks -> each one's window vectors [windows, dim]


def embed_chunks(encoder: Encoder, overlap: int, chunks: list[Chunk]) -> list[np.ndarray]:
    """Each chunk's window vectors, in order. A class's methods are chunks of their own: its first
    window stands for it."""
    out: list[np.ndarray] = [np.empty(0)] * len(chunks)
    for is_class in (False, True):
        group = [i for i, c in enumerate(chunks) if (c.kind == "class") == is_class]
        if not group:
            continue
        vectors = encoder.embed_texts(
            [chunks[i].code for i in group], kind="code", overlap=overlap, max_windows=1 if is_class else None,
            languages=[chunks[i].language for i in group],
        )
        for i, windows in zip(group, vectors):
            out[i] = windows
    return out


def walk_options(settings: Settings) -> dict:
    """The keyword arguments of `files.walk` (and `files.scope_of`) that `settings` ask for."""
    return {
        "extra_ignores": settings.ignore,
        "languages": settings.languages or None,
        "max_file_bytes": settings.max_file_bytes,
        "index_dir": settings.index_dir,
        "tracked_only": settings.tracked_only,
        "secrets": rules_for(settings),
    }


def build_index(
    root: Path,
    settings: Settings,
    *,
    rebuild: bool = False,
    progress: Progress | None = None,
    encoder: Encoder | None = None,
    batch_chunks: int = _BATCH_CHUNKS,
) -> IndexReport:
    """Bring the index of the repository at `root` up to date and report what was done.

    `progress(stage, done, total)` is called as work advances; `batch_chunks` chunks are embedded
    and committed together.
    """
    started = time.perf_counter()
    return walk_into_index(_Run.start(root, settings, encoder, progress, batch_chunks), settings, rebuild, started)


def walk_into_index(run: "_Run", settings: Settings, rebuild: bool, started: float) -> IndexReport:
    """Under the writer lock: open (or rebuild) the index and bring it in line with the whole tree."""
    index_path = run.report.index_path
    with writer_lock(index_path):
        store, _ = _open_store(index_path, run.folder, settings, rebuild, run.report)
        scope_to_repo(store, settings, run.root)
        run.sync_tree(store)
    run.report.seconds = time.perf_counter() - started
    return run.report


def update_files(
    root: Path,
    settings: Settings,
    paths: Iterable[str],
    *,
    encoder: Encoder | None = None,
    progress: Progress | None = None,
) -> IndexReport:
    """Re-index just `paths` (repo-relative, e.g. the files saved in an editor) and report what was done.

    Each path is judged with the same ignore rules as `build_index`: a changed file is re-read, a
    deleted, ignored or out-of-scope one loses its rows (a deleted directory, every file below it).
    An index that does not exist yet, or was made with another model, is built in full instead (a
    partial index must never look complete), and so is the tree when a path names a directory.
    """
    started = time.perf_counter()
    run = _Run.start(root, settings, encoder, progress, _BATCH_CHUNKS)
    index_path = run.report.index_path
    paths = list(paths)
    with writer_lock(index_path):
        store, empty = _open_store(index_path, run.folder, settings, False, run.report)
        scope_to_repo(store, settings, run.root)
        if empty or any((run.root / p).is_dir() for p in paths):  # a directory moved in: walk it all
            run.sync_tree(store)
        else:
            run.sync_paths(store, paths)
    run.report.seconds = time.perf_counter() - started
    return run.report


def _read_candidates(
    candidates: list[SourceFile],
    states: dict[str, FileState],
    settings: Settings,
    report: IndexReport,
    deleted: list[str],
    tick: Progress,
) -> tuple[list[_Pending], list[FileState]]:
    """Read and chunk the files that may have changed; split them into changed and merely touched."""
    pending: list[_Pending] = []
    touched: list[FileState] = []
    for done, file in enumerate(candidates, start=1):
        tick("reading", done, len(candidates))
        try:
            text, sha = read_source(file, settings.max_file_bytes, rules_for(settings))
            old = states.get(file.path)
            result = None if old is not None and old.sha256 == sha else chunk_text(text, file.language, file.path, cover=True)
        except SkipFile as skip:  # unreadable, binary, ... or a parse that ran out of time
            report.skipped[skip.reason] += 1
            report.skipped_paths.append((file.path, skip.reason))
            if skip.rule:
                report.secret_rules[file.path] = skip.rule
            if file.path in states:
                deleted.append(file.path)  # was indexed, now unreadable or binary: drop its rows
            continue
        report.files_read += 1
        if result is None:  # the bytes are the indexed ones: only the stat changed
            touched.append(FileState(file.path, file.size, file.mtime_ns, sha, file.language, states[file.path].chunks))
            continue
        if result.had_errors:
            report.syntax_errors += 1
        pending.append(_Pending(file, sha, result.chunks))
    return pending, touched


def _embed_and_write(
    store: Store,
    embed: Embed,
    pending: list[_Pending],
    settings: Settings,
    report: IndexReport,
    tick: Progress,
    batch_chunks: int,
) -> None:
    """Reuse stored vectors by content hash, embed the rest, and commit file batches in order."""
    # Look up every needed hash before the first write, so a function moved between two changed
    # files finds its old vectors even if its old file is rewritten first.
    known = store.vectors_for({c.content_hash for p in pending for c in p.chunks})
    total = sum(len(p.chunks) for p in pending)
    done = 0
    batch: list[_Pending] = []
    for item in pending:
        batch.append(item)
        if sum(len(p.chunks) for p in batch) >= batch_chunks or item is pending[-1]:
            rows = []
            fresh = {c.content_hash: c for p in batch for c in p.chunks if c.content_hash not in known}
            if fresh:
                group = list(fresh.values())
                for chunk, windows in zip(group, embed(group)):
                    known[chunk.content_hash] = windows
                    report.windows_embedded += len(windows)
                report.chunks_embedded += len(fresh)
            for p in batch:
                for chunk in p.chunks:
                    rows.extend(chunk_rows(chunk, known[chunk.content_hash], store.repo, store.repo_in_ids))
                report.chunks_reused += sum(1 for c in p.chunks if c.content_hash not in fresh)
            states = [
                FileState(p.file.path, p.file.size, p.file.mtime_ns, p.sha256, p.file.language, len(p.chunks))
                for p in batch
            ]
            store.replace_files([p.file.path for p in batch], rows, states)
            report.files_changed += len(batch)
            done += sum(len(p.chunks) for p in batch)
            tick("embedding", done, total)
            batch = []
