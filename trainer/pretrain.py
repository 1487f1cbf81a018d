"""Pretraining: next-token prediction on the code corpus, as in nanoGPT.

The corpus is tokenized once into one stream of ids (each document ends with the EOS the
tokenizer appends) and cached as tokens.npy. A batch is B windows of T+1 tokens at random offsets
(seeded by the step, so a resumed run draws the batches an unbroken one would); documents run into
each other across EOS, as in GPT-2. AdamW with linear warmup and cosine decay to min_lr.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from trainer.model import autocast, uses_bf16
from trainer.progress import training_bar
from trainer.recipe import PretrainConfig


def token_stream(tok: Tokenizer, texts: Sequence[str], cache: Path | None = None) -> np.ndarray:
    """All texts' token ids, concatenated (each ends with EOS): uint32 [n_tokens]; cached at `cache`."""
    if cache is not None and cache.is_file():
        return np.load(cache)
    parts = []
    for start in range(0, len(texts), 256):
        parts.extend(np.asarray(e.ids, dtype=np.uint32) for e in tok.encode_batch(list(texts[start : start + 256])))
    stream = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint32)
    if cache is not None:
        tmp = cache.with_name(cache.name + ".tmp.npy")
        np.save(tmp, stream)
        os.replace(tmp, cache)
    return stream


def get_batch(stream: np.ndarray, step: int, cfg: PretrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) int64 (B, T): random windows of the stream and the same shifted by one token."""
    T = cfg.seq_length
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    starts = torch.randint(0, len(stream) - T, (cfg.batch_size,), generator=g).tolist()
    rows = torch.from_numpy(np.stack([stream[s : s + T + 1] for s in starts]).astype(np.int64))  # (B, T+1)
    return rows[:, :-1], rows[:, 1:]


def lr_at(step: int, cfg: PretrainConfig) -> float:
    """Linear warmup to cfg.lr over warmup_steps, then cosine decay to cfg.min_lr at cfg.steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def pretrain(model, tok: Tokenizer, texts: Sequence[str], cfg: PretrainConfig, out_dir: Path, *,
             progress: bool = True) -> dict:
    """Train a causal LM (`transformers` *ForCausalLM) on `texts`; resume from out_dir/checkpoint.pt.

    Writes out_dir/tokens.npy, log.jsonl, checkpoint.pt and out_dir/final (save_pretrained plus
    tokenizer.json). Returns steps, first and last loss of this run, and tokens/s.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stream = token_stream(tok, texts, out_dir / "tokens.npy")
    if len(stream) < cfg.seq_length + 2:
        raise ValueError(f"corpus has {len(stream)} tokens, fewer than one sequence of {cfg.seq_length}")
    torch.manual_seed(cfg.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bf16 = uses_bf16(device, cfg.precision)
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    # Weight decay on matrices only (embeddings included), not on norms and biases: nanoGPT's split.
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
         {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.95),
    )
    checkpoint = out_dir / "checkpoint.pt"
    step = 0
    if checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])

    bar = training_bar("pretrain", "{task.fields[rate]:,.0f} tok/s", progress, cfg.steps, step)
    log = (out_dir / "log.jsonl").open("a", encoding="utf-8")
    first_loss = last_loss = None
    window: list[float] = []
    started, start_step = time.perf_counter(), step
    while step < cfg.steps:
        lr = lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = get_batch(stream, step, cfg)  # (B, T) each
        with autocast(device, bf16):
            logits = model(input_ids=x.to(device), use_cache=False).logits  # (B, T, V)
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.to(device).flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        step += 1

        last_loss = loss.item()
        first_loss = last_loss if first_loss is None else first_loss
        window.append(last_loss)
        tokens_per_s = (step - start_step) * cfg.batch_size * cfg.seq_length / (time.perf_counter() - started)
        if step % cfg.log_every == 0 or step == cfg.steps:
            record = {"step": step, "loss": sum(window) / len(window), "lr": lr, "tokens_per_s": tokens_per_s}
            log.write(json.dumps(record) + "\n")
            log.flush()
            window = []
        if bar is not None:
            bar[0].update(bar[1], completed=step, loss=last_loss, lr=lr, rate=tokens_per_s)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            tmp = checkpoint.with_name("checkpoint.pt.tmp")
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}, tmp)
            os.replace(tmp, checkpoint)
    log.close()
    if bar is not None:
        bar[0].stop()

    model.eval()
    final, partial = out_dir / "final", out_dir / "final.partial"
    model.save_pretrained(str(partial))
    tok.save(str(partial / "tokenizer.json"))
    from trainer.model import replace_dir

    replace_dir(partial, final)
    elapsed = time.perf_counter() - started
    return {
        "steps": step,
        "corpus_tokens": int(len(stream)),
        "first_loss": first_loss,
        "last_loss": last_loss,
        "tokens_per_s": (step - start_step) * cfg.batch_size * cfg.seq_length / elapsed if step > start_step else 0.0,
        "precision": "bf16" if bf16 else "fp32",
    }
