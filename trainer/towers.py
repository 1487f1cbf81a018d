"""The two towers: each tuned against the other's frozen vectors of the whole training set.

The contrastive stage trains one encoder for both sides. The query stage keeps that encoder as the
code tower, embeds every training code with it once, and tunes a copy of it for queries alone. With
the code vectors fixed, each query is scored against every code of the training set for the price
of one matrix product: its own code is the positive and all the others are negatives, far harder
ones than a batch holds. The code stage (optional) then turns it round: the query tower, now frozen,
embeds every training query once, and a copy of the code tower learns to find its own query among
all of them; optionally the query tower is then tuned once more against the new code tower.

    query stage:  pairs' codes   -> code tower (frozen)  -> C (N, D)   query/codes.npy, once
                  B queries      -> query tower          -> q (B, D)   InfoNCE over q C^T, every step
    code stage:   pairs' queries -> query tower (frozen) -> Q (N, D)   code/queries.npy, once
                  B codes        -> code tower           -> c (B, D)   InfoNCE over c Q^T, every step

The engine runs the result as an asymmetric dual encoder (`codesearch.model`): queries through the
model folder's query.onnx, code (indexing, clone queries) through model.onnx, which is the code
stage's tower when there is one and the contrastive encoder otherwise.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from codesearch.errors import CodesearchError
from trainer.contrastive import (adamw, batch_indices, batch_queries, load_checkpoint, lr_factor, optimizer_step,
                                 save_checkpoint, search_style, trim_log)
from trainer.model import Encoder, autocast, tokenize_batch, uses_bf16
from trainer.progress import training_bar
from trainer.tokenizer import special_ids

CODES_FILE = "codes.npy"  # query stage: (N, D) float32, pair i's code through the frozen code tower
QUERIES_FILE = "queries.npy"  # code stage: (N, D) float32, pair i's query through the frozen query tower


@dataclass
class TowerConfig:
    """[query] and [code]: one tower tuned against the other's frozen vectors."""

    max_steps: int = 0  # 0: no such stage
    batch_size: int = 256
    lr: float = 5e-5
    warmup_steps: int = 50
    schedule: str = "cosine"  # after warmup, down to 0 ("cosine" or "linear"), as the contrastive stage
    weight_decay: float = 0.01
    temperature: float = 0.05
    query_max_length: int = 32
    code_max_length: int = 128
    docstring_share: float = 0.5  # share of the codes embedded with their docstring
    search_style: float = 0.5  # share of queries rewritten as typed searches (trainer.contrastive.search_style)
    grad_clip: float = 1.0
    checkpoint_every: int = 100
    log_every: int = 10
    seed: int = 0
    precision: str = "auto"  # trainer.model.uses_bf16
    code_batch_size: int = 256  # embedding the frozen side (no gradients)
    requery_steps: int = 0  # [code] only: then the query tower tuned again against the new code tower (steps)
    rounds: int = 1  # [code] only: code tower and query tower take turns this many times


def tower_digest(folder: Path) -> str:
    """A digest of a saved Encoder folder's weights: frozen vectors are only reused with the same tower."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).rglob("*.safetensors")):
        digest.update(path.relative_to(folder).as_posix().encode())
        with open(path, "rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()[:16]


def with_docstrings(pairs: Sequence[dict], share: float, rng: random.Random) -> list[str]:
    """Each pair's code, as written (docstring included) for a `share` of them, drawn from `rng`."""
    return [p["code_full"] if p.get("code_full") and rng.random() < share else p["code"] for p in pairs]


def pair_codes(pairs: Sequence[dict], cfg: TowerConfig) -> list[str]:
    """Each pair's code as the frozen code tower sees it: with its docstring for a `docstring_share`."""
    return with_docstrings(pairs, cfg.docstring_share, random.Random(cfg.seed * 3_000_017 + 1))


def pair_queries(pairs: Sequence[dict], cfg: TowerConfig) -> list[str]:
    """Each pair's query as the frozen query tower sees it: a `search_style` share rewritten."""
    rng = random.Random(cfg.seed * 3_000_017 + 2)
    return [search_style(p["query"], p.get("language", ""), rng) if rng.random() < cfg.search_style else p["query"]
            for p in pairs]


def batch_code_texts(pairs: Sequence[dict], step: int, cfg: TowerConfig) -> list[str]:
    """The codes of a code-stage batch, each keeping its docstring with `docstring_share`; a pure
    function of the step."""
    return with_docstrings(pairs, cfg.docstring_share, random.Random(cfg.seed * 2_000_003 + step))


def embed_texts(encoder: Encoder, tok: Tokenizer, texts: list[str], cfg: TowerConfig, prefix: str, max_length: int,
                label: str, *, progress: bool = True) -> np.ndarray:
    """(N, D) float32 unit vectors of `texts`, cut to max_length tokens, batched by length in
    characters (each batch is tokenized once, when it is embedded)."""
    device = next(encoder.parameters()).device
    bf16 = uses_bf16(device, cfg.precision)
    pad = special_ids(tok)["pad"]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), encoder.dimension), dtype=np.float32)
    bar = training_bar(label, "{task.fields[rate]:.0f} texts/s", progress and sys.stderr.isatty(), len(texts), 0)
    started = time.perf_counter()
    encoder.eval()
    with torch.inference_mode():
        for start in range(0, len(order), cfg.code_batch_size):
            rows = order[start : start + cfg.code_batch_size]
            ids, mask = tokenize_batch(tok, [texts[i] for i in rows], prefix, max_length, pad)
            with autocast(device, bf16):
                out[rows] = encoder(ids.to(device), mask.to(device)).float().cpu().numpy()
            if bar is not None:
                done = start + len(rows)
                bar[0].update(bar[1], completed=done, rate=done / (time.perf_counter() - started))
    if bar is not None:
        bar[0].stop()
    return out


def frozen_vectors(tower: Encoder, tower_folder: Path, tok: Tokenizer, texts: list[str], stamp: dict,
                   path: Path, prefix: str, max_length: int, cfg: TowerConfig, *, progress: bool = True,
                   log=print) -> torch.Tensor:
    """`texts` through the frozen `tower`: read from `path` if the same tower and settings made it
    (its stamp, path + .json), else embedded and written (atomically). A file made with another tower
    or settings is refused, not mixed."""
    stamp = {"tower": tower_digest(tower_folder), "pairs": len(texts), **stamp, "prefix": prefix}
    stamp_file = path.with_suffix(".json")
    if stamp_file.is_file():
        before = json.loads(stamp_file.read_text(encoding="utf-8"))
        if before != stamp:
            changed = ", ".join(k for k in stamp if before.get(k) != stamp[k])
            raise CodesearchError(f"{path} was made with another tower or settings (changed: {changed}): "
                                  "delete it to train again")
        if path.is_file():
            vectors = np.load(path)
            if vectors.shape == (len(texts), tower.dimension):
                return torch.from_numpy(vectors)
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp_file.write_text(json.dumps(stamp) + "\n", encoding="utf-8")
    started = time.perf_counter()
    vectors = embed_texts(tower, tok, texts, cfg, prefix, max_length, path.stem, progress=progress)
    partial = path.with_name(path.stem + ".partial.npy")
    np.save(partial, vectors)
    os.replace(partial, path)
    log(f"embedded {len(texts)} training {path.stem} with the frozen tower in {time.perf_counter() - started:.0f} s")
    return torch.from_numpy(vectors)


def code_vectors(code_tower: Encoder, tower_folder: Path, tok: Tokenizer, pairs: Sequence[dict], cfg: TowerConfig,
                 out_dir: Path, prefix: str, *, progress: bool = True, log=print) -> torch.Tensor:
    """The query stage's targets: every training code through the frozen code tower (out_dir/codes.npy)."""
    stamp = {"docstring_share": cfg.docstring_share, "code_max_length": cfg.code_max_length, "seed": cfg.seed}
    return frozen_vectors(code_tower, tower_folder, tok, pair_codes(pairs, cfg), stamp, out_dir / CODES_FILE, prefix,
                          cfg.code_max_length, cfg, progress=progress, log=log)


def query_vectors(query_tower: Encoder, tower_folder: Path, tok: Tokenizer, pairs: Sequence[dict], cfg: TowerConfig,
                  out_dir: Path, prefix: str, *, progress: bool = True, log=print) -> torch.Tensor:
    """The code stage's targets: every training query through the frozen query tower (out_dir/queries.npy)."""
    stamp = {"search_style": cfg.search_style, "query_max_length": cfg.query_max_length, "seed": cfg.seed}
    return frozen_vectors(query_tower, tower_folder, tok, pair_queries(pairs, cfg), stamp, out_dir / QUERIES_FILE,
                          prefix, cfg.query_max_length, cfg, progress=progress, log=log)


def corpus_info_nce(x: torch.Tensor, targets: torch.Tensor, positives: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE of x (B, D) against every target (N, D); row i's positive is targets[positives[i]]."""
    return F.cross_entropy(x @ targets.T / temperature, positives)


def tune_tower(start: Encoder, targets: torch.Tensor, tok: Tokenizer, batch_texts: Callable[[list[int], int], list[str]],
               prefix: str, max_length: int, cfg: TowerConfig, out_dir: Path, label: str, *,
               progress: bool = True) -> dict:
    """Tune a copy of `start` so that the texts of pair i find targets[i] among all `targets`.

    `batch_texts(rows, step)` gives the texts of a batch. Resumes from out_dir/checkpoint; writes
    out_dir/log.jsonl and the tower to out_dir/final (with tokenizer.json). Returns steps, first and
    last loss of this run, and texts/s.
    """
    n = len(targets)
    if n == 0:
        raise ValueError("no training pairs")
    torch.manual_seed(cfg.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bf16 = uses_bf16(device, cfg.precision)
    pad = special_ids(tok)["pad"]
    tower = copy.deepcopy(start).to(device).train()
    for p in tower.parameters():
        p.requires_grad_(True)
    targets = targets.to(device)
    params = list(tower.parameters())
    optimizer = adamw(params, cfg.lr, cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    checkpoint = out_dir / "checkpoint" / "state.pt"
    step = load_checkpoint(checkpoint, tower, optimizer, scheduler) if checkpoint.is_file() else 0
    trim_log(out_dir / "log.jsonl", step)

    log = (out_dir / "log.jsonl").open("a", encoding="utf-8")
    bar = training_bar(label, "{task.fields[rate]:.0f} texts/s", progress and sys.stderr.isatty(), cfg.max_steps, step)
    echo = progress and bar is None
    first_loss = last_loss = None
    window, started, start_step = [], time.perf_counter(), step
    while step < cfg.max_steps:
        rows = batch_indices(step, n, cfg.batch_size, cfg.seed)
        ids, mask = tokenize_batch(tok, batch_texts(rows, step), prefix, max_length, pad)
        with autocast(device, bf16):
            x = tower(ids.to(device), mask.to(device)).float()  # (B, D)
        loss = corpus_info_nce(x, targets, torch.tensor(rows, device=device), cfg.temperature)
        lr = optimizer_step(loss, optimizer, scheduler, params, cfg.grad_clip)
        step += 1

        last_loss = loss.item()
        first_loss = last_loss if first_loss is None else first_loss
        window.append(last_loss)
        rate = (step - start_step) * len(rows) / (time.perf_counter() - started)
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            record = {"step": step, "loss": sum(window) / len(window), "lr": lr, "texts_per_s": rate}
            log.write(json.dumps(record) + "\n")
            log.flush()
            if echo:
                print(f"step {step}/{cfg.max_steps}  loss {record['loss']:.4f}  lr {lr:.2e}  {rate:.0f} texts/s",
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
    done = (step - start_step) * min(cfg.batch_size, n)
    return {
        "steps": step,
        "first_loss": first_loss,
        "last_loss": last_loss,
        "texts_per_s": done / (time.perf_counter() - started) if done else 0.0,
        "negatives": n - 1,
        "precision": "bf16" if bf16 else "fp32",
    }


def train_query_tower(start: Encoder, codes: torch.Tensor, tok: Tokenizer, pairs: Sequence[dict],
                      cfg: TowerConfig, out_dir: Path, *, query_prefix: str, progress: bool = True) -> dict:
    """Tune a copy of `start` (the code tower, or a query tower tuned before) for pair i's query to
    find codes[i] among all `codes`."""
    if len(codes) != len(pairs):
        raise ValueError(f"{len(codes)} code vectors for {len(pairs)} pairs")
    return tune_tower(start, codes, tok, lambda rows, step: batch_queries([pairs[i] for i in rows], step, cfg),
                      query_prefix, cfg.query_max_length, cfg, out_dir, "query tower", progress=progress)


def train_code_tower(code_tower: Encoder, queries: torch.Tensor, tok: Tokenizer, pairs: Sequence[dict],
                     cfg: TowerConfig, out_dir: Path, *, code_prefix: str, progress: bool = True) -> dict:
    """Tune a copy of `code_tower` for pair i's code to find queries[i] among all `queries`."""
    if len(queries) != len(pairs):
        raise ValueError(f"{len(queries)} query vectors for {len(pairs)} pairs")
    return tune_tower(code_tower, queries, tok, lambda rows, step: batch_code_texts([pairs[i] for i in rows], step, cfg),
                      code_prefix, cfg.code_max_length, cfg, out_dir, "code tower", progress=progress)
