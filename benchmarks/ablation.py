"""Ablations of the contrastive stage, after CL4D (arXiv 2406.12326) at small scale on our own data.

From one pretrained base, trains one encoder per variant for the same number of steps and ranks the
held-out validation pairs (queries against every validation code) with each:

    full             in-batch negatives + one BM25 hard negative per pair, PMA pooling (the recipe)
    no-in-batch      each query sees only its own positive and hard negative (CL4D: retrieval collapses)
    no-hard-neg      in-batch negatives only (CL4D: hard negatives help)
    mean-pooling     the full setup with mean pooling instead of PMA (C2LLM's PMA vs CL4D's mean)

    python benchmarks/ablation.py --steps 5        # just prove it runs (tiny recipe on this repository)
    python benchmarks/ablation.py --steps 300 --set run_dir=runs/ablation \
        --set 'data.sources=["{stdlib}/[a-h]*"]' --set contrastive.batch_size=16 --set eval.max_valid=500
                                                   # the tiny model on ~1.4k standard-library pairs: minutes
    python benchmarks/ablation.py --recipe trainer/recipes/default-cpu.toml --steps 300
                                                   # the real model: runs that recipe's pretraining first (hours)

The recipe's data, tokenizer and pretrain stages run first if their outputs are missing. Each
variant trains under <run_dir>/ablation/<variant>/ (deleted first: variants always start fresh).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time
from pathlib import Path

VARIANTS = {
    "full": {},
    "no-in-batch": {"in_batch": False},
    "no-hard-neg": {"hard_negatives": False},
    "mean-pooling": {"pooling": "mean"},
}


def run_variant(recipe, name: str, steps: int, pairs: list[dict], valid: list[dict], tok) -> dict:
    """Train one variant from the recipe's base and return its validation metrics and final loss."""
    import torch

    from trainer.contrastive import train_contrastive
    from trainer.eval import evaluate, torch_embedder
    from trainer.model import Encoder, load_base

    changes = VARIANTS[name]
    encoder_cfg = dataclasses.replace(recipe.encoder, **{k: v for k, v in changes.items() if k == "pooling"})
    train_cfg = dataclasses.replace(
        recipe.contrastive,
        max_steps=steps,
        warmup_steps=min(recipe.contrastive.warmup_steps, max(1, steps // 10)),
        checkpoint_every=steps,
        log_every=max(1, steps // 5),
        **{k: v for k, v in changes.items() if k != "pooling"},
    )
    out = recipe.run_dir / "ablation" / name
    shutil.rmtree(out, ignore_errors=True)
    torch.manual_seed(train_cfg.seed)  # the same pooling initialisation for every variant
    encoder = Encoder(load_base(recipe.base_path or recipe.stage_dir("pretrain") / "final"), encoder_cfg)
    started = time.perf_counter()
    summary = train_contrastive(encoder, tok, pairs, train_cfg, out, progress=False)
    embed = torch_embedder(encoder, tok, query_prefix=train_cfg.query_prefix, code_prefix=train_cfg.code_prefix,
                           max_length=train_cfg.code_max_length, batch_size=recipe.eval.batch_size)
    results = evaluate(embed, ["valid"], None, valid_pairs=valid, max_valid=recipe.eval.max_valid)["valid"]
    return {"loss": summary["last_loss"], "seconds": time.perf_counter() - started, **results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", type=Path, default=Path("trainer/recipes/tiny.toml"))
    parser.add_argument("--steps", type=int, default=100, help="contrastive steps per variant")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {', '.join(VARIANTS)}")
    parser.add_argument("--bench", type=Path, help="bench folder for decontamination (default: the recipe's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    import os
    import warnings

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore")
    from rich.console import Console
    from rich.table import Table

    from codesearch.errors import CodesearchError
    from trainer import stages
    from trainer.__main__ import parse_overrides
    from trainer.jsonl import read_jsonl
    from trainer.recipe import Recipe
    from trainer.tokenizer import load_tokenizer

    err = Console(stderr=True)
    log = lambda message: err.print(message, markup=False, highlight=False, soft_wrap=True)  # noqa: E731
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    try:
        if unknown:
            raise CodesearchError(f"unknown variants {unknown}; valid: {', '.join(VARIANTS)}")
        recipe = Recipe.load(args.recipe, parse_overrides(args.overrides))
        stages.run_data(recipe, args.bench or recipe.bench_dir, log)
        tok = load_tokenizer(stages.run_tokenizer(recipe, log))
        stages.run_pretrain(recipe, log, progress=sys.stderr.isatty())
        pairs = read_jsonl(recipe.stage_dir("data") / "pairs-train.jsonl")
        valid = read_jsonl(recipe.stage_dir("data") / "pairs-valid.jsonl")
        if not valid:
            raise CodesearchError("the recipe's data has no validation pairs: set [data] valid_fraction > 0")
        rows = {}
        for name in names:
            log(f"ablation: {name}, {args.steps} steps on {len(pairs)} pairs")
            rows[name] = run_variant(recipe, name, args.steps, pairs, valid, tok)
    except (CodesearchError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    first = next(iter(rows.values()))
    table = Table(title=f"contrastive ablation: {recipe.name}, {args.steps} steps, "
                        f"{first['queries']} validation queries vs {first['docs']} codes")
    for column in ("variant", "final loss", "MRR", "R@1", "R@10", "seconds"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for name, r in rows.items():
        m = r["model"]
        table.add_row(name, f"{r['loss']:.3f}", f"{m['mrr']:.3f}", f"{m['r@1']:.3f}", f"{m['r@10']:.3f}", f"{r['seconds']:.0f}")
    b = first["bm25"]
    table.add_row("BM25 (reference)", "-", f"{b['mrr']:.3f}", f"{b['r@1']:.3f}", f"{b['r@10']:.3f}", "-")
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
