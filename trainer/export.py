"""Export a trained encoder to a codesearch model folder (model.onnx, tokenizer.json, codesearch.json).

The whole encoder (decoder body, pooling, L2 norm) becomes one ONNX graph (and a query tower, when
there is one, a second: query.onnx), and the written folder is checked against PyTorch through the engine's own `codesearch.model.Encoder` before it replaces
`out_dir`. We call `torch.onnx.export(dynamo=False)` directly: optimum 2.x no longer exports ONNX
and its successor optimum-onnx needs transformers < 4.58 (see NOTES.md).
"""

from __future__ import annotations

import hashlib

import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from codesearch.errors import CodesearchError
from codesearch.model import Encoder as EngineEncoder
from codesearch.model import ModelFolder
from trainer.contrastive import merge_lora
from trainer.model import Encoder, replace_dir, tokenize_batch
from trainer.tokenizer import load_tokenizer, special_ids

OPSET = 17
IR_VERSION = 10  # onnxruntime 1.31 reads IR <= 13; onnx 1.23 would write 14
LARGE_BYTES = 1_800_000_000  # protobuf's 2 GB limit: past this, weights go to model.onnx.data
# Worst cosine accepted per row: to PyTorch for fp32, to the fp32 graph for the others.
MIN_COSINE = {"none": 0.9999, "int8": 0.99, "fp16": 0.999}
QUERY_FILE = "query.onnx"  # the query tower's graph, named in codesearch.json's query_model

# Texts whose token rows check parity: code and queries of varied length, plus slices of them.
PARITY_TEXTS = (
    "def binary_search(items, target):\n    lo, hi = 0, len(items) - 1\n    while lo <= hi:\n"
    "        mid = (lo + hi) // 2\n        if items[mid] == target:\n            return mid\n"
    "        if items[mid] < target:\n            lo = mid + 1\n        else:\n            hi = mid - 1\n"
    "    return -1\n",
    "function debounce(fn, ms) {\n  let timer;\n  return (...args) => {\n    clearTimeout(timer);\n"
    "    timer = setTimeout(() => fn(...args), ms);\n  };\n}\n",
    "find the index of a value in a sorted list",
    "read a json file",
    "x",
)


def export_onnx(
    encoder: Encoder,
    tokenizer_json: Path,
    out_dir: Path,
    *,
    model_id: str,
    max_length: int,
    query_prefix: str,
    code_prefix: str,
    quantize: str = "none",
    card: str = "",
    min_cosine: float | None = None,
    query_encoder: Encoder | None = None,
    code_view: str = "",
) -> ModelFolder:
    """Write the model folder `out_dir` and return it; raise CodesearchError if parity fails.

    `quantize`: "none" (fp32), "int8" (dynamic, per-channel weights; for CPU) or "fp16" (for GPU).
    The encoder is merged (LoRA), moved to CPU fp32 and switched to eager attention in place.
    `query_encoder` (trainer.query_tower) becomes query.onnx, exported and checked the same way.
    `code_view` (codesearch.model.CODE_VIEWS) is how the engine is to show code to the model.
    """
    return _export(encoder, tokenizer_json, out_dir, model_id=model_id, max_length=max_length,
                   query_prefix=query_prefix, code_prefix=code_prefix, quantize=quantize, card=card,
                   min_cosine=min_cosine, query_encoder=query_encoder, code_view=code_view)[0]


def _export(encoder: Encoder, tokenizer_json: Path, out_dir: Path, *, model_id: str, max_length: int,
            query_prefix: str, code_prefix: str, quantize: str, card: str, min_cosine: float | None,
            query_encoder: Encoder | None, code_view: str = "") -> tuple[ModelFolder, dict[str, float]]:
    """export_onnx, returning the parity figures too."""
    if quantize not in MIN_COSINE:
        raise ValueError(f"quantize must be one of {', '.join(MIN_COSINE)}, not {quantize!r}")
    bound = MIN_COSINE[quantize] if min_cosine is None else min_cosine
    encoder = merge_lora(encoder).float().cpu().eval()
    # sdpa's mask handling exports badly; eager attention is plain matmuls + softmax.
    if hasattr(encoder.decoder, "set_attn_implementation"):
        encoder.decoder.set_attn_implementation("eager")
    else:  # transformers < 4.48
        encoder.decoder.config._attn_implementation = "eager"
    tok = load_tokenizer(tokenizer_json)  # appends EOS if a base model's tokenizer does not
    pad = special_ids(tok)["pad"]
    out_dir = Path(out_dir)
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)

    def write_folder(path: Path, ident: str = model_id, query_model: str = "") -> None:
        tok.save(str(path / "tokenizer.json"))
        ModelFolder(
            path=path,
            model_id=ident,
            dimension=encoder.dimension,
            max_length=max_length,
            pooling=encoder.config.pooling,
            query_prefix=query_prefix,
            code_prefix=code_prefix,
            pad_token_id=pad,
            query_model=query_model,
            code_view=code_view,
        ).write()

    rows = parity_rows(tok, query_prefix, code_prefix, max_length)
    with torch.no_grad():  # each row alone, unpadded: what padding must not change
        reference = np.concatenate([encoder(torch.tensor([r]), torch.ones(1, len(r), dtype=torch.long)).numpy()
                                    for r in rows])  # (rows, D)

    figures: dict[str, float] = {}

    def check(name: str, vectors: np.ndarray, against: np.ndarray, need: float) -> None:
        figures[name] = _worst_cosine(vectors, against)
        if figures[name] < need:
            raise CodesearchError(
                f"ONNX export of {model_id} failed its parity check: worst cosine {name} is "
                f"{figures[name]:.6f}, below {need} (over {len(rows)} token rows at several batch sizes); "
                f"{out_dir} was left as it was"
            )

    try:
        with tempfile.TemporaryDirectory(prefix="codesearch-export-") as tmp:
            fp32_dir = Path(tmp) / "fp32" if quantize != "none" else partial
            fp32_dir.mkdir(exist_ok=True)
            write_folder(fp32_dir)
            large = export_graph(encoder, tok, code_prefix, max_length, pad, fp32_dir / "model.onnx", Path(tmp))
            fp32 = _engine_vectors(fp32_dir, rows)
            check("fp32 vs PyTorch", fp32, reference, bound if quantize == "none" else MIN_COSINE["none"])
            if quantize != "none":
                write_folder(partial)
                if quantize == "int8":
                    _quantize_int8(fp32_dir / "model.onnx", partial / "model.onnx", Path(tmp), large)
                else:
                    _convert_fp16(fp32_dir / "model.onnx", partial / "model.onnx", large)
                check(f"{quantize} vs fp32 ONNX", _engine_vectors(partial, rows), fp32, bound)
            query_model = ""
            if query_encoder is not None:
                figures.update(_export_query_tower(
                    query_encoder, tokenizer_json, partial / QUERY_FILE, Path(tmp), model_id=model_id,
                    max_length=max_length, query_prefix=query_prefix, code_prefix=code_prefix,
                    quantize=quantize, min_cosine=min_cosine))
                query_model = QUERY_FILE
        # The id carries a digest of the weights and the code view: an index built with other weights,
        # or from code shown another way, is never reused.
        write_folder(partial, f"{model_id}-{_digest(partial, code_view)}", query_model)
        card_text = _card(card, encoder, quantize, figures, rows, max_length, code_view)
        (partial / "MODEL_CARD.md").write_text(card_text, encoding="utf-8")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    replace_dir(partial, out_dir)
    return ModelFolder.read(out_dir), figures


def _export_query_tower(query_encoder: Encoder, tokenizer_json: Path, dst: Path, tmp: Path, *, model_id: str,
                        max_length: int, query_prefix: str, code_prefix: str, quantize: str,
                        min_cosine: float | None) -> dict[str, float]:
    """Export the query tower as a model folder of its own (checked as any), and put its graph at `dst`;
    returns its parity figures."""
    folder, figures = _export(query_encoder, tokenizer_json, tmp / "query", model_id=f"{model_id}-query",
                              max_length=max_length, query_prefix=query_prefix, code_prefix=code_prefix,
                              quantize=quantize, card="", min_cosine=min_cosine, query_encoder=None)
    if (folder.path / "model.onnx.data").exists():
        raise CodesearchError("the query tower's graph is over 1.8 GB: a query tower needs one file")
    shutil.copyfile(folder.path / "model.onnx", dst)
    return {f"{name} (query tower)": value for name, value in figures.items()}


def _digest(folder: Path, code_view: str = "") -> str:
    """First 10 hex digits of the sha256 of the graphs (and their external weights), and of the code
    view where there is one."""
    digest = hashlib.sha256()
    for name in ("model.onnx", "model.onnx.data", QUERY_FILE):
        if (folder / name).is_file():
            with open(folder / name, "rb") as handle:
                digest.update(hashlib.file_digest(handle, "sha256").digest())
    if code_view:
        digest.update(f"code_view={code_view}".encode())
    return digest.hexdigest()[:10]


def parity_rows(tok, query_prefix: str, code_prefix: str, max_length: int) -> list[list[int]]:
    """Token rows the engine would embed: whole texts with each prefix, and slices of 1 to 96 tokens."""
    rows = [tok.encode(p + t).ids[:max_length] for t in PARITY_TEXTS for p in (code_prefix, query_prefix)]
    longest = max(rows, key=len)
    rows += [longest[:n] for n in (1, 2, 7, 31, 96) if n < len(longest)]
    unique = []
    for r in rows:
        if r and r not in unique:
            unique.append(r)
    return unique


def export_graph(encoder: Encoder, tok, prefix: str, max_length: int, pad: int, path: Path, tmp: Path) -> bool:
    """torch.onnx.export with dynamic batch and sequence axes; returns whether weights went external."""
    example = ["def add(a, b):\n    return a + b", "sort"]
    ids, mask = tokenize_batch(tok, example, prefix, max_length, pad)  # (2, T), the second row padded
    raw = tmp / "raw" / "model.onnx"
    raw.parent.mkdir()
    torch.onnx.export(
        encoder,
        (ids, mask),
        str(raw),
        dynamo=False,
        input_names=["input_ids", "attention_mask"],
        output_names=["sentence_embedding"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "sequence"},
            "sentence_embedding": {0: "batch"},
        },
        opset_version=OPSET,
        do_constant_folding=True,
    )
    import onnx

    # Past 2 GB the exporter writes one file per tensor; gather them into one model.onnx.data.
    large = sum(f.stat().st_size for f in raw.parent.iterdir()) > LARGE_BYTES
    model = onnx.load(str(raw))  # reads those external files too
    model.ir_version = min(model.ir_version, IR_VERSION)
    _save(model, path, large)
    shutil.rmtree(raw.parent)
    return large


def _quantize_int8(src: Path, dst: Path, tmp: Path, large: bool) -> None:
    """Dynamic int8: weights per output channel, activations quantised at run time (CPU)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    prepared = tmp / "prepared.onnx"
    prepare_int8(src, prepared, large)
    quantize_dynamic(
        str(prepared), str(dst), weight_type=QuantType.QInt8, per_channel=True, use_external_data_format=large
    )


def prepare_int8(src: Path, dst: Path, large: bool) -> None:
    """onnxruntime's pre-processing before quantisation (it folds constants, e.g. PMA's fc_q(seed))."""
    from onnxruntime.quantization import quant_pre_process

    # Symbolic shape inference chokes on the decoder's mask arithmetic; plain ONNX inference suffices.
    quant_pre_process(
        str(src), str(dst), skip_symbolic_shape=True,
        save_as_external_data=large, all_tensors_to_one_file=True, external_data_location=dst.name + ".data",
    )


def _convert_fp16(src: Path, dst: Path, large: bool) -> None:
    """fp16 weights and compute, fp32 inputs/outputs (for GPUs; CPU kernels are slower in fp16)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    model.ir_version = min(model.ir_version, IR_VERSION)
    _save(model, dst, large)


def _save(model, path: Path, large: bool) -> None:
    import onnx

    onnx.save_model(model, str(path), save_as_external_data=large, all_tensors_to_one_file=True,
                    location="model.onnx.data")


def _engine_vectors(folder: Path, rows: list[list[int]]) -> np.ndarray:
    """Embed `rows` with the engine's Encoder in three batchings: one by one, all at once, mixed.

    Returns (3 * len(rows), D): each batching's vectors in row order.
    """
    engine = EngineEncoder(ModelFolder.read(folder), device="cpu")
    longest = max(len(r) for r in rows)
    out = []
    for budget in (1, 3 * longest, len(rows) * longest):
        engine.batch_tokens = budget
        out.append(engine.embed_ids(rows))
    return np.concatenate(out)


def _worst_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest row-wise cosine between a and b (b tiled to a's rows)."""
    b = np.tile(b, (len(a) // len(b), 1))
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(cos.min())


def _card(card: str, encoder: Encoder, quantize: str, figures: dict, rows: list, max_length: int,
          code_view: str = "") -> str:
    params = sum(p.numel() for p in encoder.parameters())
    lines = [card.rstrip(), "", "## Export", ""] if card.strip() else ["## Export", ""]
    lines += [
        f"- pooling {encoder.config.pooling}, dimension {encoder.dimension}, max_length {max_length}, "
        f"{params:,} parameters",
        f"- ONNX opset {OPSET} via torch.onnx.export (dynamo=False), weights "
        f"{'fp32' if quantize == 'none' else quantize}",
        f"- code view: {code_view or 'none (code as written)'}",
        f"- parity over {len(rows)} token rows of 1 to {max(len(r) for r in rows)} tokens, each batched alone, "
        "all together and in mixed padded batches through codesearch.model.Encoder:",
    ]
    lines += [f"  - worst cosine {name}: {value:.6f}" for name, value in figures.items()]
    return "\n".join(lines) + "\n"
