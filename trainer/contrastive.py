"""Contrastive fine-tuning: (query, code, hard negative) pairs -> an embedding model (CL4D, C2LLM).

One step: embed B queries and the B positive codes followed by their hard negatives, score every
query against every code, and push each query towards its own code with InfoNCE. LoRA adapters on
the decoder's projections (or all weights) and the whole pooling head are trained.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from trainer.model import Encoder, autocast, is_lora, tokenize_batch, uses_bf16
from trainer.progress import training_bar
from trainer.tokenizer import special_ids


def info_nce(q: torch.Tensor, c: torch.Tensor, temperature: float = 0.05, in_batch: bool = True) -> torch.Tensor:
    """InfoNCE over unit vectors q (B, D) and c (B*(1+n), D).

    c holds the B positives first (c[i] is query i's code), then the hard negatives flattened pair
    by pair (query i's are c[B + i*n : B + (i+1)*n]), as in CL4D. With s(q, c) = q.c / tau:

        loss = -1/B sum_i log( exp s(q_i, c_i) / sum_{j in C_i} exp s(q_i, c_j) )

    where C_i is every code in the batch when `in_batch` (other queries' positives and negatives
    serve as negatives too), else only query i's positive and its own hard negatives. With
    in_batch, c may hold any number of extra negatives after the B positives.
    """
    B = q.shape[0]
    if in_batch:
        logits = q @ c.T / temperature  # (B, B*(1+n)), target of row i is column i
        return F.cross_entropy(logits, torch.arange(B, device=q.device))
    if c.shape[0] % B:
        raise ValueError(f"{c.shape[0]} codes do not split into {B} pairs of positive + hard negatives")
    own = torch.cat([c[:B, None], c[B:].view(B, -1, c.shape[1])], dim=1)  # (B, 1+n, D), positive first
    logits = torch.einsum("bd,bkd->bk", q, own) / temperature  # (B, 1+n), target of row i is column 0
    return F.cross_entropy(logits, torch.zeros(B, dtype=torch.long, device=q.device))


UNTIMED_STEPS = 5  # the first steps of a run are slower (allocation, CUDA start): a time budget skips them
TIMED_STEPS = 20  # then times this many to fit max_steps into the budget


@dataclass
class ContrastiveConfig:
    temperature: float = 0.05  # CL4D and C2LLM; logits = cos * 20
    lr: float = 1e-4  # C2LLM's LoRA rate; CL4D's full fine-tuning used 2e-5
    weight_decay: float = 0.01
    warmup_steps: int = 100
    max_steps: int = 1000
    schedule: str = "cosine"  # decay after warmup: "cosine" or "linear", down to 0
    batch_size: int = 32
    query_max_length: int = 64
    code_max_length: int = 256
    use_lora: bool = True  # False: full fine-tuning (CL4D)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    hard_negatives: bool = True  # one mined negative per pair, appended after the positives
    in_batch: bool = True  # other pairs' codes are negatives too (False: own negatives only)
    grad_checkpointing: bool = False  # recompute activations in backward: less memory, ~30% slower
    grad_clip: float = 1.0
    checkpoint_every: int = 200
    log_every: int = 10
    seed: int = 0
    query_prefix: str = ""
    code_prefix: str = ""
    search_style: float = 0.0  # share of queries rewritten as a user types a search (see search_style)
    docstring_share: float = 0.0  # share of codes shown with their docstring, as the engine embeds them
    precision: str = "auto"  # matrix products in bf16 where the hardware has them (trainer.model.uses_bf16)
    # A wall-clock budget for this run's training loop (0: none): after TIMED_STEPS timed steps,
    # max_steps is lowered to what fits, and the schedule ends there.
    max_minutes: float = 0.0


def apply_lora(encoder: Encoder, cfg: ContrastiveConfig) -> Encoder:
    """Wrap the decoder with peft LoRA adapters (decoder weights frozen; the pooling head stays trainable)."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_targets),
        bias="none",
    )
    encoder.decoder = get_peft_model(encoder.decoder, lora)
    for p in encoder.pooling.parameters():
        p.requires_grad_(True)
    return encoder


def merge_lora(encoder: Encoder) -> Encoder:
    """Fold the adapters into the decoder weights (W + B A * alpha/r); a no-op without LoRA."""
    if is_lora(encoder):
        encoder.decoder = encoder.decoder.merge_and_unload()
    return encoder


def lr_factor(step: int, cfg: ContrastiveConfig) -> float:
    """Multiplier of cfg.lr for optimizer step `step` (0-based): linear warmup, then decay to 0."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    if cfg.schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def batch_indices(step: int, n_pairs: int, batch_size: int, seed: int) -> list[int]:
    """The pairs of step `step`: a fresh seeded shuffle each epoch, last partial batch dropped.

    A pure function of the step, so a resumed run sees exactly the batches an unbroken one would.
    """
    batch_size = min(batch_size, n_pairs)
    per_epoch = n_pairs // batch_size
    epoch, k = divmod(step, per_epoch)
    order = torch.randperm(n_pairs, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return order[k * batch_size : (k + 1) * batch_size].tolist()


_STYLE_DROP = {"a", "an", "the", "this", "that", "these", "those", "given", "specified", "its", "it",
               "is", "are", "be", "will", "which", "for", "of", "to", "if", "from", "by", "with", "and"}
_LANGUAGE_WORD = {"python": "python", "javascript": "javascript", "typescript": "typescript", "tsx": "typescript",
                  "go": "golang", "java": "java", "ruby": "ruby", "php": "php", "rust": "rust", "c": "c",
                  "cpp": "c++", "c_sharp": "c#"}


def search_style(query: str, language: str, rng: random.Random) -> str:
    """A docstring sentence rewritten the way people type searches: "Return the number of lines in
    the file." -> "python number lines in file". Lower case, no sentence punctuation, most function
    words dropped, often a language word in front, sometimes only the content words."""
    words = re.findall(r"[\w.+#-]+", query.lower())
    words = [w.strip(".-") for w in words if w.strip(".-")]
    if len(words) > 2 and words[0] in {"return", "returns", "get", "gets", "create", "creates"} and rng.random() < 0.5:
        words = words[1:]
    kept = [w for w in words if w not in _STYLE_DROP or rng.random() < 0.2] or words
    if len(kept) > 4 and rng.random() < 0.3:
        kept = kept[: rng.randint(3, len(kept) - 1)]
    if rng.random() < 0.4 and language in _LANGUAGE_WORD:
        word = _LANGUAGE_WORD[language]
        kept = [word] + kept if rng.random() < 0.8 else kept + [word]
    return " ".join(kept)


def batch_queries(pairs: Sequence[dict], step: int, cfg: ContrastiveConfig) -> list[str]:
    """The batch's queries, a `search_style` share of them rewritten; a pure function of the step."""
    if cfg.search_style <= 0:
        return [p["query"] for p in pairs]
    rng = random.Random(cfg.seed * 1_000_003 + step)
    return [search_style(p["query"], p.get("language", ""), rng) if rng.random() < cfg.search_style else p["query"]
            for p in pairs]


def batch_codes(pairs: Sequence[dict], cfg: ContrastiveConfig, step: int = 0) -> list[str]:
    """Positives, then hard negatives. A pair without a negative borrows the next pair's code when
    every query needs exactly one (in_batch=False); with in_batch it simply adds none.

    A `docstring_share` of the codes (positives and negatives alike, each drawn on its own, so that
    a docstring says nothing about which code is the positive) keep their docstring ("code_full",
    "negative_full"): the engine embeds functions as written, and a docstring is what a query most
    often matches. A pure function of the step."""
    rng = random.Random(cfg.seed * 2_000_003 + step)

    def text(pair: dict, key: str) -> str:
        full = pair.get("code_full" if key == "code" else "negative_full")
        keep = cfg.docstring_share > 0 and rng.random() < cfg.docstring_share
        return full if keep and full else pair[key]

    codes = [text(p, "code") for p in pairs]
    if not cfg.hard_negatives:
        return codes
    if cfg.in_batch:
        return codes + [text(p, "negative") for p in pairs if p.get("negative")]
    return codes + [text(p, "negative") if p.get("negative") else codes[(i + 1) % len(codes)]
                    for i, p in enumerate(pairs)]


def train_contrastive(
    encoder: Encoder,
    tok: Tokenizer,
    pairs: Sequence[dict],
    cfg: ContrastiveConfig,
    out_dir: Path,
    *,
    progress: bool = True,
) -> dict:
    """Train `encoder` on {"query", "code", "negative"} pairs; resume from out_dir/checkpoint if there.

    Writes out_dir/log.jsonl (one line per `log_every` steps), out_dir/checkpoint/state.pt, and the
    LoRA-merged encoder (with tokenizer.json) to out_dir/final. Returns steps, first and last loss
    of this run, and pairs/s.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not pairs:
        raise ValueError("no training pairs")
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    pad = special_ids(tok)["pad"]
    bf16 = uses_bf16(device, cfg.precision)
    precision = "bf16" if bf16 else "fp32"

    if cfg.use_lora and not is_lora(encoder):
        apply_lora(encoder, cfg)
    encoder.to(device).train()
    if cfg.grad_checkpointing:
        encoder.decoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    params = [p for p in encoder.parameters() if p.requires_grad]
    optimizer = adamw(params, cfg.lr, cfg.weight_decay)
    schedule = [cfg]  # a time budget may shorten it once the speed is known
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, schedule[0]))

    checkpoint = out_dir / "checkpoint" / "state.pt"
    step = 0
    if checkpoint.is_file():
        step = load_checkpoint(checkpoint, encoder, optimizer, scheduler)
    trim_log(out_dir / "log.jsonl", step)  # drop records a killed run wrote after its last checkpoint

    def embed(texts: list[str], prefix: str, max_length: int) -> torch.Tensor:
        ids, mask = tokenize_batch(tok, texts, prefix, max_length, pad)
        with autocast(device, bf16):
            return encoder(ids.to(device), mask.to(device)).float()  # (B, D); the loss in fp32

    log = (out_dir / "log.jsonl").open("a", encoding="utf-8")
    rate = "{task.fields[rate]:.1f} pairs/s"
    bar = training_bar("contrastive", rate, progress and sys.stderr.isatty(), cfg.max_steps, step)
    echo = progress and bar is None  # not a terminal: one plain line per log record instead
    first_loss = last_loss = None
    window, started, start_step = [], time.perf_counter(), step
    max_steps, timed_from, timer = cfg.max_steps, step + UNTIMED_STEPS, 0.0
    while step < max_steps:
        if step == timed_from:
            timer = time.perf_counter()
        batch = [pairs[i] for i in batch_indices(step, len(pairs), cfg.batch_size, cfg.seed)]
        q = embed(batch_queries(batch, step, cfg), cfg.query_prefix, cfg.query_max_length)  # (B, D)
        c = embed(batch_codes(batch, cfg, step), cfg.code_prefix, cfg.code_max_length)  # (B*(1+n), D)
        loss = info_nce(q, c, cfg.temperature, cfg.in_batch)
        lr = optimizer_step(loss, optimizer, scheduler, params, cfg.grad_clip)
        step += 1

        last_loss = loss.item()
        first_loss = last_loss if first_loss is None else first_loss
        window.append(last_loss)
        pairs_per_s = (step - start_step) * len(batch) / (time.perf_counter() - started)
        if cfg.max_minutes > 0 and step == timed_from + TIMED_STEPS:
            max_steps = fit_budget(step, (time.perf_counter() - timer) / TIMED_STEPS,
                                   cfg.max_minutes * 60 - (time.perf_counter() - started), max_steps)
            schedule[0] = dataclasses.replace(cfg, max_steps=max_steps)
            for group, base in zip(optimizer.param_groups, scheduler.base_lrs):  # the next step's, anew
                group["lr"] = base * lr_factor(step, schedule[0])
            if bar is not None:
                bar[0].update(bar[1], total=max_steps)
            elif progress:
                print(f"step {step}: {cfg.max_minutes:g} min fit {max_steps} steps", file=sys.stderr, flush=True)
        if step % cfg.log_every == 0 or step == max_steps:
            record = {"step": step, "loss": sum(window) / len(window), "lr": lr, "pairs_per_s": pairs_per_s}
            log.write(json.dumps(record) + "\n")
            log.flush()
            if echo:
                print(f"step {step}/{max_steps}  loss {record['loss']:.4f}  lr {lr:.2e}  "
                      f"{pairs_per_s:.1f} pairs/s", file=sys.stderr, flush=True)
            window = []
        if bar is not None:
            bar[0].update(bar[1], completed=step, loss=last_loss, lr=lr, rate=pairs_per_s)
        if step % cfg.checkpoint_every == 0 or step == max_steps:
            save_checkpoint(checkpoint, encoder, optimizer, scheduler, step)
    log.close()
    if bar is not None:
        bar[0].stop()

    encoder.eval()
    if cfg.grad_checkpointing:
        encoder.decoder.gradient_checkpointing_disable()
    merge_lora(encoder)
    encoder.save(out_dir / "final", tokenizer=tok)
    done = (step - start_step) * min(cfg.batch_size, len(pairs))
    if not done and (out_dir / "log.jsonl").is_file():  # resumed at max_steps: the log has the last figures
        lines = (out_dir / "log.jsonl").read_text(encoding="utf-8").splitlines()
        if lines:
            last = json.loads(lines[-1])
            return {"steps": step, "first_loss": None, "last_loss": last["loss"], "pairs_per_s": last["pairs_per_s"],
                    "precision": precision}
    budget = {"max_minutes": cfg.max_minutes, "max_steps": max_steps} if cfg.max_minutes > 0 else {}
    return {
        **budget,
        "steps": step,
        "first_loss": first_loss,
        "last_loss": last_loss,
        "pairs_per_s": done / (time.perf_counter() - started) if done else 0.0,
        "precision": precision,
    }


def adamw(params: list, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with no weight decay on biases, norms and the PMA seed (1-d or fewer), as in nanoGPT."""
    return torch.optim.AdamW(
        [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ],
        lr=lr,
        betas=(0.9, 0.999),
    )


def optimizer_step(loss: torch.Tensor, optimizer, scheduler, params: list, grad_clip: float) -> float:
    """Backward, clip, step the optimizer and the schedule; returns the learning rate the step used."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    scheduler.step()
    return lr


def fit_budget(step: int, seconds_per_step: float, seconds_left: float, max_steps: int) -> int:
    """The last step a time budget allows: what `seconds_left` holds at this speed, at most `max_steps`,
    at least one more step."""
    return max(step + 1, min(max_steps, step + int(seconds_left / max(seconds_per_step, 1e-9))))


def save_checkpoint(path: Path, encoder: Encoder, optimizer, scheduler, step: int) -> None:
    """Trainable weights (LoRA + pooling, or all), optimizer, scheduler, step and RNG; atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "step": step,
        "trainable": {n: p.detach().cpu() for n, p in encoder.named_parameters() if p.requires_grad},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "python": random.getstate(),
        },
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    (path.parent / "step.json").write_text(json.dumps({"step": step}) + "\n", encoding="utf-8")


def load_checkpoint(path: Path, encoder: Encoder, optimizer, scheduler) -> int:
    """Restore what `save_checkpoint` wrote into a freshly set-up run; returns the step reached."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    trainable = {n for n, p in encoder.named_parameters() if p.requires_grad}
    if set(state["trainable"]) != trainable:
        raise ValueError(f"checkpoint {path} does not match this model/LoRA setup: remove it or use a new out_dir")
    encoder.load_state_dict(state["trainable"], strict=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    random.setstate(state["rng"]["python"])
    return int(state["step"])


def trim_log(path: Path, step: int) -> None:
    """Keep only the log records up to `step`."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= step]
    if len(kept) != len(lines):
        path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
