"""The query tower: a copy of the trained encoder tuned for queries, against frozen code vectors.

The contrastive stage trains one encoder for both sides. This stage keeps that encoder as the code
tower, untouched (so code vectors, clone queries and the speed of indexing do not change), embeds
every training code with it once, and tunes a copy of it for queries alone. With the code vectors
fixed, each query can be scored against every code of the training set for the price of one matrix
product: its own code is the positive and all the others are negatives, far harder ones than a
batch holds.

    pairs' codes -> code tower (frozen) -> C (N, D)                        codes.npy, once
    B queries    -> query tower         -> q (B, D) -> InfoNCE over q C^T  every step

The engine runs the result as the model folder's query.onnx (`codesearch.model`), an asymmetric dual
encoder: queries through the query tower, code through model.onnx.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from codesearch.errors import CodesearchError
from trainer.contrastive import (adamw, batch_indices, batch_queries, load_checkpoint, lr_factor, optimizer_step,
                                 save_checkpoint, trim_log)
from trainer.model import Encoder, autocast, tokenize_batch, uses_bf16
from trainer.progress import training_bar
from trainer.tokenizer import special_ids

CODES_FILE = "codes.npy"  # (N, D) float32: pair i's code through the frozen code tower
CODES_STAMP = "codes.json"  # which code tower and pairs made it


@dataclass
class QueryConfig:
    max_steps: int = 0  # 0: no query tower; the exported model embeds queries with model.onnx
    batch_size: int = 256
    lr: float = 5e-5
    warmup_steps: int = 50
    schedule: str = "cosine"  # after warmup, down to 0 ("cosine" or "linear"), as the contrastive stage
    weight_decay: float = 0.01
    temperature: float = 0.05
    query_max_length: int = 32
    code_max_length: int = 128
    docstring_share: float = 0.5  # share of the codes embedded with their docstring (each drawn once)
    search_style: float = 0.5  # share of queries rewritten as typed searches (trainer.contrastive.search_style)
    grad_clip: float = 1.0
    checkpoint_every: int = 100
    log_every: int = 10
    seed: int = 0
    precision: str = "auto"  # trainer.model.uses_bf16
    code_batch_size: int = 256  # embedding the codes (no gradients)


def tower_digest(folder: Path) -> str:
    """A digest of a saved Encoder folder's weights: code vectors are only reused with the same tower."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).rglob("*.safetensors")):
        digest.update(path.relative_to(folder).as_posix().encode())
        with open(path, "rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()[:16]


def pair_codes(pairs: Sequence[dict], cfg: QueryConfig) -> list[str]:
    """Each pair's code as the code tower sees it: with its docstring for a `docstring_share` of them."""
    rng = random.Random(cfg.seed * 3_000_017 + 1)
    return [p["code_full"] if p.get("code_full") and rng.random() < cfg.docstring_share else p["code"]
            for p in pairs]


def embed_codes(encoder: Encoder, tok: Tokenizer, texts: list[str], cfg: QueryConfig, prefix: str,
                *, progress: bool = True) -> np.ndarray:
    """(N, D) float32 unit vectors of `texts`, cut to code_max_length tokens, batched by length in
    characters (each batch is tokenized once, when it is embedded)."""
    device = next(encoder.parameters()).device
    bf16 = uses_bf16(device, cfg.precision)
    pad = special_ids(tok)["pad"]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), encoder.dimension), dtype=np.float32)
    bar = training_bar("code vectors", "{task.fields[rate]:.0f} codes/s", progress and sys.stderr.isatty(),
                       len(texts), 0)
    started = time.perf_counter()
    encoder.eval()
    with torch.inference_mode():
        for start in range(0, len(order), cfg.code_batch_size):
            rows = order[start : start + cfg.code_batch_size]
            ids, mask = tokenize_batch(tok, [texts[i] for i in rows], prefix, cfg.code_max_length, pad)
            with autocast(device, bf16):
                out[rows] = encoder(ids.to(device), mask.to(device)).float().cpu().numpy()
            if bar is not None:
                done = start + len(rows)
                bar[0].update(bar[1], completed=done, rate=done / (time.perf_counter() - started))
    if bar is not None:
        bar[0].stop()
    return out


def code_vectors(code_tower: Encoder, tower_folder: Path, tok: Tokenizer, pairs: Sequence[dict], cfg: QueryConfig,
                 out_dir: Path, prefix: str, *, progress: bool = True, log=print) -> torch.Tensor:
    """The training codes' vectors: read from out_dir if the same tower made them there, else embedded
    and written (atomically). A folder made with another tower is refused, not mixed."""
    stamp = {"tower": tower_digest(tower_folder), "pairs": len(pairs), "docstring_share": cfg.docstring_share,
             "code_max_length": cfg.code_max_length, "seed": cfg.seed, "prefix": prefix}
    stamp_file, codes_file = out_dir / CODES_STAMP, out_dir / CODES_FILE
    if stamp_file.is_file():
        before = json.loads(stamp_file.read_text(encoding="utf-8"))
        if before != stamp:
            changed = ", ".join(k for k in stamp if before.get(k) != stamp[k])
            raise CodesearchError(f"{out_dir} was made with another code tower or settings (changed: {changed}): "
                                  "delete it to train the query tower again")
        if codes_file.is_file():
            vectors = np.load(codes_file)
            if vectors.shape == (len(pairs), code_tower.dimension):
                return torch.from_numpy(vectors)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp_file.write_text(json.dumps(stamp) + "\n", encoding="utf-8")
    started = time.perf_counter()
    vectors = embed_codes(code_tower, tok, pair_codes(pairs, cfg), cfg, prefix, progress=progress)
    partial = codes_file.with_name("codes.partial.npy")
    np.save(partial, vectors)
    os.replace(partial, codes_file)
    log(f"query: embedded {len(pairs)} training codes with the code tower in {time.perf_counter() - started:.0f} s")
    return torch.from_numpy(vectors)


def corpus_info_nce(q: torch.Tensor, codes: torch.Tensor, positives: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE of queries q (B, D) against every code (N, D); query i's positive is codes[positives[i]]."""
    return F.cross_entropy(q @ codes.T / temperature, positives)


def train_query_tower(code_tower: Encoder, codes: torch.Tensor, tok: Tokenizer, pairs: Sequence[dict],
                      cfg: QueryConfig, out_dir: Path, *, query_prefix: str, progress: bool = True) -> dict:
    """Tune a copy of `code_tower` for pair i's query to find codes[i] among all `codes`.

    Resumes from out_dir/checkpoint; writes out_dir/log.jsonl and the tower to out_dir/final (with
    tokenizer.json). Returns steps, first and last loss of this run, and queries/s.
    """
    if not pairs:
        raise ValueError("no training pairs")
    if len(codes) != len(pairs):
        raise ValueError(f"{len(codes)} code vectors for {len(pairs)} pairs")
    torch.manual_seed(cfg.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bf16 = uses_bf16(device, cfg.precision)
    pad = special_ids(tok)["pad"]
    tower = copy.deepcopy(code_tower).to(device).train()
    for p in tower.parameters():
        p.requires_grad_(True)
    codes = codes.to(device)
    params = list(tower.parameters())
    optimizer = adamw(params, cfg.lr, cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    checkpoint = out_dir / "checkpoint" / "state.pt"
    step = load_checkpoint(checkpoint, tower, optimizer, scheduler) if checkpoint.is_file() else 0
    trim_log(out_dir / "log.jsonl", step)

    log = (out_dir / "log.jsonl").open("a", encoding="utf-8")
    bar = training_bar("query tower", "{task.fields[rate]:.0f} queries/s", progress and sys.stderr.isatty(),
                       cfg.max_steps, step)
    echo = progress and bar is None
    first_loss = last_loss = None
    window, started, start_step = [], time.perf_counter(), step
    while step < cfg.max_steps:
        rows = batch_indices(step, len(pairs), cfg.batch_size, cfg.seed)
        ids, mask = tokenize_batch(tok, batch_queries([pairs[i] for i in rows], step, cfg), query_prefix,
                                   cfg.query_max_length, pad)
        with autocast(device, bf16):
            q = tower(ids.to(device), mask.to(device)).float()  # (B, D)
        loss = corpus_info_nce(q, codes, torch.tensor(rows, device=device), cfg.temperature)
        lr = optimizer_step(loss, optimizer, scheduler, params, cfg.grad_clip)
        step += 1

        last_loss = loss.item()
        first_loss = last_loss if first_loss is None else first_loss
        window.append(last_loss)
        rate = (step - start_step) * len(rows) / (time.perf_counter() - started)
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            record = {"step": step, "loss": sum(window) / len(window), "lr": lr, "queries_per_s": rate}
            log.write(json.dumps(record) + "\n")
            log.flush()
            if echo:
                print(f"step {step}/{cfg.max_steps}  loss {record['loss']:.4f}  lr {lr:.2e}  {rate:.0f} queries/s",
                      file=sys.stderr, flush=True)
            window = []
        if bar is not None:
            bar[0].update(bar[1], completed=step, loss=last_loss, lr=lr, rate=rate)
        if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
            save_checkpoint(checkpoint, tower, optimizer, scheduler, step)
    log.close()
    if bar is not None:
        bar[0].stop()
    tower.eval()
    tower.save(out_dir / "final", tokenizer=tok)
    done = (step - start_step) * min(cfg.batch_size, len(pairs))
    return {
        "steps": step,
        "first_loss": first_loss,
        "last_loss": last_loss,
        "queries_per_s": done / (time.perf_counter() - started) if done else 0.0,
        "negatives": len(pairs) - 1,
        "precision": "bf16" if bf16 else "fp32",
    }
