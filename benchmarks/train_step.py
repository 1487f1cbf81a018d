"""Contrastive training speed in fp32 and bf16 on this machine, for a recipe's model shape.

    python benchmarks/train_step.py [--recipe trainer/recipes/default-cpu.toml] [--run-dir DIR] [--steps 4] [--rounds 2]

Prints seconds per step and pairs/s of one contrastive step (forward of the queries, the codes and
their hard negatives, InfoNCE, backward, AdamW) in each precision, alternating them `--rounds`
times so that a change in the machine's load hits both, and bf16's speed-up as a ratio. The model is
random-weight (speed depends on the shape, not the weights). Pairs are the first ones of the
recipe's run (<run dir>/data/pairs-train.jsonl) if it has been built, else standard-library
functions with their names as queries; the tokenizer is the run's, else a BPE trained on them.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import torch

from codesearch.chunking import chunk_text
from codesearch.files import SkipFile, read_source, walk
from trainer.contrastive import batch_codes, batch_queries, info_nce
from trainer.jsonl import read_jsonl
from trainer.model import Encoder, autocast, build_base, tokenize_batch, uses_bf16
from trainer.recipe import Recipe
from trainer.tokenizer import load_tokenizer, special_ids, train_bpe


def stdlib_pairs(n: int) -> list[dict]:
    """(name, function, next function) triples from the standard library, as training pairs."""
    codes: list[tuple[str, str]] = []
    for file in walk(Path(sysconfig.get_paths()["stdlib"]) / "email").files:
        try:
            text, _ = read_source(file)
        except SkipFile:
            continue
        codes += [(c.name, c.code) for c in chunk_text(text, file.language, file.path).chunks if c.kind != "class"]
        if len(codes) > n:
            break
    codes = codes[: n + 1]
    return [{"query": name.replace("_", " "), "code": code, "negative": codes[i + 1][1]}
            for i, (name, code) in enumerate(codes[:n])]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=Path("trainer/recipes/default-cpu.toml"))
    parser.add_argument("--run-dir", type=Path, help="the recipe's run folder (default: the recipe's run_dir)")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per precision and round")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    recipe = Recipe.load(args.recipe, {"run_dir": str(args.run_dir)} if args.run_dir else None)
    cfg = recipe.contrastive
    built = recipe.stage_dir("data") / "pairs-train.jsonl"
    pairs = read_jsonl(built)[: cfg.batch_size] if built.is_file() else stdlib_pairs(cfg.batch_size)
    tokenizer_file = recipe.stage_dir("tokenizer") / "tokenizer.json"
    if tokenizer_file.is_file():
        tok = load_tokenizer(tokenizer_file)
    else:
        texts = [p["query"] for p in pairs] + [p["code"] for p in pairs]
        tok = train_bpe(texts * 4, vocab_size=recipe.tokenizer.vocab_size, out_path=Path(tempfile.mkdtemp()) / "tok.json")
    ids = special_ids(tok)
    torch.manual_seed(0)
    base = build_base(dataclasses.replace(recipe.model, vocab_size=tok.get_vocab_size()),
                      pad_token_id=ids["pad"], eos_token_id=ids["eos"])
    encoder = Encoder(base, recipe.encoder).train()
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=1e-6)
    queries = tokenize_batch(tok, batch_queries(pairs, 0, cfg), cfg.query_prefix, cfg.query_max_length, ids["pad"])
    codes = tokenize_batch(tok, batch_codes(pairs, cfg, 0), cfg.code_prefix, cfg.code_max_length, ids["pad"])
    cpu = torch.device("cpu")

    def step(precision: str) -> None:
        with autocast(cpu, precision == "bf16"):
            q, c = encoder(*queries).float(), encoder(*codes).float()
        loss = info_nce(q, c, cfg.temperature, cfg.in_batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    precisions = ["fp32", "bf16"]
    print(f"{len(pairs)} pairs + {len(codes[0]) - len(pairs)} negatives per step, code cut to "
          f"{cfg.code_max_length} tokens; bf16 kernels here: {uses_bf16(cpu, 'auto')}; "
          f"{torch.get_num_threads()} threads", file=sys.stderr)
    seconds: dict[str, list[float]] = {p: [] for p in precisions}
    for _ in range(args.rounds):
        for precision in precisions:
            step(precision)  # warm-up: the first step of a precision builds its kernels
            started = time.perf_counter()
            for _ in range(args.steps):
                step(precision)
            seconds[precision].append((time.perf_counter() - started) / args.steps)
    for precision in precisions:
        per_step = statistics.median(seconds[precision])
        print(f"{precision}: {per_step:.3f} s/step, {len(pairs) / per_step:.1f} pairs/s "
              f"(rounds: {', '.join(f'{s:.3f}' for s in seconds[precision])})")
    print(f"bf16 / fp32 speed: {statistics.median(seconds['fp32']) / statistics.median(seconds['bf16']):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
