"""Clone detection: planted clones by type against jscpd and pylint, MAP@R on OJClone, and speed at scale.

    pip install -e ".[bench]"   # pylint; jscpd comes from npm through npx
    python benchmarks/clones.py [--model PATH] [--jscpd CMD] [--ojclone FILE] [--scale 10000,100000]

Prints:
- on tests/fixtures/clones_repo (16 planted pairs: 4 per clone type, in Python, JavaScript, Go and Java;
  the other functions unrelated): recall per clone type and overall pair precision for `codesearch
  clones` at several --min-similarity values, for jscpd (all four languages) and for pylint's
  duplicate-code (Python only). A tool's reported fragment covers a function when it spans at least
  half its lines; a reported pair is right when it is a planted pair. Also the clone score of each
  type-4 pair beside the highest score of two unrelated functions of one language.
- MAP@R on ../shared/bench/ojclone/programs-dev.jsonl with the clones report's score (cosine of unit
  vectors, best window pair) and with a clone query's model side (the same after subtracting
  `codesearch.search.clone_center`), as CodeXGLUE's POJ-104 task computes it (only with --model).
  The clone query's full ranking, fused with full text, is `python -m trainer eval`'s. Then the
  engine end to end: 100 programs per problem written as files, indexed, and `similar --code` with
  150 of them in each --mode: the share of the top 10 that solve the same problem.
- the time of the clone pass (find_clones) at each --scale, on an index of this repository's own code
  replicated by benchmarks/engine.py's scale_up: once as is (every function has many exact copies,
  the worst case for grouping), and the self-join alone on the same vectors with small noise added.
- the time of the two token detectors (hashing, then overlap at the default --min-overlap) on the
  distinct functions of the Python standard library (--overlap-corpus), where replication cannot help.
Without --model the fixture uses the tiny random-weight test model: its types 1-2 figures come from
token hashing and hold, its types 3-4 figures say nothing about a trained model.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine import scale_up  # noqa: E402

from codesearch.chunking import chunk_text, language_for_path  # noqa: E402
from codesearch.clones import CloneOptions, _best_cosine, _load, _windows_of, find_clones, similar_pairs  # noqa: E402
from codesearch.config import Settings  # noqa: E402
from codesearch.indexer import build_index  # noqa: E402
from codesearch.model import Encoder, ModelFolder  # noqa: E402
from codesearch.search import Index, clone_center  # noqa: E402

HERE = Path(__file__).resolve().parent.parent
FIXTURE = HERE / "tests" / "fixtures" / "clones_repo"
OJCLONE = HERE.parent / "shared" / "bench" / "ojclone" / "programs-dev.jsonl"
THRESHOLDS = (0.80, 0.85, 0.90, 0.95, 0.98, 0.99, 1.0)  # 1.0: hashing and token overlap alone


def functions_of(repo: Path) -> dict[str, list[tuple[int, int, str]]]:
    """Per file: (start, end, "path:name") of each function and method (classes left out)."""
    out = {}
    for file in sorted(repo.rglob("*")):
        language = language_for_path(file.name) if file.is_file() else None
        if language:
            rel = file.relative_to(repo).as_posix()
            chunks = chunk_text(file.read_text(), language, rel).chunks
            out[rel] = [(c.start_line, c.end_line, f"{rel}:{c.name}") for c in chunks if c.kind != "class"]
    return out


def covered(functions, path: str, start: int, end: int) -> list[str]:
    return [key for a, b, key in functions.get(path, [])
            if min(b, end) - max(a, start) + 1 >= (b - a + 1) / 2]


def score(name: str, pairs: set[frozenset[str]], truth: list[dict], languages: set[str] | None = None) -> None:
    """Print recall per clone type and pair precision of `pairs` against `truth`."""
    if languages:
        truth = [p for p in truth if p["members"][0].split("/")[0] in languages]
    planted = {frozenset(p["members"]): p["type"] for p in truth}
    recall = []
    for kind in (1, 2, 3, 4):
        wanted = [m for m, t in planted.items() if t == kind]
        recall.append(f"type-{kind} {sum(m in pairs for m in wanted)}/{len(wanted)}")
    right = sum(p in planted for p in pairs)
    precision = f"{right}/{len(pairs)} = {right / len(pairs):.2f}" if pairs else "n/a (nothing reported)"
    print(f"  {name:<34} recall {', '.join(recall)}; precision {precision}")


def ours(index: Index, threshold: float) -> set[frozenset[str]]:
    report = find_clones(index, CloneOptions(min_similarity=threshold))
    pairs = set()
    for group in report.groups:
        keys = [f"{m.path}:{m.name}" for m in group.members]
        pairs |= {frozenset((a, b)) for i, a in enumerate(keys) for b in keys[i + 1:]}
    return pairs


def jscpd_pairs(command: str, repo: Path, functions) -> set[frozenset[str]] | None:
    out = Path(tempfile.mkdtemp(prefix="jscpd-"))
    try:
        subprocess.run([*command.split(), "--min-lines", "5", "--reporters", "json", "--output", str(out),
                        "--silent", "."], cwd=repo, capture_output=True, text=True, timeout=300, check=False)
        report = json.loads((out / "jscpd-report.json").read_text())
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        print(f"  jscpd: not run ({exc})")
        return None
    pairs = set()
    for dup in report["duplicates"]:
        sides = []
        for side in (dup["firstFile"], dup["secondFile"]):
            path = (repo / side["name"]).resolve().relative_to(repo.resolve()).as_posix()
            sides.append(covered(functions, path, side["start"], side["end"]))
        pairs |= {frozenset((a, b)) for a in sides[0] for b in sides[1] if a != b}
    return pairs


def pylint_pairs(repo: Path, functions) -> set[frozenset[str]] | None:
    files = sorted(str(p.relative_to(repo)) for p in (repo / "py").glob("*.py"))
    try:
        done = subprocess.run([sys.executable, "-m", "pylint", "--disable=all", "--enable=duplicate-code", *files],
                              cwd=repo, capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"  pylint: not run ({exc})")
        return None
    if "No module named pylint" in done.stderr:
        print("  pylint: not installed (pip install pylint)")
        return None
    pairs = set()
    for block in done.stdout.split("R0801")[1:]:
        sides = [covered(functions, f"py/{module}.py", int(a) + 1, int(b))  # 0-based, end exclusive
                 for module, a, b in re.findall(r"==([\w.]+):\[(\d+):(\d+)\]", block)]
        pairs |= {frozenset((x, y)) for i, s in enumerate(sides) for t in sides[i + 1:] for x in s for y in t if x != y}
    return pairs


def type4_scores(index: Index, truth: list[dict]) -> str:
    """The clone score (best window pair cosine) of each planted type-4 pair, and the highest one of
    any two unrelated functions of one language (classes left out: they hold the planted methods):
    a threshold between them would find the pair."""
    functions, owner, vectors = _load(index.store, CloneOptions())
    key = [f"{f['path']}:{f['name']}" for f in functions]
    related = {frozenset(p["members"]) for p in truth}
    rows = _windows_of(owner)
    best = {}
    for i, j in ((i, j) for i in range(len(key)) for j in range(i + 1, len(key))):
        same = functions[i]["language"] == functions[j]["language"]
        if same and "class" not in (functions[i]["kind"], functions[j]["kind"]):
            best[frozenset((key[i], key[j]))] = _best_cosine(vectors[rows(i)], vectors[rows(j)])
    type4 = [(p["members"][0].split("/")[0], best[frozenset(p["members"])]) for p in truth if p["type"] == 4]
    unrelated = max(score for pair, score in best.items() if pair not in related)
    return (f"  type-4 clone scores: {', '.join(f'{lang} {s:.2f}' for lang, s in type4)}; "
            f"highest unrelated same-language pair {unrelated:.2f}")


def bench_fixture(model: Path, work: Path, jscpd: str, thresholds=THRESHOLDS) -> None:
    repo = work / "clones_repo"
    shutil.copytree(FIXTURE, repo)
    build_index(repo, Settings(model=str(model), threads=2))
    index = Index.open(repo, Settings(model=str(model)))
    truth = json.loads((FIXTURE / "clones.truth.json").read_text())["pairs"]
    functions = functions_of(repo)
    print(f"planted clones ({len(truth)} pairs, {sum(len(v) for v in functions.values())} functions):")
    for threshold in thresholds:
        score(f"codesearch --min-similarity {threshold}", ours(index, threshold), truth)
    print(type4_scores(index, truth))
    found = jscpd_pairs(jscpd, repo, functions)
    if found is not None:
        score("jscpd --min-lines 5", found, truth)
    found = pylint_pairs(repo, functions)
    if found is not None:
        score("pylint duplicate-code (Python only)", found, truth, {"py"})


def bench_ojclone(model: Path, path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    encoder = Encoder(ModelFolder.read(model))
    started = time.perf_counter()
    windows = encoder.embed_texts([r["code"] for r in rows], kind="code", languages=["c"] * len(rows))  # OJClone is C
    seconds = time.perf_counter() - started
    flat = np.concatenate(windows)
    owner = np.concatenate([np.full(len(w), i) for i, w in enumerate(windows)])
    labels = np.array([r["problem"] for r in rows])
    centered = flat - clone_center(flat.mean(axis=0), len(flat))
    centered /= np.linalg.norm(centered, axis=1, keepdims=True)
    for name, vectors in (("cosine (clones report)", flat), ("centered cosine (clone query's model side)", centered)):
        print(f"OJClone dev MAP@R {_map_at_r(vectors, owner, labels):.3f} with the {name}, over {len(rows)} programs "
              f"(embedded in {seconds:.0f}s)")


def bench_ojclone_engine(model: Path, path: Path, work: Path, per_problem: int = 100, queries: int = 150) -> None:
    """The engine end to end: `per_problem` programs of each problem as files of one repository,
    indexed (split into functions), then `similar --code` with whole programs in each mode; the share
    of the top 10 (other files) that solve the same problem."""
    rng = random.Random(0)
    by_problem: dict[int, list[str]] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        by_problem.setdefault(row["problem"], []).append(row["code"])
    repo = work / "ojclone"
    repo.mkdir()
    for problem, codes in sorted(by_problem.items()):
        for i, code in enumerate(rng.sample(codes, min(per_problem, len(codes)))):
            (repo / f"p{problem}_{i}.c").write_text(code)
    settings = Settings(model=str(model))
    report = build_index(repo, settings)
    index = Index.open(repo, settings)
    files = sorted(repo.glob("*.c"))
    rng.shuffle(files)
    for mode in ("semantic", "lexical", "hybrid"):
        shares = []
        for file in files[:queries]:
            hits = [h for h in index.similar(file.read_text(), 11, mode=mode) if h.path != file.name][:10]
            problem = file.name.split("_")[0]
            shares.append(sum(h.path.split("_")[0] == problem for h in hits) / max(len(hits), 1))
        print(f"OJClone through the engine ({report.files} programs, {report.chunks} functions), similar --code "
              f"--mode {mode}: same-problem share of the top 10 {sum(shares) / len(shares):.3f} over {len(shares)} queries")


def _map_at_r(flat: np.ndarray, owner: np.ndarray, labels: np.ndarray) -> float:
    scores = np.full((len(labels), len(labels)), -np.inf, dtype=np.float32)
    np.maximum.at(scores, (owner[:, None], owner[None, :]), flat @ flat.T)  # best window pair per program pair
    np.fill_diagonal(scores, -np.inf)
    aps = []
    for i in range(len(labels)):
        r = int((labels == labels[i]).sum()) - 1
        top = np.argsort(-scores[i], kind="stable")[:r]
        hits = labels[top] == labels[i]
        aps.append(float((np.cumsum(hits) / np.arange(1, r + 1))[hits].sum() / r))
    return float(np.mean(aps))


def bench_scale(model: Path, work: Path, targets: list[int], threshold: float) -> None:
    repo = work / "self"
    for folder in ("codesearch", "trainer", "tests", "lsp", "benchmarks"):
        if (HERE / folder).is_dir():
            shutil.copytree(HERE / folder, repo / folder, ignore=shutil.ignore_patterns("fixtures", "node_modules"))
    settings = Settings(model=str(model), threads=2)
    build_index(repo, settings)
    for target in targets:
        index = scale_up(repo, settings, target)
        functions, owner, vectors = _load(index.store, CloneOptions())
        started = time.perf_counter()
        report = find_clones(index, CloneOptions(min_similarity=threshold))
        whole = time.perf_counter() - started
        rng = np.random.default_rng(0)
        noisy = vectors + rng.normal(scale=0.02, size=vectors.shape).astype(np.float32)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        started = time.perf_counter()
        pairs = similar_pairs(noisy, owner, threshold, [f["language"] for f in functions])
        join = time.perf_counter() - started
        print(f"scale {len(functions)} functions ({len(vectors)} vectors x {vectors.shape[1]}): clone pass "
              f"{whole:.1f}s ({len(report.groups)} groups; replicated rows), self-join of noisy copies {join:.1f}s "
              f"({len(pairs)} pairs) at --min-similarity {threshold}")


def bench_overlap(root: Path) -> None:
    """Token hashing and token overlap over every function of `root`'s Python files (5+ lines)."""
    from codesearch.clones import DEFAULT_MIN_OVERLAP, DEFAULT_MIN_LINES, edited_pairs, hashed_pairs

    functions = []
    for file in sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts):
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for c in chunk_text(text, "python", file.relative_to(root).as_posix()).chunks:
            if c.kind != "class" and c.end_line - c.start_line + 1 >= DEFAULT_MIN_LINES:
                functions.append({"path": c.path, "name": c.name, "language": "python", "code": c.code,
                                  "content_hash": c.content_hash})
    started = time.perf_counter()
    hashed = hashed_pairs(functions)
    lexed = time.perf_counter() - started
    started = time.perf_counter()
    edited = edited_pairs(functions, DEFAULT_MIN_OVERLAP)
    overlap = time.perf_counter() - started
    print(f"token detectors on {len(functions)} distinct functions ({root.name}): hashing {lexed:.1f}s "
          f"({len(hashed)} pairs), overlap {overlap:.1f}s ({len(edited)} pairs at --min-overlap {DEFAULT_MIN_OVERLAP})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder (default: the tiny random test model)")
    parser.add_argument("--jscpd", default="npx --yes jscpd@4", help="how to run jscpd (default: npx --yes jscpd@4; jscpd 5 needs a native platform package)")
    parser.add_argument("--ojclone", default=str(OJCLONE))
    parser.add_argument("--scale", default="10000,100000", help="function counts for the timing ('' to skip)")
    parser.add_argument("--scale-min-similarity", type=float, default=0.99,
                        help="threshold of the timing runs (default 0.99: the random model puts unrelated "
                             "functions 0.9-0.97 apart, which would join everything into one group)")
    parser.add_argument("--thresholds", default=",".join(map(str, THRESHOLDS)),
                        help="--min-similarity values tried on the fixture (comma-separated)")
    parser.add_argument("--overlap-corpus", default=sysconfig.get_paths()["stdlib"],
                        help="a folder of Python code for the token detectors' timing (default: the standard library)")
    parser.add_argument("--skip", action="append", default=[], choices=["fixture", "ojclone", "scale", "overlap"])
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="codesearch-clones-bench-"))
    try:
        if args.model:
            model = Path(args.model)
        else:
            from trainer.tiny import make_tiny_model

            model = make_tiny_model(work / "model" / "tiny", seed=0)
        print(f"model: {ModelFolder.read(model).model_id}{'' if args.model else ' (random weights)'}")
        if "fixture" not in args.skip:
            bench_fixture(model, work, args.jscpd, [float(t) for t in args.thresholds.split(",")])
        if "ojclone" not in args.skip:
            if args.model and Path(args.ojclone).is_file():
                bench_ojclone(model, Path(args.ojclone))
                bench_ojclone_engine(model, Path(args.ojclone), work)
            else:
                print("OJClone MAP@R: skipped (needs --model and the data file)")
        if "scale" not in args.skip and args.scale:
            bench_scale(model, work, [int(n) for n in args.scale.split(",")], args.scale_min_similarity)
        if "overlap" not in args.skip:
            bench_overlap(Path(args.overlap_corpus))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
