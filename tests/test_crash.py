"""Crash safety: `codesearch index` killed with SIGKILL at random points loses nothing.

Each trial starts from a complete index of one state of a repository, changes the repository
(edits, deletions, new files), runs `codesearch index` in a real process and kills it (-9) after a
random delay. Then the index must still answer a query, the next run must complete, and the final
index must equal a clean build of the changed repository: the same chunk rows with the same ids,
the same file records, vectors equal within float noise. Half the trials interrupt an update in
place, half a `--rebuild` (which fills a new generation while the old one keeps serving).

CI runs 3 trials; `pytest --slow tests/test_crash.py -s` runs 20 and prints the kill points.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from codesearch.store import Store, generations

FILES = 90  # generated modules on top of the sample repository: enough work to be killed mid-way


def _module(i: int, variant: int) -> str:
    funcs = []
    for j in range(6):
        funcs.append(
            f"def handler_{i}_{j}(items, limit={j + variant}):\n"
            f'    """Filter items {i}.{j} (variant {variant}) and keep at most limit of them."""\n'
            f"    kept = [x for x in items if x % {j + 2} == {variant % (j + 2)}]\n"
            f"    kept.sort(reverse={bool((i + variant) % 2)})\n"
            f"    return kept[:limit]\n"
        )
    return "\n\n".join(funcs)


def _write_state(repo: Path, state: str) -> None:
    """State "a": FILES modules; state "b": a third edited, a sixth deleted, 20 new ones."""
    gen = repo / "gen"
    gen.mkdir(exist_ok=True)
    for i in range(FILES):
        path = gen / f"mod_{i}.py"
        if state == "a":
            path.write_text(_module(i, 0), encoding="utf-8")
        elif i % 6 == 5:
            path.unlink(missing_ok=True)
        elif i % 3 == 0:
            path.write_text(_module(i, 1), encoding="utf-8")
    if state == "b":
        for i in range(FILES, FILES + 20):
            (gen / f"mod_{i}.py").write_text(_module(i, 2), encoding="utf-8")


def _cli(*args: str, model: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "codesearch", *args, "--model", str(model)],
        capture_output=True, text=True, timeout=timeout, env=_env(),
    )


def _env() -> dict:
    return {**os.environ, "CODESEARCH_THREADS": "1"}


def _snapshot(index: Path) -> tuple[list, dict, list]:
    """(chunk rows without vectors, vectors by row id, file records) of the index at `index`."""
    store = Store.open(index)
    chunks = store.chunks.to_arrow()
    cols = ["id", "chunk_id", "window", "path", "kind", "name", "start_line", "end_line", "content_hash", "code"]
    rows = sorted(zip(*(chunks[c].to_pylist() for c in cols)))
    vectors = dict(zip(chunks["id"].to_pylist(), np.asarray(chunks["vector"].to_pylist(), dtype=np.float32)))
    files = store.files.to_arrow()
    records = sorted(zip(*(files[c].to_pylist() for c in ["path", "size", "sha256", "language", "chunks"])))
    return rows, vectors, records


def _prepare(base: Path, model: Path) -> dict:
    from conftest import SAMPLE_REPO

    a = base / "a"
    shutil.copytree(SAMPLE_REPO, a, ignore=shutil.ignore_patterns(".codesearch"))
    _write_state(a, "a")
    started = time.perf_counter()
    assert _cli("index", str(a), "--yes", model=model).returncode == 0
    first = time.perf_counter() - started
    clean = base / "clean-b"
    shutil.copytree(a, clean, ignore=shutil.ignore_patterns(".codesearch"))
    _write_state(clean, "b")
    timings = {}
    for mode in ("update", "rebuild"):  # how long an uninterrupted run takes: kills land inside it
        probe = base / f"probe-{mode}"
        shutil.copytree(a, probe, symlinks=True)
        _write_state(probe, "b")
        started = time.perf_counter()
        assert _cli("index", str(probe), *(["--rebuild"] if mode == "rebuild" else []), model=model).returncode == 0
        timings[mode] = time.perf_counter() - started
        shutil.rmtree(probe)
    assert _cli("index", str(clean), model=model).returncode == 0
    return {"a": a, "clean": _snapshot(clean / ".codesearch"), "timings": timings, "first": first}


def _trial(world: dict, base: Path, model: Path, number: int, rng: random.Random) -> dict:
    mode = "rebuild" if number % 2 else "update"
    repo = base / f"trial-{number}"
    shutil.copytree(world["a"], repo, symlinks=True)
    _write_state(repo, "b")
    delay = rng.uniform(0.05, 1.0) * world["timings"][mode]
    argv = [sys.executable, "-m", "codesearch", "index", str(repo), "--model", str(model)]
    if mode == "rebuild":
        argv.append("--rebuild")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    time.sleep(delay)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    meta = json.loads((repo / ".codesearch" / "meta.json").read_text())
    outcome = {"mode": mode, "delay_s": round(delay, 2), "killed": killed,
               "complete_at_kill": meta["complete"], "generations": len(generations(repo / ".codesearch"))}

    # The index answers queries right after the kill.
    query = _cli("query", "filter items and keep at most limit", "--root", str(repo), "--json", model=model)
    assert query.returncode == 0, query.stderr
    hits = [json.loads(line) for line in query.stdout.splitlines()]
    assert any(h.get("path", "").startswith("gen/") for h in hits), query.stdout[:500]

    # The next run completes, and the result equals a clean build.
    again = _cli("index", str(repo), "--json", model=model)
    assert again.returncode == 0, again.stderr
    rows, vectors, records = _snapshot(repo / ".codesearch")
    clean_rows, clean_vectors, clean_records = world["clean"]
    assert records == clean_records
    assert rows == clean_rows
    for row_id, vector in clean_vectors.items():
        np.testing.assert_allclose(vectors[row_id], vector, atol=1e-4)
    outcome["resumed_embedded"] = json.loads(again.stdout)["chunks_embedded"]
    shutil.rmtree(repo)
    return outcome


def _run_trials(tmp_path_factory, model: Path, count: int, seed: int) -> list[dict]:
    base = tmp_path_factory.mktemp("crash")
    world = _prepare(base, model)
    rng = random.Random(seed)
    outcomes = [_trial(world, base, model, n, rng) for n in range(count)]
    print(f"\nuninterrupted runs: update {world['timings']['update']:.1f}s, rebuild {world['timings']['rebuild']:.1f}s")
    for n, outcome in enumerate(outcomes):
        print(f"trial {n}: {outcome}")
    killed = sum(o["killed"] for o in outcomes)
    print(f"{count} trials, {killed} killed mid-run, all recovered to a clean build")
    return outcomes


def test_killed_index_runs_recover(tmp_path_factory, tiny_model):
    outcomes = _run_trials(tmp_path_factory, tiny_model, count=3, seed=8)
    assert sum(o["killed"] for o in outcomes) >= 2  # the kills really landed mid-run


@pytest.mark.slow
def test_killed_index_runs_recover_20_trials(tmp_path_factory, tiny_model):
    outcomes = _run_trials(tmp_path_factory, tiny_model, count=20, seed=2026)
    assert sum(o["killed"] for o in outcomes) >= 15
