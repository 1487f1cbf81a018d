"""An index in object storage: `index_dir = "s3://bucket/prefix"`, shared by every reader that can reach it.

The layout mirrors a local index folder, with LanceDB itself holding what the folder keeps as files
(object stores have no rename and no lock, but a LanceDB commit is atomic):

    s3://bucket/prefix/notes.lance   one row per small document: "meta.json" (names the generation
                                     readers open), "secret-rules", and per generation
                                     "<generation>/pending.json" or "<generation>/retired"
    s3://bucket/prefix/db-<id>/      a generation: chunks.lance and files.lance, as in a folder

One writer at a time is assumed and not enforced: plain S3 has no lock that LanceDB could take, so
two writers can lose each other's commits (LanceDB's `s3+ddb://` scheme is the way to several).
Readers (query, similar, clones, status) only read. Credentials come from the usual AWS variables;
`CODESEARCH_S3_ENDPOINT` (or `AWS_ENDPOINT_URL`) points at an S3-compatible server, and plain HTTP
is allowed for a loopback endpoint, or anywhere with `CODESEARCH_S3_ALLOW_HTTP=1`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
import uuid
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa

from codesearch.errors import CodesearchError
from codesearch.store import (
    CHUNKS, FILE_SCHEMA, FILES, _RETIRE_AFTER_S, DamagedIndex, IndexMeta, Store, chunk_schema, replace_meta, sql_in,
    sql_str,
)

SCHEMES = ("s3://",)
NOTES = "notes"
_NOTE_SCHEMA = pa.schema([("name", pa.string()), ("text", pa.string())])
_META = "meta.json"


def is_remote(location: str | Path) -> bool:
    return str(location).startswith(SCHEMES)


def open_store(location: str | Path, *, create: bool = False, live: bool = False) -> Store:
    """The index at a folder path or an object-storage URI (see `Store.open` for the arguments)."""
    if is_remote(location):
        return ObjectStore.open(str(location), create=create, live=live)
    return Store.open(Path(location), create=create, live=live)


def index_exists(location: str | Path) -> bool:
    """Whether an index has been written at a folder path or object-storage URI (reads no tables)."""
    if not is_remote(location):
        return (Path(location) / _META).is_file()
    try:
        return ObjectStore(str(location).rstrip("/"), None, None)._read_meta() is not None
    except CodesearchError:
        return False


def empty_store(location: str | Path) -> Store:
    """A store with no tables open yet, for a writer that will `begin` a new generation in it."""
    return ObjectStore(str(location), None, None) if is_remote(location) else Store(Path(location), None, None)


def storage_options(environ: dict[str, str] | None = None) -> dict[str, str]:
    """LanceDB storage options from the AWS environment variables and an endpoint override."""
    env = os.environ if environ is None else environ
    options = {
        key: env[name]
        for key, name in (
            ("aws_access_key_id", "AWS_ACCESS_KEY_ID"),
            ("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY"),
            ("aws_session_token", "AWS_SESSION_TOKEN"),
        )
        if env.get(name)
    }
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        options["region"] = region
    endpoint = env.get("CODESEARCH_S3_ENDPOINT") or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["endpoint"] = endpoint
        if urlparse(endpoint).scheme == "http":
            if not (_loopback(urlparse(endpoint).hostname or "") or env.get("CODESEARCH_S3_ALLOW_HTTP") == "1"):
                raise CodesearchError(
                    f"the S3 endpoint {endpoint} is plain HTTP: use https, or set CODESEARCH_S3_ALLOW_HTTP=1"
                )
            options["allow_http"] = "true"
    return options


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _connect(uri: str, live: bool = False):
    import lancedb

    try:
        return lancedb.connect(
            uri, storage_options=storage_options(), read_consistency_interval=timedelta(0) if live else None
        )
    except CodesearchError:
        raise
    except Exception as exc:  # lancedb raises untyped errors for unreachable or refused stores
        raise CodesearchError(f"cannot open the index at {uri} ({str(exc).splitlines()[0][:200]})") from None


class ObjectStore(Store):
    """The tables of one generation of an index in object storage, and its notes table."""

    def __init__(self, path: str, db, meta: IndexMeta | None, tables: str = "db") -> None:
        super().__init__(path, db, meta, tables)  # `path` is the URI here
        self._root = None

    @classmethod
    def open(cls, path: str, *, create: bool = False, live: bool = False) -> "ObjectStore":
        store = cls(path.rstrip("/"), None, None)
        meta = store._read_meta()
        if meta is None and not create:
            raise CodesearchError(f"no index at {path}: run `codesearch index` first")
        if meta is not None:
            store.meta, store.tables = meta, meta.tables
            store.db = _connect(store._uri(meta.tables), live)
            try:
                names = set(store.db.list_tables().tables)
            except Exception as exc:  # noqa: BLE001 - an unreachable store or damaged listing
                raise store.damaged(exc) from None
            if not {CHUNKS, FILES} <= names and not create:
                raise DamagedIndex(f"index at {path} is damaged (its tables {meta.tables} are missing): "
                                   "run `codesearch index --rebuild`")
        return store

    def _uri(self, name: str) -> str:
        return f"{self.path}/{name}"

    # --- notes: what a folder keeps as small files ----------------------------------------------

    def _notes(self, create: bool = False):
        if self._root is None:
            self._root = _connect(str(self.path))
        if create:
            return self._root.create_table(NOTES, schema=_NOTE_SCHEMA, exist_ok=True)
        try:
            return self._root.open_table(NOTES)
        except ValueError:  # no notes yet: no index here
            return None

    def read_note(self, name: str) -> str:
        table = self._notes()
        if table is None:
            return ""
        table.checkout_latest()
        rows = table.search().where(f"name = {sql_str(name)}").select(["text"]).limit(1).to_list()
        return rows[0]["text"].strip() if rows else ""

    def write_note(self, name: str, text: str) -> None:
        row = pa.Table.from_pylist([{"name": name, "text": text}], schema=_NOTE_SCHEMA)
        upsert = self._notes(create=True).merge_insert("name").when_matched_update_all().when_not_matched_insert_all()
        upsert.execute(row)

    def _delete_notes(self, *names: str) -> None:
        table = self._notes()
        if table is not None:
            table.delete(sql_in("name", names))

    def _read_meta(self) -> IndexMeta | None:
        text = self.read_note(_META)
        if not text:
            return None
        try:
            return IndexMeta(**json.loads(text))
        except (ValueError, TypeError) as exc:
            raise DamagedIndex(f"index at {self.path} has a damaged meta.json ({exc}): run `codesearch index --rebuild`")

    def meta_exists(self) -> bool:
        return bool(self.read_note(_META))

    # --- lifecycle -------------------------------------------------------------------------------

    def write_meta(self, meta: IndexMeta) -> None:
        self.write_note(_META, json.dumps(asdict(meta)))
        self.meta = meta

    def begin(self, meta: IndexMeta, *, resume: bool = True) -> bool:
        """Start a new empty generation for `meta` (an interrupted remote build is not resumed: it
        is dropped by the next `finish` and built again)."""
        self._tables.clear()
        self._vectors = None
        name = f"db-{uuid.uuid4().hex[:12]}"
        meta = replace_meta(meta, tables=name, complete=False)
        self.write_note(f"{name}/generation", str(time.time()))  # how drop_old_generations finds it
        self.write_note(f"{name}/pending.json", json.dumps(asdict(meta)))
        self.db, self.tables, self.meta = _connect(self._uri(name)), name, meta
        self.db.create_table(CHUNKS, schema=chunk_schema(meta.dimension))
        self.db.create_table(FILES, schema=FILE_SCHEMA)
        return False

    def _clear_pending(self) -> None:
        self._delete_notes(f"{self.tables}/pending.json")

    def drop_old_generations(self, keep_retired: bool = True) -> None:
        """As for a folder: unfinished generations go at once, replaced ones `_RETIRE_AFTER_S` later."""
        table = self._notes()
        if table is None:
            return
        names = table.search().select(["name", "text"]).limit(None).to_list()
        notes = {row["name"]: row["text"] for row in names}
        now = time.time()
        for generation in sorted({n.split("/", 1)[0] for n in notes if "/" in n} - {self.tables}):
            retired = notes.get(f"{generation}/retired")
            if not keep_retired or (f"{generation}/pending.json" in notes and retired is None):
                self._drop_generation(generation)
            elif retired is None:
                self.write_note(f"{generation}/retired", str(now))
            elif not keep_retired or now - float(retired) > _RETIRE_AFTER_S:
                self._drop_generation(generation)

    def _drop_generation(self, name: str) -> None:
        try:
            _connect(self._uri(name)).drop_all_tables()
        except Exception:  # noqa: BLE001 - already gone; its notes still go
            pass
        self._delete_notes(f"{name}/generation", f"{name}/pending.json", f"{name}/retired")
