"""A CLI reader for tests/test_concurrency.py: `codesearch query --json` in a loop, until a stop file appears.

    python tests/query_loop.py STOP_FILE ROOT MODEL SEED

Each query is one call of the CLI's `main` (so it parses its arguments, opens the index afresh, prints
JSON Lines and returns an exit code, as `codesearch query` does) in this one process: a new process
per query would spend most of the test importing lancedb. One JSON record per query goes to stdout:
{"argv", "code", "out", "err", "started", "ended"} (times from time.time()).
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import sys
import time
from pathlib import Path

from codesearch.cli import main

# (mode, query text, extra flags): the three modes, with and without LanceDB's filtered search.
QUERIES = (
    ("lexical", "probe items", ()),
    ("lexical", "keep the items above", ("--path", "live/")),
    ("semantic", "filter a list of numbers", ()),
    ("semantic", "count the items", ("--path", "live/")),
    ("hybrid", "retry with backoff", ()),
    ("hybrid", "probe", ("--lang", "python")),
)


def query(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def loop(stop: Path, root: str, model: str, seed: int) -> None:
    rng = random.Random(seed)
    while not stop.exists():
        mode, text, extra = rng.choice(QUERIES)
        argv = ["query", text, "--mode", mode, "--json", "-k", "20", "--root", root, "--model", model, *extra]
        started = time.time()
        code, out, err = query(argv)
        record = {"argv": argv, "code": code, "out": out, "err": err, "started": started, "ended": time.time()}
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    loop(Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]))
