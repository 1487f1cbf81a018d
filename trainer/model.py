"""The embedding model: a decoder-only LM body, a pooling head, L2 normalisation.

    input_ids, attention_mask (B, T)  ->  decoder body  ->  hidden (B, T, H)
                                      ->  pooling       ->  (B, D)  ->  L2 norm

The decoder is a Hugging Face causal LM without its LM head (Qwen2 when we build one from
scratch, any `AutoModelForCausalLM` folder otherwise). Padding is on the right, always masked.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tokenizers import Tokenizer

from codesearch.errors import CodesearchError
from codesearch.model import pad_batch


# ----------------------------------------------------------------------------- precision

PRECISIONS = ("auto", "bf16", "fp32")


def uses_bf16(device: torch.device, precision: str = "auto") -> bool:
    """Whether training runs its matrix products in bf16 (weights, optimizer state and loss stay fp32).

    "auto": on CUDA, and on a CPU whose oneDNN has bf16 kernels (AVX-512): contrastive steps ran
    about 1.8x faster than fp32 on the shared 2-core AMD EPYC. "bf16": always. "fp32": never.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "auto":
        return device.type == "cuda" or torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return precision == "bf16"


def autocast(device: torch.device, bf16: bool):
    """The forward pass's autocast context: bf16 matrix products if `bf16` (see `uses_bf16`)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


# ----------------------------------------------------------------------------- base decoder


@dataclass
class BaseConfig:
    """A Qwen2-style decoder built from scratch (defaults: ~7.6M parameters, CPU-trainable)."""

    vocab_size: int = 16384
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2  # grouped-query attention, as in Qwen2
    intermediate_size: int = 768  # SwiGLU MLP width, ~3x hidden
    max_position: int = 1024
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    tie_embeddings: bool = True  # small vocabularies dominate a small model's size otherwise


def build_base(cfg: BaseConfig, pad_token_id: int, eos_token_id: int):
    """A randomly initialised `transformers.Qwen2ForCausalLM` (seed torch first for repeatability)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        rms_norm_eps=cfg.rms_norm_eps,
        tie_word_embeddings=cfg.tie_embeddings,
        pad_token_id=pad_token_id,
        bos_token_id=eos_token_id,
        eos_token_id=eos_token_id,
        use_cache=False,
    )
    return Qwen2ForCausalLM(config)


def load_base(path: Path, *, dtype: torch.dtype = torch.float32):
    """Any Hugging Face causal LM from a local folder (a pretrain output or e.g. Qwen2.5-Coder)."""
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if not (path / "config.json").is_file():
        raise CodesearchError(f"no Hugging Face model at {path} (config.json missing)")
    return AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, dtype=dtype)


def decoder_body(model: nn.Module) -> nn.Module:
    """The transformer body of a causal LM (`model.model` for Qwen2/Llama), or the model itself."""
    if hasattr(model, "get_decoder"):
        return model.get_decoder()
    return getattr(model, "base_model", model)


# ----------------------------------------------------------------------------- pooling


class MeanPooling(nn.Module):
    """Mean of the non-padding hidden states (CL4D), then an optional projection to `dimension`."""

    def __init__(self, hidden: int, dimension: int):
        super().__init__()
        self.proj = nn.Identity() if dimension == hidden else nn.Linear(hidden, dimension)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(h.dtype)  # (B, T, 1)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, H)
        return self.proj(pooled)  # (B, D)


class LastTokenPooling(nn.Module):
    """The hidden state of the last non-padding token (the appended EOS), optionally projected."""

    def __init__(self, hidden: int, dimension: int):
        super().__init__()
        self.proj = nn.Identity() if dimension == hidden else nn.Linear(hidden, dimension)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # Select with a one-hot mask rather than a gather: it exports to ONNX with no shape arithmetic.
        # The last real token is where the running count of real tokens reaches the row's total.
        count = mask.cumsum(1)  # (B, T)
        last = (count == count[:, -1:]) & (mask > 0)  # (B, T), one True per row
        pooled = (h * last.unsqueeze(-1).to(h.dtype)).sum(1)  # (B, H)
        return self.proj(pooled)  # (B, D)


class PMAPooling(nn.Module):
    """Pooling by multi-head attention (Set Transformer; C2LLM and CodeFuse-CGE).

    Learnable seed queries attend over the hidden states; K and V project them to `dimension`:
        O = LN(Q + softmax(Q K^T / sqrt(d_head)) V)      Q = fc_q(seed), K = fc_k(h), V = fc_v(h)
        O = LN(O + ReLU(fc_o(O)))
    Padding keys get the dtype's minimum before the softmax (-1e12 would overflow in fp16). The
    attention is written with explicit matmuls because `nn.MultiheadAttention` exports to ONNX with
    the sequence length baked in. With several seeds their outputs are averaged. (CGE scales by
    sqrt(dimension); we use the usual sqrt(d_head).)
    """

    def __init__(self, hidden: int, dimension: int, heads: int = 8, seeds: int = 1):
        super().__init__()
        if dimension % heads:
            raise ValueError(f"PMA dimension {dimension} is not divisible by {heads} heads")
        self.heads = heads
        self.scale = 1.0 / math.sqrt(dimension // heads)
        self.seed = nn.Parameter(torch.empty(seeds, dimension))
        nn.init.xavier_uniform_(self.seed)
        self.fc_q = nn.Linear(dimension, dimension)
        self.fc_k = nn.Linear(hidden, dimension)
        self.fc_v = nn.Linear(hidden, dimension)
        self.ln0 = nn.LayerNorm(dimension)
        self.fc_o = nn.Linear(dimension, dimension)
        self.ln1 = nn.LayerNorm(dimension)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        nh = self.heads
        q = self.fc_q(self.seed).unflatten(-1, (nh, -1)).transpose(0, 1)  # (nh, S, hd)
        k = self.fc_k(h).unflatten(-1, (nh, -1)).transpose(1, 2)  # (B, nh, T, hd)
        v = self.fc_v(h).unflatten(-1, (nh, -1)).transpose(1, 2)  # (B, nh, T, hd)
        scores = q @ k.transpose(-1, -2) * self.scale  # (B, nh, S, T)
        scores = scores.masked_fill(mask[:, None, None, :] == 0, torch.finfo(scores.dtype).min)
        o = q + scores.softmax(-1) @ v  # (B, nh, S, hd), residual from the seed query
        o = o.transpose(1, 2).flatten(2)  # (B, S, D)
        o = self.ln0(o)
        o = self.ln1(o + F.relu(self.fc_o(o)))  # (B, S, D)
        return o.mean(1)  # (B, D)


# ----------------------------------------------------------------------------- encoder


@dataclass
class EncoderConfig:
    """pooling: "pma" (C2LLM), "mean" (CL4D) or "last"; dimension: output size (0: hidden size)."""

    pooling: str = "pma"
    dimension: int = 256
    pma_heads: int = 8
    pma_seeds: int = 1


class Encoder(nn.Module):
    """Decoder body + pooling + L2 norm: texts' token ids (B, T) -> unit vectors (B, D)."""

    def __init__(self, base: nn.Module, cfg: EncoderConfig):
        super().__init__()
        self.config = cfg
        self.decoder = decoder_body(base)
        hidden = self.decoder.config.hidden_size
        self.dimension = cfg.dimension or hidden
        if cfg.pooling == "pma":
            self.pooling = PMAPooling(hidden, self.dimension, cfg.pma_heads, cfg.pma_seeds)
        elif cfg.pooling == "mean":
            self.pooling = MeanPooling(hidden, self.dimension)
        elif cfg.pooling == "last":
            self.pooling = LastTokenPooling(hidden, self.dimension)
        else:
            raise ValueError(f"unknown pooling {cfg.pooling!r}: use pma, mean or last")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        pooled = self.pooling(out.last_hidden_state, attention_mask)  # (B, D)
        return F.normalize(pooled.float(), dim=-1)  # (B, D), unit length

    def save(self, path: Path, *, tokenizer: Tokenizer | None = None) -> None:
        """Write decoder/ (save_pretrained), pooling.safetensors, encoder.json [, tokenizer.json].

        The folder is written beside `path` and renamed into place, so a crash leaves the old one.
        """
        from safetensors.torch import save_file

        if is_lora(self):
            raise ValueError("the encoder still has LoRA adapters: merge_lora(encoder) before saving")
        path = Path(path)
        partial = path.with_name(path.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        self.decoder.save_pretrained(str(partial / "decoder"))
        state = {k: v.detach().cpu().contiguous() for k, v in self.pooling.state_dict().items()}
        save_file(state, str(partial / "pooling.safetensors"))
        meta = {**asdict(self.config), "dimension": self.dimension}
        (partial / "encoder.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        if tokenizer is not None:
            tokenizer.save(str(partial / "tokenizer.json"))
        replace_dir(partial, path)

    @classmethod
    def load(cls, path: Path, *, dtype: torch.dtype = torch.float32) -> "Encoder":
        """Read a folder written by `save`."""
        from safetensors.torch import load_file
        from transformers import AutoModel

        path = Path(path)
        if not (path / "encoder.json").is_file():
            raise CodesearchError(f"no trained encoder at {path} (encoder.json missing)")
        cfg = EncoderConfig(**json.loads((path / "encoder.json").read_text(encoding="utf-8")))
        decoder = AutoModel.from_pretrained(str(path / "decoder"), local_files_only=True, dtype=dtype)
        encoder = cls(decoder, cfg)
        encoder.pooling.load_state_dict(load_file(str(path / "pooling.safetensors")))
        return encoder.to(dtype)


def is_lora(encoder: Encoder) -> bool:
    """Whether the decoder is wrapped by peft (adapters not merged yet)."""
    return hasattr(encoder.decoder, "merge_and_unload")


def tokenize_batch(
    tok: Tokenizer, texts: list[str], prefix: str, max_length: int, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), int64 (B, T), right-padded: the ids the engine feeds its graph."""
    rows = [e.ids[:max_length] or [pad_id] for e in tok.encode_batch([prefix + t for t in texts])]
    input_ids, mask = pad_batch(rows, pad_id)
    return torch.from_numpy(input_ids), torch.from_numpy(mask)


def replace_dir(new: Path, old: Path) -> None:
    """Put the finished folder `new` at `old`, keeping the old folder until the rename is done."""
    trash = old.with_name(old.name + ".old")
    shutil.rmtree(trash, ignore_errors=True)
    if old.exists():
        old.rename(trash)
    new.rename(old)
    shutil.rmtree(trash, ignore_errors=True)
