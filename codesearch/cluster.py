"""Indexing on a Ray cluster: `codesearch index --cluster ray://HOST:PORT` (or `auto`).

The same run as indexer.py, with its two heavy stages spread over the cluster as Ray Data stages:

    list files (driver: files.walk, and the stat check against the index's file rows)
      -> read and chunk (CPU tasks: indexer._read_candidates on batches of files)
      -> embed (actors, each holding one ONNX Runtime Encoder: CUDA when the actor has a GPU, else CPU)
      -> write (driver: indexer._embed_and_write commits file batches to the one Lance table)

Incremental exactly as on one machine, because it is the same code: only files whose size or mtime
changed are read, and only chunks whose content hash has no vector in the index yet are embedded.
Workers read the files at the paths the driver walked: on several machines the repository must be at
the same path on each (a shared filesystem, or one checkout per node), and `codesearch` (with the
`cluster` extra) and the model folder must be installed there too. The driver holds the chunks of the
changed files of one repository at a time: index a very large organisation one repository per run,
into one shared index (`--index s3://...`, `--repo-name`).
"""

from __future__ import annotations

import pickle
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from codesearch.chunking import Chunk
from codesearch.config import Settings
from codesearch.errors import CodesearchError
from codesearch.files import SourceFile
from codesearch.indexer import (
    Embed, IndexReport, Progress, _Pending, _read_candidates, _Run, embed_chunks, walk_into_index,
)
from codesearch.model import Encoder, resolve_model
from codesearch.store import FileState

_READ_BATCH = 64  # files per read-and-chunk task
_EMBED_BATCH = 128  # chunks per actor call
_CLUSTER_BATCH_CHUNKS = 20_000  # chunks per embedding job and write phase (a job starts its actors once)


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise CodesearchError('indexing on a cluster needs Ray: pip install "codesearch[cluster]"') from None
    return ray


def connect(address: str) -> None:
    """Join the Ray cluster at `address` (`ray://HOST:PORT`), or with `auto` the one RAY_ADDRESS or a
    local `ray start` names, else a new local one; nothing to do when this process already joined one."""
    if address != "auto" and not address.startswith("ray://"):
        raise CodesearchError(f"--cluster takes ray://HOST:PORT or auto, got {address!r}")
    ray = _ray()
    if ray.is_initialized():
        return
    try:
        ray.init(address=None if address == "auto" else address, log_to_driver=False, include_dashboard=False)
    except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ...
        raise CodesearchError(f"cannot join the Ray cluster at {address}: {str(exc).splitlines()[0][:200]}") from None


def default_workers() -> int:
    """One embedding actor per GPU in the cluster, else one per CPU."""
    resources = _ray().cluster_resources()
    return int(resources.get("GPU", 0)) or max(1, int(resources.get("CPU", 1)))


# --- the stages, as they run on the workers --------------------------------------------------------


def _read_batch(batch: dict, settings: Settings) -> dict:
    """Read and chunk a batch of files with the single-machine code; results travel pickled."""
    files, states = [], {}
    for blob in batch["file"]:
        file, state = pickle.loads(blob)
        files.append(file)
        if state is not None:
            states[file.path] = state
    report = IndexReport(root="", index_path="", model_id="")
    deleted: list[str] = []
    pending, touched = _read_candidates(files, states, settings, report, deleted, lambda *_: None)
    return {"result": [pickle.dumps((pending, touched, report, deleted))]}


class EmbedActor:
    """Holds one Encoder for the life of an embedding job; embeds batches of chunk texts."""

    def __init__(self, model: str, device: str, threads: int, batch_tokens: int, overlap: int) -> None:
        import ray

        gpu = bool(ray.get_gpu_ids())
        self.encoder = Encoder(resolve_model(model), device="cuda" if gpu and device != "cpu" else "cpu",
                               threads=threads, batch_tokens=batch_tokens)
        self.overlap = overlap

    def __call__(self, batch: dict) -> dict:
        chunks = [SimpleNamespace(kind=kind, code=code, language=language)
                  for kind, code, language in zip(batch["kind"], batch["code"], batch["language"])]
        vectors = embed_chunks(self.encoder, self.overlap, chunks)  # duck-typed: kind, code and language are all it reads
        return {
            "index": batch["index"],
            "windows": np.asarray([len(v) for v in vectors], dtype=np.int32),
            "vectors": [np.ascontiguousarray(v, dtype=np.float32).tobytes() for v in vectors],
        }


# --- the driver ------------------------------------------------------------------------------------


class _ClusterRun(_Run):
    """An indexing run whose reading and embedding happen on the cluster."""

    workers: int = 1

    def read(
        self, candidates: list[SourceFile], states: dict[str, FileState], deleted: list[str]
    ) -> tuple[list[_Pending], list[FileState]]:
        if not candidates:
            return [], []
        import ray.data

        items = [{"file": pickle.dumps((f, states.get(f.path)))} for f in candidates]
        blocks = max(1, min(len(items) // _READ_BATCH + 1, 4 * self.workers))
        ds = ray.data.from_items(items, override_num_blocks=blocks)
        ds = ds.map_batches(_read_batch, fn_kwargs={"settings": self.settings}, batch_size=_READ_BATCH, num_cpus=1)
        pending, touched, done = [], [], 0
        for row in _gather(ds, batches=False):
            part_pending, part_touched, part, gone = pickle.loads(row["result"])
            pending.extend(part_pending)
            touched.extend(part_touched)
            deleted.extend(gone)
            self.report.files_read += part.files_read
            self.report.syntax_errors += part.syntax_errors
            self.report.skipped.update(part.skipped)
            self.report.skipped_paths.extend(part.skipped_paths)
            self.report.secret_rules.update(part.secret_rules)
            done += len(part_pending) + len(part_touched) + sum(part.skipped.values())
            self.tick("reading", done, len(candidates))
        order = {f.path: i for i, f in enumerate(candidates)}  # the order one machine would commit in
        pending.sort(key=lambda p: order[p.file.path])
        return pending, touched

    def embedder(self) -> Embed:
        s = self.settings
        options = {"model": str(self.folder.path), "device": s.device, "threads": max(1, s.threads),
                   "batch_tokens": s.batch_tokens, "overlap": s.window_overlap}
        return lambda chunks: _embed_on_cluster(chunks, options, self.workers, s.device)


def _embed_on_cluster(chunks: list[Chunk], options: dict, workers: int, device: str) -> list[np.ndarray]:
    """Each chunk's window vectors, in order, from a pool of `workers` EmbedActors."""
    import ray.data

    items = [{"index": i, "kind": c.kind, "code": c.code, "language": c.language} for i, c in enumerate(chunks)]
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items) // _EMBED_BATCH + 1, 8 * workers)))
    gpus = 1 if device != "cpu" and _ray().cluster_resources().get("GPU", 0) >= 1 else 0
    ds = ds.map_batches(
        EmbedActor, fn_constructor_kwargs=options, batch_size=_EMBED_BATCH, concurrency=workers,
        num_gpus=gpus, num_cpus=0 if gpus else options["threads"],
    )
    out: list[np.ndarray | None] = [None] * len(chunks)
    dimension = None
    for batch in _gather(ds, batches=True):
        for i, n, blob in zip(batch["index"], batch["windows"], batch["vectors"]):
            flat = np.frombuffer(blob, dtype=np.float32)
            dimension = dimension or flat.size // int(n)
            out[int(i)] = flat.reshape(int(n), dimension)
    missing = sum(v is None for v in out)
    if missing:
        raise CodesearchError(f"the cluster returned no vectors for {missing} functions")
    return out


def _gather(ds, *, batches: bool) -> list:
    """A dataset's rows (or numpy batches), collected by a task on the cluster and returned here:
    running a dataset needs a driver inside the cluster, which a Ray Client (ray://) process is not."""
    ray = _ray()
    return ray.get(ray.remote(num_cpus=0)(_iterate).remote(ds, batches))


def _iterate(ds, batches: bool) -> list:
    if batches:
        return list(ds.iter_batches(batch_format="numpy", batch_size=None))
    return list(ds.iter_rows())


def build_index_on_cluster(
    root: Path,
    settings: Settings,
    address: str = "auto",
    *,
    rebuild: bool = False,
    progress: Progress | None = None,
    workers: int | None = None,
    batch_chunks: int = _CLUSTER_BATCH_CHUNKS,
) -> IndexReport:
    """`indexer.build_index` with reading and embedding on the Ray cluster at `address`; `workers`
    embedding actors (default: one per GPU, else one per CPU)."""
    started = time.perf_counter()
    connect(address)
    run = _ClusterRun.start(root, settings, None, progress, batch_chunks)
    run.workers = workers or default_workers()
    return walk_into_index(run, settings, rebuild, started)
