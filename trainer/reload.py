"""Read an exported model folder back into a trainable Encoder: training continues from a shipped model.

A run folder (checkpoints, pretraining) is local and can be lost; the model folder in `models/` is
committed. Its ONNX graph holds every weight of the encoder, some renamed or transposed by the
exporter, int8 ones with their scales:

    model folder  ->  initializers (dequantised)  ->  matched to the Encoder's parameters  ->  Encoder

The match is found, not hard-coded: a copy of the same architecture with distinct random values is
exported with our own exporter, and each parameter is looked up by value among that graph's
initializers (as itself or transposed). The PMA head's seed query is folded by the exporter into
`fc_q(seed)`: it comes back as the seed, with `fc_q` the identity, which computes the same thing.
The result is checked against the folder through the engine's Encoder before it is returned.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import torch

from codesearch.errors import CodesearchError
from codesearch.model import ModelFolder
from trainer.model import BaseConfig, Encoder, EncoderConfig, build_base

# Worst cosine accepted between the rebuilt encoder and the folder's graph (int8 graphs are ~0.998).
MIN_COSINE = 0.99
_FOLDED = ("pooling.seed", "pooling.fc_q.weight", "pooling.fc_q.bias")  # PMA's query: one constant


def is_encoder_folder(folder: Path) -> bool:
    """A trained Encoder folder (a run's contrastive/final, `Encoder.save`), not an exported one."""
    return (Path(folder) / "encoder.json").is_file()


def start_tokenizer(folder: Path) -> Path:
    """The tokenizer.json of a start: a trained Encoder folder's, or an exported model folder's."""
    return (Path(folder) if is_encoder_folder(folder) else ModelFolder.read(folder).path) / "tokenizer.json"


def load_start(folder: Path, model: BaseConfig, encoder: EncoderConfig) -> tuple[Encoder, float | None]:
    """The Encoder to go on from: a trained Encoder folder as saved (fp32, no worst cosine), or an
    exported model folder read back by `encoder_from_folder` (with its worst cosine)."""
    if is_encoder_folder(folder):
        return Encoder.load(folder), None
    return encoder_from_folder(folder, model, encoder)


def encoder_from_folder(folder: Path, model: BaseConfig, encoder: EncoderConfig) -> tuple[Encoder, float]:
    """The Encoder whose weights are those of the exported model folder `folder` (fp32, train mode),
    and the worst cosine between its vectors and the folder's.

    `model` and `encoder` give the architecture (a recipe's [pretrain] and [contrastive] shape
    fields; the vocabulary comes from the folder's tokenizer). Raises CodesearchError when the folder
    is not of that architecture or the rebuilt encoder does not reproduce its vectors.
    """
    from trainer.export import export_graph, parity_rows, prepare_int8
    from trainer.tokenizer import load_tokenizer, special_ids

    info = ModelFolder.read(folder)
    if (info.pooling, info.dimension) != (encoder.pooling, encoder.dimension or model.hidden_size):
        raise CodesearchError(
            f"{folder} has {info.pooling} pooling to {info.dimension} dimensions, the recipe "
            f"{encoder.pooling} to {encoder.dimension}: not the recipe's architecture"
        )
    tok = load_tokenizer(info.path / "tokenizer.json")
    ids = special_ids(tok)
    config = dataclasses.replace(model, vocab_size=tok.get_vocab_size())
    result = Encoder(build_base(config, pad_token_id=ids["pad"], eos_token_id=ids["eos"]), encoder).eval()
    probe = _eager(Encoder(build_base(config, pad_token_id=ids["pad"], eos_token_id=ids["eos"]), encoder))
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        for p in probe.parameters():  # distinct values: each parameter is found by value alone
            p.copy_(torch.randn(p.shape, generator=generator))
    with tempfile.TemporaryDirectory(prefix="codesearch-reload-") as tmp:
        graph = Path(tmp) / "probe.onnx"
        large = export_graph(probe, tok, info.code_prefix, info.max_length, ids["pad"], graph, Path(tmp))
        shipped, int8 = _initializers(info.path / "model.onnx")
        if int8:  # the exporter pre-processed the graph before quantising: so does the probe
            prepare_int8(graph, graph.with_name("prepared.onnx"), large)
            graph = graph.with_name("prepared.onnx")
        probe_values, _ = _initializers(graph)
    state = _match(probe, probe_values, shipped, folder)
    missing, unexpected = result.load_state_dict(state, strict=False)
    if missing or unexpected:  # buffers (rotary frequencies) are rebuilt, not loaded
        stray = [k for k in missing if k in dict(result.named_parameters())] + list(unexpected)
        if stray:
            raise CodesearchError(f"{folder}: no weights found for {', '.join(stray[:5])}")
    rows = parity_rows(tok, info.query_prefix, info.code_prefix, info.max_length)
    worst = _worst_parity(result, info, rows)
    if worst < MIN_COSINE:
        raise CodesearchError(
            f"{folder}: the weights read back give other vectors than its graph (worst cosine {worst:.4f}, "
            f"below {MIN_COSINE}): not the recipe's architecture, or a graph this trainer did not export"
        )
    return result.train(), worst


def _eager(encoder: Encoder) -> Encoder:
    """Eager attention, as the exporter uses (sdpa exports another graph); training keeps the default."""
    if hasattr(encoder.decoder, "set_attn_implementation"):
        encoder.decoder.set_attn_implementation("eager")
    else:  # transformers < 4.48
        encoder.decoder.config._attn_implementation = "eager"
    return encoder.float().eval()


def _initializers(path: Path) -> tuple[dict[str, np.ndarray], bool]:
    """Every initializer of an ONNX graph as float32, int8/uint8 ones dequantised under their fp32 name,
    and whether there were such.

    onnxruntime's dynamic quantisation stores W as W_quantized, W_scale and W_zero_point; a 1-D scale
    is per output channel, the last axis of a MatMul weight.
    """
    import onnx
    from onnx import numpy_helper

    raw = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    out = {}
    for name, value in raw.items():
        if name.endswith("_quantized"):
            base = name[: -len("_quantized")]
            scale, zero = raw.get(base + "_scale"), raw.get(base + "_zero_point")
            if scale is None or zero is None:
                continue
            if scale.ndim == 1 and scale.shape[0] != value.shape[-1]:
                raise CodesearchError(f"{path}: {base} has {scale.shape[0]} scales for shape {value.shape}")
            out[base] = ((value.astype(np.float32) - zero.astype(np.float32)) * scale).astype(np.float32)
        elif value.dtype in (np.float32, np.float16, np.float64) and not name.endswith("_scale"):
            out[name] = value.astype(np.float32)
    return out, any(name.endswith("_quantized") for name in raw)


def _match(probe: Encoder, probe_values: dict, shipped: dict, folder: Path) -> dict[str, torch.Tensor]:
    """The state dict for the Encoder: each parameter's initializer in the probe graph, read in `shipped`."""
    by_shape: dict[tuple, list[str]] = {}
    for name, value in probe_values.items():
        by_shape.setdefault(value.shape, []).append(name)
    state, unfound = {}, []
    for pname, param in probe.named_parameters():
        found = _find(param.detach().numpy(), probe_values, by_shape)
        if found is None:
            unfound.append(pname)
            continue
        name, transposed = found
        if name not in shipped or shipped[name].shape != probe_values[name].shape:
            raise CodesearchError(f"{folder}: its graph has no {name} of shape {probe_values[name].shape} "
                                  f"({pname}): not the recipe's architecture")
        array = shipped[name].T if transposed else shipped[name]
        state[pname] = torch.from_numpy(np.ascontiguousarray(array))
    if unfound and set(unfound) <= set(_FOLDED):  # int8 graphs: folded by onnxruntime's pre-processing
        state.update(_pma_query(probe, probe_values, shipped, folder))
    elif unfound:
        raise CodesearchError(f"{folder}: cannot find {', '.join(unfound[:3])} in the exported graph (exporter changed?)")
    return state


def _find(value: np.ndarray, values: dict, by_shape: dict) -> tuple[str, bool] | None:
    """(initializer name, transposed) of the initializer equal to `value` or to its transpose, or None."""
    for transposed, target in ((False, value), (True, value.T)):
        for name in by_shape.get(target.shape, []):
            if np.array_equal(values[name], target):
                return name, transposed
        if value.ndim != 2:
            break
    return None


def _pma_query(probe: Encoder, probe_values: dict, shipped: dict, folder: Path) -> dict[str, torch.Tensor]:
    """The folded PMA query fc_q(seed), found by value (to rounding), as seed with fc_q the identity."""
    pool = probe.pooling
    with torch.no_grad():
        query = pool.fc_q(pool.seed)  # (S, D)
    heads = query.unflatten(-1, (pool.heads, -1)).transpose(0, 1).numpy()  # (nh, S, hd), as the graph has it
    for name, value in probe_values.items():
        if value.shape == heads.shape and np.allclose(value, heads, rtol=1e-4, atol=1e-4):
            folded = torch.from_numpy(shipped[name]).transpose(0, 1).flatten(1)  # (S, D)
            dim = folded.shape[-1]
            return {"pooling.seed": folded.contiguous(), "pooling.fc_q.weight": torch.eye(dim),
                    "pooling.fc_q.bias": torch.zeros(dim)}
    raise CodesearchError(f"{folder}: cannot find the PMA query in the exported graph (exporter changed?)")


def _worst_parity(encoder: Encoder, info: ModelFolder, rows: list[list[int]]) -> float:
    """Worst cosine over `rows` between `encoder` and the folder's graph run by the engine."""
    from codesearch.model import Encoder as EngineEncoder

    engine = EngineEncoder(info, device="cpu").embed_ids(rows)  # (rows, D)
    with torch.no_grad():
        ours = np.concatenate([encoder(torch.tensor([r]), torch.ones(1, len(r), dtype=torch.long)).numpy()
                               for r in rows])
    cos = (engine * ours).sum(1) / (np.linalg.norm(engine, axis=1) * np.linalg.norm(ours, axis=1))
    return float(cos.min())


def main(argv: list[str] | None = None) -> int:
    """python -m trainer.reload FOLDER OUT --recipe FILE: save an exported model folder's weights as a
    trained Encoder folder (what `tokenizer.from_model` also takes), e.g. to carry it to a machine
    with another torch."""
    import argparse
    import os
    import sys

    from trainer.recipe import Recipe
    from trainer.tokenizer import load_tokenizer

    parser = argparse.ArgumentParser(prog="python -m trainer.reload", description=main.__doc__)
    parser.add_argument("folder", type=Path, help="an exported model folder")
    parser.add_argument("out", type=Path, help="the Encoder folder to write")
    parser.add_argument("--recipe", type=Path, required=True, help="the recipe whose architecture it has")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        recipe = Recipe.load(args.recipe)
        encoder, worst = encoder_from_folder(args.folder, recipe.model, recipe.encoder)
        encoder.eval().save(args.out, tokenizer=load_tokenizer(args.folder / "tokenizer.json"))
    except CodesearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.folder} -> {args.out} (worst cosine to its vectors {worst:.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
