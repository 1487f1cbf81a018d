"""LanceDB: the index on disk. Schema, per-file atomic replace, deletes, vector and full-text search.

Layout of an index directory (`.codesearch/` by default, created user-only):

    CACHEDIR.TAG     marks the folder as ours (backup tools skip it); it carries a code only this user's
                     codesearch can make for this folder, and a folder without it is never used (indexdir.py)
    meta.json        schema version, the model and windowing the vectors were made with, and which
                     generation folder holds the tables
    db-<id>/         a generation: chunks.lance (one row per embedded window of a chunk) and
                     files.lance (one row per indexed file: size, mtime, sha256, so re-runs skip unchanged files)
    write.lock       held by the one writer

Every write is one LanceDB commit, so a reader (or a crash) sees the old rows or the new ones,
never half of a file. Chunks are written before their file rows: a crash in between makes the next
run re-read those files, and the replace is idempotent. A rebuild (new model, --rebuild, damage)
fills a new generation while meta.json still names the old one, and switches with one atomic
rename of meta.json when it is done: the previous index answers queries until then, and an
interrupted rebuild is resumed by the next run. A replaced generation is deleted a minute later,
when no reader that opened it can still be reading.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import re
import shutil
import time
import uuid
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from codesearch.errors import CodesearchError
from codesearch.indexdir import MARKER, claim_index_dir, is_index_dir, read_small, touch, verify_index_dir, write_atomic

__all__ = ["MARKER", "claim_index_dir", "is_index_dir"]  # kept here for the modules that import them from the store

SCHEMA_VERSION = 2  # 2: tables in a generation folder named by meta.json (1: always db/)
CHUNKS = "chunks"
FILES = "files"
_PENDING = "pending.json"  # in a generation that is being built and not yet named by meta.json
_RETIRED = "retired"  # in a generation meta.json no longer names; its mtime is when
_RETIRE_AFTER_S = 60.0  # a reader that opened a generation gets this long before it is deleted
_IN_BATCH = 500  # values per SQL IN (...) list


class DamagedIndex(CodesearchError):
    """The index's files cannot be read as an index: the way out is `codesearch index --rebuild`."""


@dataclass(frozen=True)
class IndexMeta:
    schema: int
    model_id: str
    dimension: int
    max_length: int
    window_overlap: int
    created_at: float
    updated_at: float = 0.0
    complete: bool = False  # False while a build or update is under way (or was interrupted)
    tables: str = "db"  # the generation folder holding the tables

    def same_vectors(self, other: "IndexMeta") -> bool:
        """Whether vectors made under `other` can be reused under self."""
        return (self.schema, self.model_id, self.dimension, self.max_length, self.window_overlap) == (
            other.schema, other.model_id, other.dimension, other.max_length, other.window_overlap
        )


@dataclass(frozen=True)
class FileState:
    path: str
    size: int
    mtime_ns: int
    sha256: str
    language: str
    chunks: int


def full_text_config():
    """How the `lexical` column is indexed for full-text search: LanceDB's BM25 with its defaults
    (lower case, English stemming and stop words), over `codesearch.lexical` tokens."""
    from lancedb.index import FTS

    return FTS()


def sql_str(value: str) -> str:
    """A SQL string literal (quotes doubled: a file named it's.py must not break a predicate)."""
    return "'" + value.replace("'", "''") + "'"


def sql_in(column: str, values: Iterable[str]) -> str:
    return f"{column} IN ({', '.join(sql_str(v) for v in values)})"


def glob_to_like(pattern: str) -> str:
    """A path glob as a SQL LIKE pattern: `*` and `**` match any run of characters, `?` one."""
    out = []
    for ch in pattern.replace("**", "*"):
        if ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        elif ch in "%_\\":
            out.append("\\" + ch)
        else:
            out.append(ch)
    like = "".join(out)
    if not any(c in pattern for c in "*?"):
        like = like.rstrip("/") + "%"  # a plain path is a prefix: a directory or a file
    return like


def row_id(path: str, kind: str, name: str, start_line: int, content_hash: str, repo: str = "") -> str:
    """A chunk's id: stable for the same function at the same place, so a rebuild gives the same ids
    (the repository is part of the place: a fork's copy in a shared index is a row of its own)."""
    key = f"{path}\0{kind}\0{name}\0{start_line}\0{content_hash}" + (f"\0{repo}" if repo else "")
    return hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def chunk_schema(dimension: int) -> pa.Schema:
    return pa.schema(
        [
            ("id", pa.string()),  # row_id(...) + ":" + window
            ("chunk_id", pa.string()),
            ("window", pa.int32()),
            ("path", pa.string()),
            ("language", pa.string()),
            ("kind", pa.string()),
            ("name", pa.string()),
            ("signature", pa.string()),
            ("docstring", pa.string()),
            ("start_line", pa.int32()),
            ("end_line", pa.int32()),
            ("code", pa.string()),
            ("content_hash", pa.string()),
            ("lexical", pa.string()),  # identifier-split name, docstring and code, for full-text search
            ("vector", pa.list_(pa.float32(), dimension)),
            ("repo", pa.string()),  # the repository the file is in (last: older indexes get it added there)
        ]
    )


FILE_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("sha256", pa.string()),
        ("language", pa.string()),
        ("chunks", pa.int32()),
        ("repo", pa.string()),
    ]
)
REPO = "repo"  # the column naming each row's repository; an index made before it lacks it until a writer adds it


def _guarded(method):
    """Turn LanceDB's and Arrow's errors on damaged files into one clear DamagedIndex."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except CodesearchError:
            raise
        except Exception as exc:  # lancedb raises untyped errors (OSError, RuntimeError, ValueError...)
            raise self.failure(exc) from None

    return wrapper


class DiskFull(CodesearchError):
    """The disk that holds the index has no space left: nothing is damaged, a later run finishes the work."""


def _errno_of(exc: BaseException) -> int | None:
    """The OS error number behind an exception, also when LanceDB wraps it in text ("(os error 28)")."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.errno
    found = re.search(r"\(os error (\d+)\)", str(exc))
    if found:
        return int(found.group(1))
    if "No space left on device" in str(exc):
        return errno.ENOSPC
    return None


def generations(path: Path) -> list[Path]:
    """The generation folders in an index folder (`db` is an older index's single one)."""
    try:
        return sorted(
            p for p in path.iterdir()
            if (p.name == "db" or p.name.startswith("db-")) and p.is_dir() and not p.is_symlink()
        )
    except OSError:
        return []


class Store:
    """The LanceDB tables of one generation of an index directory."""

    def __init__(self, path: Path, db, meta: IndexMeta | None, tables: str = "db") -> None:
        self.path = path
        self.db = db
        self.meta = meta
        self.tables = tables  # the generation folder this store reads and writes
        self.repo = ""  # the repository this store's file-level reads and writes are scoped to ("" = all)
        self.repo_in_ids = False  # whether row ids name the repository (an index several repositories share)
        self._ann: tuple[str, object] | None = None  # (generation, its trusted ann.VectorIndex or None)
        self._tables: dict[str, object] = {}
        self._vectors: tuple[int, list[str], np.ndarray] | None = None  # (table version, row ids, matrix)
        self._mean: tuple[int, np.ndarray, int] | None = None  # (table version, mean vector, rows)

    @classmethod
    def open(cls, path: Path, *, create: bool = False, live: bool = False) -> "Store":
        """Open the index at `path` (the generation its meta.json names); with `create`, claim the
        directory (mode 0700) if missing, for a writer that will `reset` or `begin` it.

        `live` readers see every commit of a concurrent writer (the daemon, another CLI).
        """
        if create:
            claim_index_dir(path)
        else:
            verify_index_dir(path)
        meta = read_meta(path)
        if meta is None and not create:
            raise CodesearchError(f"no index at {path}: run `codesearch index` first")
        tables = meta.tables if meta is not None else "db"
        if meta is not None and not (path / tables).is_dir() and not create:
            raise DamagedIndex(f"index at {path} is damaged (its tables folder {tables} is missing): "
                               "run `codesearch index --rebuild`")
        return cls(path, _connect(path, tables, live) if meta is not None else None, meta, tables)

    def failure(self, exc: BaseException) -> CodesearchError:
        """The error to report for an exception LanceDB or Arrow raised on this index. Only what is
        left says "damaged": a full disk, a permission problem and text that cannot be encoded are
        named as what they are (none of them is cured by a rebuild)."""
        number = _errno_of(exc)
        if number in (errno.ENOSPC, errno.EDQUOT):
            return DiskFull(f"no space left on the device holding the index at {self.path}: free some space "
                            "and run again (the index is left as it was before this write)")
        if number in (errno.EACCES, errno.EPERM, errno.EROFS):
            return CodesearchError(f"cannot use the index at {self.path}: {os.strerror(number)}")
        if isinstance(exc, OverflowError):
            return CodesearchError(f"a number given is out of range ({str(exc).splitlines()[0][:100]})")
        if isinstance(exc, UnicodeError):
            return CodesearchError("text holds characters that are not valid Unicode (a lone surrogate): "
                                   "nothing was searched")
        return self.damaged(exc)

    def damaged(self, exc: BaseException) -> DamagedIndex:
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        return DamagedIndex(f"index at {self.path} is damaged ({detail}): run `codesearch index --rebuild`")

    # --- lifecycle -------------------------------------------------------------------------------

    def reset(self, meta: IndexMeta) -> None:
        """Start an empty index for `meta` in a new generation and name it in meta.json right away
        (a first build: there is no older index to keep serving)."""
        self.begin(meta, resume=False)
        self.write_meta(self.meta)

    @_guarded
    def begin(self, meta: IndexMeta, *, resume: bool = True) -> bool:
        """Switch this store to a generation for `meta` that meta.json does not name yet: an
        interrupted one made for the same vectors (when `resume`), else a new empty one.
        `finish` names it in meta.json. Returns whether an interrupted generation was resumed."""
        self._tables.clear()
        self._vectors = None
        if resume:
            for folder in generations(self.path):
                pending = _read_pending(folder)
                if pending is not None and pending.same_vectors(meta) and folder.name != self.tables:
                    try:
                        db = _connect(self.path, folder.name, live=False)
                        names = set(db.list_tables().tables)
                    except CodesearchError:
                        continue
                    if {CHUNKS, FILES} <= names:
                        self.db, self.tables = db, folder.name
                        self.meta = replace_meta(pending, tables=folder.name, complete=False)
                        return True
        name = f"db-{uuid.uuid4().hex[:12]}"
        folder = self.path / name
        folder.mkdir(mode=0o700)
        meta = replace_meta(meta, tables=name, complete=False)
        _write_json(folder / _PENDING, asdict(meta))
        self.db, self.tables, self.meta = _connect(self.path, name, live=False), name, meta
        self.db.create_table(CHUNKS, schema=chunk_schema(meta.dimension))
        self.db.create_table(FILES, schema=FILE_SCHEMA)
        return False

    @_guarded
    def write_meta(self, meta: IndexMeta) -> None:
        """Replace meta.json atomically; naming a generation there makes it the index readers see."""
        _write_json(self.path / "meta.json", asdict(meta))
        self.meta = meta

    @_guarded
    def drop_old_generations(self, keep_retired: bool = True) -> None:
        """Delete generations meta.json no longer names: unfinished ones at once, replaced ones once
        `_RETIRE_AFTER_S` have passed since they were replaced (a reader may still be on one)."""
        now = time.time()
        for folder in generations(self.path):
            if folder.name == self.tables:
                continue
            retired = folder / _RETIRED
            if not keep_retired or ((folder / _PENDING).exists() and not retired.exists()):
                shutil.rmtree(folder, ignore_errors=True)  # an abandoned build of another kind, or asked for
                continue
            if not retired.exists():
                touch(retired)
                continue
            if not keep_retired or now - retired.stat().st_mtime > _RETIRE_AFTER_S:
                shutil.rmtree(folder, ignore_errors=True)

    def _table(self, name: str):
        table = self._tables.get(name)
        if table is None:
            try:
                table = self._tables[name] = self.db.open_table(name)
            except Exception as exc:  # missing or damaged table files
                raise CodesearchError(
                    f"index at {self.path} is damaged ({name}: {exc}): run `codesearch index --rebuild`"
                ) from None
        return table

    @property
    def chunks(self):
        return self._table(CHUNKS)

    @property
    def files(self):
        return self._table(FILES)

    def meta_exists(self) -> bool:
        """Whether a meta.json is there at all (readable or not)."""
        return (self.path / "meta.json").exists()

    def read_note(self, name: str) -> str:
        """A small text file kept in the index folder beside meta.json ("" when there is none)."""
        return (read_small(self.path / name) or "").strip()

    @_guarded
    def write_note(self, name: str, text: str) -> None:
        """Write a small file in the index folder atomically (a crash leaves the old one or none)."""
        write_atomic(self.path / name, text + "\n")

    # --- repositories ----------------------------------------------------------------------------

    def has_repo_column(self) -> bool:
        return REPO in self.chunks.schema.names

    @_guarded
    def scope_to_repo(self, repo: str, *, shared: bool = True) -> None:
        """Scope file-level reads and writes to `repo` (in a `shared` index, row ids name it too, so a
        fork's copy of a function is a row of its own). A writer's call also gives an index made before
        the `repo` column that column, with `repo` in every existing row (two small commits, no re-embedding)."""
        for table in (self.chunks, self.files):
            if REPO not in table.schema.names:
                table.add_columns(pa.schema([(REPO, pa.string())]))
                table.update(values={REPO: repo})
        self.repo, self.repo_in_ids = repo, shared

    @_guarded
    def repos(self) -> dict[str, int]:
        """Functions per repository, most first ({} in an index made before the `repo` column)."""
        if not self.has_repo_column():
            return {}
        column = self.chunks.search().where("window = 0").select([REPO]).limit(None).to_arrow()[REPO]
        counts: dict[str, int] = {}
        for name in column.to_pylist():
            counts[name or ""] = counts.get(name or "", 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def _hit_columns(self) -> list[str]:
        return _HIT_COLUMNS + ([REPO] if self.has_repo_column() else [])

    def _in_repo(self, predicate: str) -> str:
        return f"({predicate}) AND {REPO} = {sql_str(self.repo)}" if self.repo else predicate

    # --- reads for incremental indexing ---------------------------------------------------------

    @_guarded
    def file_states(self) -> dict[str, FileState]:
        query = self.files.search()
        if self.repo and REPO in self.files.schema.names:
            query = query.where(f"{REPO} = {sql_str(self.repo)}")
        table = query.limit(None).to_arrow().to_pylist()
        fields = {f.name for f in FILE_SCHEMA} - {REPO}
        return {row["path"]: FileState(**{k: v for k, v in row.items() if k in fields}) for row in table}

    @_guarded
    def vectors_for(self, hashes: set[str]) -> dict[str, np.ndarray]:
        """Stored vectors by content hash ([windows, dim] each), for chunks that need no new embedding."""
        if not hashes:
            return {}
        table = self.chunks
        present = set(table.search().select(["content_hash"]).limit(None).to_arrow()["content_hash"].to_pylist())
        wanted = sorted(hashes & present)
        found: dict[str, dict[int, np.ndarray]] = {}
        for start in range(0, len(wanted), _IN_BATCH):
            batch = wanted[start : start + _IN_BATCH]
            rows = (
                table.search()
                .where(sql_in("content_hash", batch))
                .select(["content_hash", "window", "vector"])
                .limit(None)
                .to_arrow()
            )
            hashes_col = rows["content_hash"].to_pylist()
            windows = rows["window"].to_pylist()
            vectors = np.asarray(rows["vector"].to_pylist(), dtype=np.float32)
            for h, w, v in zip(hashes_col, windows, vectors):
                found.setdefault(h, {})[w] = v
        # Keep only complete window runs 0..n-1.
        out = {}
        for h, by_window in found.items():
            n = max(by_window) + 1
            if len(by_window) == n:
                out[h] = np.stack([by_window[i] for i in range(n)])
        return out

    # --- writes ----------------------------------------------------------------------------------

    @_guarded
    def replace_files(self, paths: Sequence[str], rows: list[dict], states: Sequence[FileState]) -> None:
        """Make `rows` the only chunk rows of `paths` (one commit), then record the files' states."""
        if paths:
            chunk_table = pa.Table.from_pylist(rows, schema=chunk_schema(self.meta.dimension))
            (
                self.chunks.merge_insert("id")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .when_not_matched_by_source_delete(self._in_repo(sql_in("path", paths)))
                .execute(chunk_table)
            )
        if states:
            file_table = pa.Table.from_pylist([dict(asdict(s), repo=self.repo) for s in states], schema=FILE_SCHEMA)
            (
                self.files.merge_insert([REPO, "path"])
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute(file_table)
            )

    @_guarded
    def delete_files(self, paths: Sequence[str]) -> None:
        """Remove deleted files: their chunks first, then their file rows."""
        for start in range(0, len(paths), _IN_BATCH):
            batch = paths[start : start + _IN_BATCH]
            self.chunks.delete(self._in_repo(sql_in("path", batch)))
            self.files.delete(self._in_repo(sql_in("path", batch)))

    @_guarded
    def purge_history(self) -> None:
        """Make rows deleted from the chunk table unreadable at once: every row still in it is written
        again into new files, and every older version, index file and replaced generation is deleted
        now rather than a minute later. For rows that held a secret (LanceDB only marks a deleted row
        as deleted; its bytes stay in the data file, and old versions keep it for their readers).
        A reader still on an older version fails its next read and opens the index again."""
        table = self.chunks
        table.add(table.to_arrow(), mode="overwrite")  # drops the full-text index too: finish() makes it again
        self._vectors = self._mean = None
        self._ann = None
        with warnings.catch_warnings():  # LanceDB warns that older readers will fail: that is the point
            warnings.simplefilter("ignore", UserWarning)
            for table in (self.chunks, self.files):
                table.optimize(cleanup_older_than=timedelta(0), delete_unverified=True)

    @_guarded
    def finish(self, changed: bool = True, drop_replaced: bool = False) -> None:
        """After a run: index new rows for full-text search, compact, drop old versions, mark complete.
        `drop_replaced` deletes the generations this one replaces at once (they may hold a secret)."""
        chunks = self.chunks
        if not any(ix.index_type == "FTS" for ix in chunks.list_indices()):
            chunks.create_index("lexical", config=full_text_config(), replace=True)
        if changed:
            chunks.optimize(cleanup_older_than=_retention(chunks))
            self.files.optimize(cleanup_older_than=_retention(self.files))
            from codesearch.ann import maintain

            maintain(self)  # past ann.ANN_MIN_ROWS rows: a vector index, trusted once its recall is measured
        self.write_meta(replace_meta(self.meta, updated_at=time.time(), complete=True, tables=self.tables))
        self._clear_pending()  # named in meta.json now
        self.drop_old_generations(keep_retired=not drop_replaced)

    def _clear_pending(self) -> None:
        (self.path / self.tables / _PENDING).unlink(missing_ok=True)

    # --- queries ---------------------------------------------------------------------------------

    @_guarded
    def vector_search(self, vector: np.ndarray, limit: int, where: str | None,
                      center: np.ndarray | None = None) -> list[dict]:
        """Nearest rows by cosine distance (`_distance` = 1 - cosine), nearest first.

        Without a filter, an exact search over the vectors held in memory (measured: ~8 ms for 116k
        x 256 where LanceDB's flat scan took ~210 ms); with one, LanceDB's exact prefiltered search.
        Past ann.ANN_MIN_ROWS rows, the vector index with the search settings its measured recall
        was found good enough with (ann.py), filtered or not.

        With `center` the cosine is taken after subtracting it from the query and every row
        (`centered_cosine`): exact over the vectors in memory; through LanceDB, the re-ranked
        `_RERANK` x `limit` nearest rows by plain cosine.
        """
        if where or self._trusted_vector_index() is not None:
            if center is None:
                return self._lance_search(vector, limit, where)
            pool = self._lance_search(vector, limit * _RERANK, where, ["vector"])
            if not pool:
                return []
            scores = centered_cosine(vector, np.asarray([row.pop("vector") for row in pool], dtype=np.float32), center)
            order = np.argsort(-scores, kind="stable")[:limit]
            return [dict(pool[i], _distance=float(1.0 - scores[i])) for i in order]
        ids, matrix = self._vector_matrix()
        if not ids:
            return []
        scores = matrix @ vector.astype(np.float32) if center is None else centered_cosine(vector, matrix, center)
        n = min(limit, len(ids))
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top], kind="stable")]
        rows = self.chunks.take_offsets([int(i) for i in top]).select(self._hit_columns() + ["id"]).to_list()
        by_id = {row["id"]: row for row in rows}
        if len(by_id) != n or any(ids[i] not in by_id for i in top):  # offsets moved: fetch by id
            found = self.chunks.search().where(sql_in("id", [ids[i] for i in top])).select(self._hit_columns() + ["id"])
            by_id = {row["id"]: row for row in found.limit(None).to_list()}
        return [dict(by_id[ids[i]], _distance=float(1.0 - scores[i])) for i in top if ids[i] in by_id]

    def _lance_search(self, vector: np.ndarray, limit: int, where: str | None, columns: Sequence[str] = ()) -> list[dict]:
        """LanceDB's search: through the trusted vector index if there is one, else exact (prefiltered)."""
        vector_index = self._trusted_vector_index()
        if vector_index is not None:
            from codesearch.ann import ann_query

            query = ann_query(self.chunks, vector, limit, vector_index.nprobes, vector_index.refine_factor)
        else:  # exact, even where an index exists that was not trusted
            query = self.chunks.search(vector.astype(np.float32), vector_column_name="vector")
            query = query.distance_type("cosine").bypass_vector_index()
        if where:
            query = query.where(where, prefilter=True)
        return query.select(self._hit_columns() + list(columns) + ["_distance"]).limit(limit).to_list()

    def _trusted_vector_index(self):
        """The generation's vector index when its measured recall is good enough and the table is big
        enough for it to be faster than exact search; else None."""
        if self._ann is None or self._ann[0] != self.tables:
            from codesearch.ann import ANN_MIN_ROWS, load

            found = load(self)
            usable = found is not None and found.trusted and self.chunks.count_rows() >= ANN_MIN_ROWS
            self._ann = (self.tables, found if usable else None)
        return self._ann[1]

    @_guarded
    def _vector_matrix(self) -> tuple[list[str], np.ndarray]:
        """Every row's vector, in table order, loaded once per table version."""
        table = self.chunks
        version = table.version
        if self._vectors is None or self._vectors[0] != version:
            data = table.search().select(["id", "vector"]).limit(None).to_arrow()
            ids = data["id"].to_pylist()
            flat = data["vector"].combine_chunks().values.to_numpy(zero_copy_only=False)
            matrix = np.asarray(flat, dtype=np.float32).reshape(len(ids), self.meta.dimension)
            self._vectors = (version, ids, matrix)
        return self._vectors[1], self._vectors[2]

    @_guarded
    def mean_vector(self) -> tuple[np.ndarray, int]:
        """The mean of every row's vector (of up to `_MEAN_SAMPLE` rows picked at random in a bigger
        table) and the number of rows, once per table version."""
        table = self.chunks
        version = table.version
        if self._mean is None or self._mean[0] != version:
            rows = table.count_rows()
            if rows == 0:
                mean = np.zeros(self.meta.dimension, dtype=np.float32)
            elif rows <= _MEAN_SAMPLE or self._trusted_vector_index() is None:
                mean = self._vector_matrix()[1].mean(axis=0)
            else:
                picked = np.random.default_rng(0).choice(rows, _MEAN_SAMPLE, replace=False)
                column = table.take_offsets([int(i) for i in picked]).select(["vector"]).to_arrow()["vector"]
                flat = column.combine_chunks().values.to_numpy(zero_copy_only=False)
                mean = np.asarray(flat, dtype=np.float32).reshape(-1, self.meta.dimension).mean(axis=0)
            self._mean = (version, mean, rows)
        return self._mean[1], self._mean[2]

    @_guarded
    def text_search(self, text: str, limit: int, where: str | None) -> list[dict]:
        if not text.strip():
            return []
        query = self.chunks.search(text, query_type="fts", fts_columns="lexical")
        if where:
            query = query.where(where, prefilter=True)
        return query.select(self._hit_columns() + ["_score"]).limit(limit).to_list()

    @_guarded
    def definitions(self, name: str, where: str | None, limit: int = 50) -> list[dict]:
        """Window-0 rows of the chunks named `name`, `Something.name` or `file:name` (module-level code
        that sets it), whatever the case: the candidates for a query that names a symbol (ranking.symbol_of)."""
        lowered = name.lower()
        escaped = lowered.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        predicate = (f"window = 0 AND (lower(name) = {sql_str(lowered)} OR lower(name) LIKE {sql_str('%.' + escaped)}"
                     f" OR lower(name) LIKE {sql_str('%:' + escaped)})")
        if where:
            predicate += f" AND ({where})"
        return self.chunks.search().where(predicate).select(self._hit_columns()).limit(limit).to_list()

    @_guarded
    def chunks_at(self, path: str, line: int) -> list[dict]:
        """Window-0 rows of the chunks of `path` that contain `line`, innermost first."""
        rows = (
            self.chunks.search()
            .where(f"path = {sql_str(path)} AND window = 0 AND start_line <= {line} AND end_line >= {line}")
            .select(self._hit_columns() + ["vector"])
            .limit(None)
            .to_list()
        )
        return sorted(rows, key=lambda r: r["end_line"] - r["start_line"])

    @_guarded
    def chunk_windows(self, path: str) -> list[dict]:
        """Every window row of every chunk of `path`, with its vector."""
        query = self.chunks.search().where(f"path = {sql_str(path)}").select(self._hit_columns() + ["vector"])
        return query.limit(None).to_list()

    @_guarded
    def vectors_of_chunk(self, chunk_id: str) -> np.ndarray:
        rows = (
            self.chunks.search().where(f"chunk_id = {sql_str(chunk_id)}").select(["window", "vector"]).limit(None).to_list()
        )
        rows.sort(key=lambda r: r["window"])
        return np.asarray([r["vector"] for r in rows], dtype=np.float32)

    @_guarded
    def counts(self) -> dict[str, int]:
        chunks = self.chunks
        return {
            "files": self.files.count_rows(),
            "chunks": chunks.count_rows("window = 0"),
            "functions": chunks.count_rows("window = 0 AND kind IN ('function', 'method', 'class')"),
            "rows": chunks.count_rows(),
        }

    @_guarded
    def languages(self) -> dict[str, int]:
        column = self.chunks.search().where("window = 0").select(["language"]).limit(None).to_arrow()["language"]
        counts: dict[str, int] = {}
        for lang in column.to_pylist():
            counts[lang] = counts.get(lang, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def centered_cosine(vector: np.ndarray, matrix: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Cosine of `vector` to each row of `matrix` [N, D] after subtracting `center` from both: [N].

    The vectors of one repository share a large common direction (all its functions look alike
    next to everything else a model has seen); taking it out spreads them apart. A row equal to
    `vector` still scores 1.
    """
    center = center.astype(np.float32)
    query = vector.astype(np.float32) - center
    query /= max(float(np.linalg.norm(query)), 1e-12)
    # |row - center|^2 and (row - center) . query without building the centered [N, D] copy
    squared = np.einsum("nd,nd->n", matrix, matrix) - 2.0 * (matrix @ center) + float(center @ center)
    return (matrix @ query - float(center @ query)) / np.sqrt(np.maximum(squared, 1e-12))


_RERANK = 4  # a centered search through LanceDB re-ranks this many times the rows it returns
_MEAN_SAMPLE = 50_000  # rows a bigger table's mean vector is estimated from

_HIT_COLUMNS = [
    "chunk_id", "window", "path", "language", "kind", "name", "signature",
    "docstring", "start_line", "end_line", "code", "content_hash",
]


def _retention(table) -> timedelta:
    """How old a table version must be to be deleted: every version replaced less than
    _RETIRE_AFTER_S ago is kept, so a reader that opened it (however long ago it was made) can
    finish. Ages are taken from the newest version's time, which this write has just made."""
    versions = sorted(table.list_versions(), key=lambda v: v["version"])
    newest = keep_from = versions[-1]["timestamp"]
    for older, newer in zip(versions, versions[1:]):
        if (newest - newer["timestamp"]).total_seconds() < _RETIRE_AFTER_S:
            keep_from = older["timestamp"]
            break
    return timedelta(seconds=max(_RETIRE_AFTER_S, (newest - keep_from).total_seconds() + _RETIRE_AFTER_S))


def replace_meta(meta: IndexMeta, **changes) -> IndexMeta:
    from dataclasses import replace

    return replace(meta, **changes)


def _write_json(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2) + "\n")


def _connect(path: Path, tables: str, live: bool):
    import lancedb

    try:
        return lancedb.connect(str(path / tables), read_consistency_interval=timedelta(0) if live else None)
    except Exception as exc:  # lancedb raises untyped errors on a damaged directory
        raise DamagedIndex(f"index at {path} is unreadable ({exc}): run `codesearch index --rebuild`") from None


def _read_pending(folder: Path) -> IndexMeta | None:
    try:
        return IndexMeta(**json.loads(read_small(folder / _PENDING) or "null"))
    except (ValueError, TypeError):
        return None


def read_meta(path: Path) -> IndexMeta | None:
    """The index's meta.json, or None when there is none; a clear error when it is unreadable."""
    file = path / "meta.json"
    if not os.path.lexists(file):
        return None
    try:
        text = read_small(file)
        if text is None:
            raise ValueError("not a regular file of ours")
        return IndexMeta(**json.loads(text))
    except (ValueError, TypeError) as exc:
        raise DamagedIndex(f"index at {path} has a damaged meta.json ({exc}): run `codesearch index --rebuild`")
