"""The weighted average of two encoders of one architecture (a weight-space ensemble, as WiSE-FT).

Fine-tuning a model further can trade what it knew for what it learns; the average of the weights
before and after often keeps both. Either side may be an exported model folder (read back by
trainer.reload) or a trained Encoder folder (a run's contrastive/final). The result is an Encoder
folder, which `--set tokenizer.from_model=OUT --set contrastive.max_steps=0` exports unchanged.

    python -m trainer.average models/codesearch-cpu-small runs/x/contrastive/final OUT --recipe R --weight 0.5
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from codesearch.errors import CodesearchError
from trainer.model import Encoder


def average(a: Encoder, b: Encoder, weight: float) -> Encoder:
    """`a` with each parameter set to (1 - weight) * a + weight * b; the two must have the same names
    and shapes."""
    if not 0.0 <= weight <= 1.0:
        raise CodesearchError(f"the weight of the second encoder must be in [0, 1], not {weight}")
    theirs = dict(b.named_parameters())
    ours = dict(a.named_parameters())
    if set(theirs) != set(ours) or any(theirs[n].shape != p.shape for n, p in ours.items()):
        raise CodesearchError("the two encoders have other architectures: they cannot be averaged")
    with torch.no_grad():
        for name, param in ours.items():
            param.mul_(1.0 - weight).add_(theirs[name].to(param.dtype), alpha=weight)
    return a


def main(argv: list[str] | None = None) -> int:
    from trainer.recipe import Recipe
    from trainer.reload import load_start, start_tokenizer
    from trainer.tokenizer import load_tokenizer

    parser = argparse.ArgumentParser(prog="python -m trainer.average", description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path, help="a model folder or trained Encoder folder")
    parser.add_argument("second", type=Path, help="another of the same architecture (and tokenizer)")
    parser.add_argument("out", type=Path, help="the Encoder folder to write")
    parser.add_argument("--recipe", type=Path, required=True, help="the recipe whose architecture they have")
    parser.add_argument("--weight", type=float, default=0.5, help="the second one's share (default 0.5)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        recipe = Recipe.load(args.recipe)
        tok = load_tokenizer(start_tokenizer(args.first))
        if tok.get_vocab() != load_tokenizer(start_tokenizer(args.second)).get_vocab():
            raise CodesearchError(f"{args.first} and {args.second} have other tokenizers: they cannot be averaged")
        first, second = (load_start(f, recipe.model, recipe.encoder)[0] for f in (args.first, args.second))
        mixed = average(first, second, args.weight)
        mixed.eval().save(args.out, tokenizer=tok)
    except CodesearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{1 - args.weight:g} x {args.first} + {args.weight:g} x {args.second} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
