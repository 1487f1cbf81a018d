"""`python -m trainer import PATH --out DIR`: a local Hugging Face encoder as a codesearch model folder.

    PATH/config.json, model.safetensors, tokenizer.json    a BERT-like encoder (sentence-transformers
    [modules.json, 1_Pooling/config.json,                   folders too: their pooling and length limit
     sentence_bert_config.json]                             are read from these files)
        -> DIR/model.onnx        (input_ids, attention_mask) -> pooled, L2-normalised float32 [batch, dim]
           DIR/tokenizer.json    the same tokenizer with its fixed truncation and padding turned off
           DIR/codesearch.json   model_id from the weights' hash, max_length from the folder, empty prefixes
           DIR/MODEL_CARD.md     where it came from, and the parity figures

Weights are read only from safetensors and only from PATH (no hub, no pickle). Token type ids, when
the model takes them, are zeros inside the graph: the engine feeds two inputs. The folder written is
checked through the engine's own Encoder against the torch model (worst cosine >= 0.9999 fp32; int8
>= 0.99 against fp32) before it replaces DIR.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from codesearch.errors import CodesearchError
from codesearch.model import CONTRACT_FILE, ModelFolder
from trainer.export import MIN_COSINE, OPSET, _engine_vectors, _quantize_int8, _worst_cosine, export_graph, parity_rows
from trainer.model import replace_dir
from trainer.teacher import SOURCE_FILE

POOLINGS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}  # what the graph can pool
# A long row checks positions up to max_length, beyond the slices of export.parity_rows.
LONG_TEXT = " ".join(f"def step_{i}(value): return value * {i} + offset_{i}" for i in range(80))


@dataclass(frozen=True)
class SourceFolder:
    """What an encoder folder says about itself: how to pool, how long a row may be, what it is."""

    path: Path
    pooling: str  # "mean" or "cls"
    max_length: int
    weights_sha256: str
    config: dict
    origin: str  # a line for the card: the fetch it came from, or the config's own name


class PooledEncoder(torch.nn.Module):
    """A transformers encoder, its pooling and L2 normalisation: (ids, mask) int64 (B, T) -> (B, D)."""

    def __init__(self, model: torch.nn.Module, pooling: str) -> None:
        super().__init__()
        self.model, self.pooling = model, pooling
        self.takes_token_types = "token_type_ids" in inspect.signature(model.forward).parameters

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        extra = {"token_type_ids": torch.zeros_like(input_ids)} if self.takes_token_types else {}
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state  # (B, T, H)
        if self.pooling == "cls":
            pooled = hidden[:, 0]  # (B, H)
        else:  # mean over the real tokens only: padding must not move a vector
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)


def read_source(path: Path, max_length: int | None = None) -> SourceFolder:
    """Check that `path` holds an encoder we can import, and read its pooling and length limit."""
    path = Path(path)
    if not path.is_dir():
        raise CodesearchError(f"import: {path} is not a folder")
    if not (path / "model.safetensors").is_file():
        pickled = " (pytorch_model.bin is a pickle: it is never loaded)" if (path / "pytorch_model.bin").exists() else ""
        raise CodesearchError(f"import: {path} has no model.safetensors{pickled}")
    for name in ("config.json", "tokenizer.json"):
        if not (path / name).is_file():
            raise CodesearchError(f"import: {path} has no {name}")
    config = _json(path / "config.json")
    limit = int(config.get("max_position_embeddings") or 512)
    configured = _json(path / "sentence_bert_config.json").get("max_seq_length") if (path / "sentence_bert_config.json").is_file() else None
    length = max_length or int(configured or limit)
    if not 1 <= length <= limit:
        raise CodesearchError(f"import: --max-length {length} is outside 1 to {limit} (the model's positions)")
    with open(path / "model.safetensors", "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    origin = str(config.get("_name_or_path") or path.name)
    if (path / SOURCE_FILE).is_file():
        origin = str(_json(path / SOURCE_FILE).get("source") or origin)
    return SourceFolder(path, pooling_of(path), length, digest, config, origin)


def pooling_of(path: Path) -> str:
    """"mean" or "cls" as the folder's sentence-transformers pipeline says; "mean" without one.

    A pipeline with a module after pooling other than Normalize (a Dense projection, say) would be
    silently cut short, so it is refused."""
    pooling_dir = "1_Pooling"
    if (path / "modules.json").is_file():
        modules = _json(path / "modules.json")
        kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
        unknown = [k for k in kinds if k not in ("Transformer", "Pooling", "Normalize")]
        if unknown:
            raise CodesearchError(f"import: {path} has a {unknown[0]} module in modules.json: not supported")
        pooling_dir = next((m.get("path") or pooling_dir for m in modules if str(m.get("type", "")).endswith("Pooling")),
                           pooling_dir)
    config_file = path / pooling_dir / "config.json"
    if not config_file.is_file():
        return "mean"
    modes = [key for key, on in _json(config_file).items() if key.startswith("pooling_mode_") and on]
    if len(modes) != 1 or modes[0] not in POOLINGS:
        raise CodesearchError(f"import: {config_file} asks for pooling {', '.join(modes) or 'none'}; "
                              f"supported: one of {', '.join(POOLINGS)}")
    return POOLINGS[modes[0]]


def load_encoder(source: SourceFolder) -> PooledEncoder:
    """The torch encoder from the folder's safetensors alone, eager attention (it exports as plain matmuls)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel

    try:
        model = AutoModel.from_pretrained(str(source.path), local_files_only=True, use_safetensors=True,
                                          trust_remote_code=False, attn_implementation="eager")
    except Exception as exc:  # transformers raises many types; the first line names the problem
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CodesearchError(f"import: transformers cannot load {source.path}: {first}") from None
    return PooledEncoder(model.float().eval(), source.pooling).eval()


def load_tokenizer(path: Path):
    """The folder's tokenizer.json with its stored truncation and padding off: the engine windows and pads."""
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(Path(path) / "tokenizer.json"))
    except Exception as exc:  # tokenizers raises a bare Exception on a bad file
        raise CodesearchError(f"import: cannot read {path / 'tokenizer.json'}: {exc}") from None
    tok.no_truncation()
    tok.no_padding()
    return tok


def import_model(src: Path, out_dir: Path, *, max_length: int | None = None, int8: bool = False,
                 log: Callable[[str], None] = lambda message: None) -> tuple[ModelFolder, dict[str, float]]:
    """Write the model folder `out_dir` from the encoder folder `src`; return it and its parity figures."""
    src, out_dir = Path(src), Path(out_dir)
    _check_out(src, out_dir)
    source = read_source(src, max_length)
    tok = load_tokenizer(src)
    pad = _pad_id(source.config, tok)
    encoder = load_encoder(source)
    log(f"import: {src} ({sum(p.numel() for p in encoder.parameters()):,} parameters, {source.pooling} pooling, "
        f"max_length {source.max_length})")
    rows = parity_rows(tok, "", "", source.max_length) + [tok.encode(LONG_TEXT).ids[: source.max_length]]
    with torch.no_grad():  # each row alone, unpadded: what the graph must give at any batching
        reference = np.concatenate([encoder(torch.tensor([r]), torch.ones(1, len(r), dtype=torch.long)).numpy()
                                    for r in rows])  # (rows, D)
    quantize = "int8" if int8 else "none"
    model_id = f"{out_dir.name}-{_model_digest(source, quantize)}"
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    figures: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="codesearch-import-") as tmp:
            fp32_dir = Path(tmp) / "fp32" if int8 else partial
            fp32_dir.mkdir(exist_ok=True)
            for folder in {fp32_dir, partial}:
                _write_contract(folder, tok, source, model_id, reference.shape[1], pad)
            large = export_graph(encoder, tok, "", source.max_length, pad, fp32_dir / "model.onnx", Path(tmp))
            fp32 = _engine_vectors(fp32_dir, rows)
            figures["fp32 vs PyTorch"] = _check(fp32, reference, MIN_COSINE["none"], "fp32 vs PyTorch", out_dir)
            if int8:
                _quantize_int8(fp32_dir / "model.onnx", partial / "model.onnx", Path(tmp), large)
                figures["int8 vs fp32 ONNX"] = _check(_engine_vectors(partial, rows), fp32, MIN_COSINE["int8"],
                                                      "int8 vs fp32 ONNX", out_dir)
        card = model_card(source, model_id, quantize, figures, rows, encoder)
        (partial / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    replace_dir(partial, out_dir)
    for name, value in figures.items():
        log(f"import: worst cosine {name}: {value:.6f}")
    return ModelFolder.read(out_dir), figures


def _write_contract(folder: Path, tok, source: SourceFolder, model_id: str, dimension: int, pad: int) -> None:
    """tokenizer.json and codesearch.json: the engine's view of the model (no prefixes, no code view)."""
    tok.save(str(folder / "tokenizer.json"))
    ModelFolder(path=folder, model_id=model_id, dimension=dimension, max_length=source.max_length,
                pooling=source.pooling, query_prefix="", code_prefix="", pad_token_id=pad,
                hybrid_weight=1.0).write()


def _check(vectors: np.ndarray, against: np.ndarray, need: float, name: str, out_dir: Path) -> float:
    """The worst row cosine of `vectors` to `against`; below `need` the import fails and DIR stays as it was."""
    worst = _worst_cosine(vectors, against)
    if worst < need:
        raise CodesearchError(f"import failed its parity check: worst cosine {name} is {worst:.6f}, below {need}; "
                              f"{out_dir} was left as it was")
    return worst


def _model_digest(source: SourceFolder, quantize: str) -> str:
    """10 hex digits from the weights' sha256 and every setting that changes the vectors: an index
    built with other weights, pooling, length or quantisation is never reused."""
    key = f"{source.weights_sha256}|{source.pooling}|{source.max_length}|{quantize}|opset{OPSET}"
    return hashlib.sha256(key.encode()).hexdigest()[:10]


def _pad_id(config: dict, tok) -> int:
    """The padding id: the config's, else the tokenizer's [PAD] or <pad>, else 0 (the mask hides it anyway)."""
    if isinstance(config.get("pad_token_id"), int):
        return config["pad_token_id"]
    found = next((tok.token_to_id(t) for t in ("[PAD]", "<pad>") if tok.token_to_id(t) is not None), None)
    return found if found is not None else 0


def _check_out(src: Path, out_dir: Path) -> None:
    """Refuse an --out that is the source, or an existing folder that is not a model folder (never deleted)."""
    if out_dir.resolve() == src.resolve() or src.resolve().is_relative_to(out_dir.resolve()):
        raise CodesearchError(f"import: --out {out_dir} would replace the folder being imported")
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / CONTRACT_FILE).is_file())):
        raise CodesearchError(f"import: {out_dir} exists and is not a codesearch model folder: choose another --out")


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CodesearchError(f"import: cannot read {path}: {exc}") from None


def model_card(source: SourceFolder, model_id: str, quantize: str, figures: dict, rows: list, encoder) -> str:
    """MODEL_CARD.md: origin, shape, export and parity; the hybrid weight left to calibrate."""
    config = source.config
    lines = [
        f"# {model_id}", "",
        f"Imported with `python -m trainer import` from a local Hugging Face folder: {source.origin}.",
        "Not trained by this project; its licence is the original model's.", "",
        "## Model", "",
        f"- {', '.join(config.get('architectures') or [str(config.get('model_type', 'encoder'))])}, "
        f"{config.get('num_hidden_layers', '?')} layers, hidden {config.get('hidden_size', '?')}, "
        f"{sum(p.numel() for p in encoder.parameters()):,} parameters",
        f"- {source.pooling} pooling, then L2 normalisation, inside the graph; max_length {source.max_length}; "
        "no query or code prefix",
        f"- weights: model.safetensors, sha256 {source.weights_sha256}", "",
        "## Hybrid weight", "",
        "- TODO: `hybrid_weight` is 1.0, not calibrated. Calibrate it on held-out training pairs (the eval of a",
        "  recipe's validation split) before relying on hybrid search: a model fused with BM25 at the wrong",
        "  weight can score below the model alone.", "",
        "## Export", "",
        f"- ONNX opset {OPSET} via torch.onnx.export (dynamo=False, eager attention), weights "
        f"{'fp32' if quantize == 'none' else quantize}",
        f"- parity over {len(rows)} token rows of 1 to {max(len(r) for r in rows)} tokens, each batched alone, "
        "all together and in mixed padded batches through codesearch.model.Encoder:",
    ]
    lines += [f"  - worst cosine {name}: {value:.6f}" for name, value in figures.items()]
    return "\n".join(lines) + "\n"
