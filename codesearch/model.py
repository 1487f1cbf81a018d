"""The model folder contract, and embedding with ONNX Runtime.

A model is a folder that the trainer writes and the engine only reads:

    model.onnx        inputs  input_ids (int64, [batch, seq]), attention_mask (int64, [batch, seq])
                      output  one L2-normalised embedding per row (float32, [batch, dim]);
                      pooling happens inside the graph. Right padding.
    tokenizer.json    a Hugging Face `tokenizers` file; its post-processor adds any special tokens.
    codesearch.json   {"format": 1, "model_id", "dimension", "max_length", "pooling",
                       "query_prefix", "code_prefix", "pad_token_id", "hybrid_weight"[, "query_model"]
                       [, "code_view"]}
    query.onnx        optional, named by "query_model": a query tower, the same interface as
                      model.onnx, that embeds natural-language queries into model.onnx's space
                      (an asymmetric dual encoder); without it model.onnx embeds queries too.
    MODEL_CARD.md     how it was made (not read by the engine).

"code_view" names how code is shown to the model: "" as written; "docstring-line" with a Python
docstring joined into one line of plain text without its quotes (`chunking.docstring_as_line`).

Texts longer than `max_length` tokens are split into overlapping windows (`token_windows`), each
embedded on its own; the caller decides how to aggregate them (the store keeps one row per window).
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codesearch.errors import CodesearchError

CONTRACT_FILE = "codesearch.json"
FORMAT_VERSION = 1
CODE_VIEWS = ("", "docstring-line")


@dataclass(frozen=True)
class ModelFolder:
    """What `codesearch.json` says about a model, and where its files are."""

    path: Path
    model_id: str
    dimension: int
    max_length: int
    pooling: str
    query_prefix: str
    code_prefix: str
    pad_token_id: int
    # The model's weight beside full-text search's (1.0) in hybrid fusion, calibrated by the trainer
    # on held-out pairs: a model weaker than BM25 still adds to it with a lower weight.
    hybrid_weight: float = 1.0
    # The file of the query tower ("" when model.onnx embeds queries too).
    query_model: str = ""
    # How code is shown to the model: one of CODE_VIEWS.
    code_view: str = ""

    @classmethod
    def read(cls, path: str | Path) -> "ModelFolder":
        path = Path(path)
        contract = path / CONTRACT_FILE
        for name in ("model.onnx", "tokenizer.json", CONTRACT_FILE):
            if not (path / name).is_file():
                raise CodesearchError(f"not a codesearch model folder: {path} has no {name}")
        try:
            meta = json.loads(contract.read_text(encoding="utf-8"))
            if meta.get("format") != FORMAT_VERSION:
                raise CodesearchError(
                    f"model {path}: {CONTRACT_FILE} has format {meta.get('format')!r}, "
                    f"this codesearch reads format {FORMAT_VERSION}"
                )
            return cls(
                path=path,
                model_id=str(meta["model_id"]),
                dimension=int(meta["dimension"]),
                max_length=int(meta["max_length"]),
                pooling=str(meta.get("pooling", "")),
                query_prefix=str(meta.get("query_prefix", "")),
                code_prefix=str(meta.get("code_prefix", "")),
                pad_token_id=int(meta.get("pad_token_id", 0)),
                hybrid_weight=float(meta.get("hybrid_weight", 1.0)),
                query_model=_query_model(path, meta.get("query_model") or ""),
                code_view=_code_view(meta.get("code_view") or ""),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CodesearchError(f"model {path}: bad {CONTRACT_FILE}: {exc}") from None

    def write(self) -> None:
        """Write `codesearch.json` (used by the trainer's export)."""
        meta = {
            "format": FORMAT_VERSION,
            "model_id": self.model_id,
            "dimension": self.dimension,
            "max_length": self.max_length,
            "pooling": self.pooling,
            "query_prefix": self.query_prefix,
            "code_prefix": self.code_prefix,
            "pad_token_id": self.pad_token_id,
            "hybrid_weight": self.hybrid_weight,
        }
        if self.query_model:
            meta["query_model"] = self.query_model
        if self.code_view:
            meta["code_view"] = self.code_view
        (self.path / CONTRACT_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def _query_model(path: Path, name: object) -> str:
    """The contract's "query_model": a file name beside model.onnx that exists, or ""."""
    if not name:
        return ""
    if not isinstance(name, str) or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"query_model must be a file name in the folder, not {name!r}")
    if not (path / name).is_file():
        raise CodesearchError(f"not a codesearch model folder: {path} has no {name} (its query_model)")
    return name


def _code_view(name: object) -> str:
    """The contract's "code_view": one this codesearch knows."""
    if name not in CODE_VIEWS:
        known = ", ".join(repr(v) for v in CODE_VIEWS if v)
        raise ValueError(f"code_view {name!r} is not one this codesearch knows ({known})")
    return str(name)


def code_as_seen(texts: list[str], view: str, languages: Sequence[str] | None = None) -> list[str]:
    """Code as a model with `view` reads it. `languages` gives each text's language; without it, a
    text that parses cleanly as Python is taken for Python."""
    if view != "docstring-line":
        return list(texts)
    from codesearch.chunking import docstring_as_line

    if languages is None:
        return [docstring_as_line(t, only_if_clean=True) for t in texts]
    return [docstring_as_line(t) if lang == "python" else t for t, lang in zip(texts, languages, strict=True)]


def token_windows(ids: list[int], max_length: int, overlap: int) -> list[list[int]]:
    """Split token ids into windows of at most `max_length`, each overlapping the previous one.

    A text that fits is one window. Otherwise windows start every `max_length - overlap` tokens,
    and the last one ends at the last token, so the end of a long function is always embedded.
    """
    if len(ids) <= max_length:
        return [ids]
    overlap = min(max(overlap, 0), max_length // 2)
    stride = max_length - overlap
    windows = []
    start = 0
    while start + max_length < len(ids):
        windows.append(ids[start : start + max_length])
        start += stride
    windows.append(ids[len(ids) - max_length :])
    return windows


def pad_batch(rows: list[list[int]], pad_token_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token rows into (input_ids, attention_mask), both int64 [batch, longest]."""
    longest = max(len(r) for r in rows)
    input_ids = np.full((len(rows), longest), pad_token_id, dtype=np.int64)
    mask = np.zeros((len(rows), longest), dtype=np.int64)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return input_ids, mask


class Encoder:
    """Tokenizes and embeds texts with a model folder through ONNX Runtime.

    `device` is "auto" (CUDA when onnxruntime offers it), "cpu" or "cuda". `threads` caps the CPU
    intra-op threads (0: ONNX Runtime's default, all cores).
    """

    def __init__(
        self, folder: ModelFolder, *, device: str = "auto", threads: int = 0, batch_tokens: int = 16384
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if os.environ.get("ORT_DISABLE_TELEMETRY") == "1":
            ort.disable_telemetry_events()  # also when onnxruntime was set up before codesearch (see __init__)
        self.folder = folder
        self.batch_tokens = batch_tokens
        try:
            self.tokenizer = Tokenizer.from_file(str(folder.path / "tokenizer.json"))
        except Exception as exc:  # tokenizers raises a bare Exception on a bad file
            raise CodesearchError(f"model {folder.path}: cannot read tokenizer.json: {exc}") from None
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        available = ort.get_available_providers()
        if device == "cuda" and "CUDAExecutionProvider" not in available:
            raise CodesearchError(
                "device 'cuda' asked for, but onnxruntime offers no CUDA provider: "
                "install codesearch[gpu] (onnxruntime-gpu) without the plain onnxruntime package"
            )
        providers = ["CPUExecutionProvider"]
        if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.log_severity_level = 3

        def session(name: str):
            try:
                return ort.InferenceSession(str(folder.path / name), sess_options=options, providers=providers)
            except Exception as exc:  # onnxruntime raises its own untyped errors on a bad graph
                raise CodesearchError(f"model {folder.path}: cannot load {name}: {exc}") from None

        self.session = session("model.onnx")
        # Queries go through the query tower when the folder has one (an asymmetric dual encoder).
        self.query_session = session(folder.query_model) if folder.query_model else self.session
        self.providers = self.session.get_providers()
        self.before_batch: Callable[[], None] | None = None  # called before each batch: a chance to yield

    @property
    def dimension(self) -> int:
        return self.folder.dimension

    def tokenize(self, texts: list[str], prefix: str) -> list[list[int]]:
        """Token ids of `prefix + text` for each text, untruncated."""
        encodings = self.tokenizer.encode_batch([prefix + t for t in texts])
        return [e.ids for e in encodings]

    def embed_ids(self, rows: list[list[int]], kind: str = "code") -> np.ndarray:
        """Embed token rows (each at most max_length long): float32 [len(rows), dim], L2-normalised.

        `kind` "query" runs the query tower where the model has one. Rows are sorted by length and
        batched under a token budget so padding wastes little.
        """
        session = self.query_session if kind == "query" else self.session
        output = session.get_outputs()[0].name
        out = np.zeros((len(rows), self.dimension), dtype=np.float32)
        if not rows:
            return out
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        start = 0
        while start < len(order):
            # Grow the batch while (rows x longest row) stays under the token budget.
            end = start + 1
            while end < len(order) and (end + 1 - start) * max(1, len(rows[order[end]])) <= self.batch_tokens:
                end += 1
            batch = [rows[i] or [self.folder.pad_token_id] for i in order[start:end]]
            input_ids, mask = pad_batch(batch, self.folder.pad_token_id)
            if self.before_batch is not None:
                self.before_batch()
            vectors = session.run([output], {"input_ids": input_ids, "attention_mask": mask})[0]
            out[order[start:end]] = vectors
            start = end
        return out

    def embed_texts(
        self, texts: list[str], *, kind: str, overlap: int = 64, max_windows: int | None = None,
        languages: Sequence[str] | None = None,
    ) -> list[np.ndarray]:
        """Embed texts as "query" or "code": one [windows, dim] array per text (at most `max_windows`).

        Code is shown to the model through the folder's code view; `languages`, each code's language,
        spares guessing which texts are Python.
        """
        prefix = self.folder.query_prefix if kind == "query" else self.folder.code_prefix
        if kind == "code":
            texts = code_as_seen(texts, self.folder.code_view, languages)
        windows_per_text = [
            token_windows(ids, self.folder.max_length, overlap)[:max_windows]
            for ids in self.tokenize(texts, prefix)
        ]
        flat = [w for ws in windows_per_text for w in ws]
        vectors = self.embed_ids(flat, kind)
        result, at = [], 0
        for ws in windows_per_text:
            result.append(vectors[at : at + len(ws)])
            at += len(ws)
        return result

    def embed_query(self, text: str) -> np.ndarray:
        """One vector for a natural-language query (truncated to the model's maximum length)."""
        ids = self.tokenize([text], self.folder.query_prefix)[0][: self.folder.max_length]
        return self.embed_ids([ids], "query")[0]


def default_model_path() -> Path | None:
    """The default model: installed as the `codesearch.models` package, or `models/` of a source checkout."""
    places = []
    spec = importlib.util.find_spec("codesearch.models")
    if spec is not None and spec.submodule_search_locations:
        places.extend(Path(p) for p in spec.submodule_search_locations)
    places.append(Path(__file__).resolve().parent.parent / "models")
    for place in places:
        if place.is_dir():
            for candidate in sorted(place.iterdir()):
                if (candidate / CONTRACT_FILE).is_file():
                    return candidate
    return None


def resolve_model(model: str) -> ModelFolder:
    """The model folder named in settings, or the shipped default; a clear error when there is none."""
    if model:
        return ModelFolder.read(Path(model).expanduser())
    default = default_model_path()
    if default is None:
        raise CodesearchError(
            "no model: this codesearch has no default model installed; pass --model PATH "
            "or set `model` in .codesearch.toml (a model folder made by `python -m trainer export`)"
        )
    return ModelFolder.read(default)
