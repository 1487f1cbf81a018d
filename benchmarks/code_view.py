"""What a model folder's code view costs: the same functions embedded through two folders, taking turns.

    python benchmarks/code_view.py BEFORE AFTER [--repo PATH] [--sample 1000] [--rounds 2]

BEFORE and AFTER are model folders (say, one without "code_view" and one with it). Prints the time
the view itself takes (`codesearch.model.code_as_seen`) and functions/s embedded through each folder
in every round, for a fixed sample of `--repo`'s functions and methods (default: the standard library).
"""

from __future__ import annotations

import argparse
import sys
import sysconfig
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.engine import sample_functions  # noqa: E402
from codesearch.model import Encoder, ModelFolder, code_as_seen  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--repo", default=sysconfig.get_paths()["stdlib"])
    parser.add_argument("--sample", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    codes, languages = sample_functions(Path(args.repo), args.sample)
    encoders = {name: Encoder(ModelFolder.read(name), device="cpu") for name in (args.before, args.after)}
    for encoder in encoders.values():
        encoder.embed_texts(codes[:50], kind="code", languages=languages[:50])  # warm up
        view = encoder.folder.code_view
        started = time.perf_counter()
        code_as_seen(codes, view, languages)
        print(f"{encoder.folder.model_id}: view {view or 'none'!r} alone "
              f"{(time.perf_counter() - started) * 1000 / len(codes):.3f} ms a function")
    for round_ in range(1, args.rounds + 1):
        for encoder in encoders.values():
            started = time.perf_counter()
            encoder.embed_texts(codes, kind="code", languages=languages)
            rate = len(codes) / (time.perf_counter() - started)
            print(f"round {round_}: {encoder.folder.model_id} {rate:.0f} functions/s ({len(codes)} functions)")


if __name__ == "__main__":
    main()
