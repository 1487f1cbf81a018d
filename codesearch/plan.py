"""What `codesearch index` would do, worked out before any indexing: files, functions, and how long.

The walk is the indexer's own, and every file is read to leave out those holding a secret, as the
indexer would when it reads them. Functions are counted by chunking a seeded sample of the files with
the real chunker and scaling each language's functions-per-byte to its total bytes (exact when
every file is sampled). The time comes from embedding some of the sampled functions with the real
model and measuring the speed; with no model the time is left unknown, and the plan says why.
Nothing is written and the store is never opened.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from codesearch.chunking import DEFINITION_KINDS, chunk_text
from codesearch.config import Settings
from codesearch.errors import CodesearchError
from codesearch.files import SkipFile, SourceFile, read_source, screen_secrets, walk
from codesearch.indexer import check_languages, walk_options
from codesearch.model import Encoder, resolve_model
from codesearch.objectstore import index_exists

SAMPLE_SEED = 0  # the sample is the same on every run of the same tree
SPEED_SAMPLE = 48  # functions embedded to measure the speed
WARM_UP = 3  # functions embedded first, untimed: the first run of an ONNX session pays for its set-up
LARGEST_DIRS = 10
DIR_DEPTH = 2  # directories are ranked at the first two levels of the tree ("src/", "src/lib/")


@dataclass(frozen=True)
class LanguagePlan:
    files: int
    bytes: int
    functions: int  # functions, methods and classes; exact when every file of the language was sampled


@dataclass(frozen=True)
class DirectoryPlan:
    path: str  # "src/" or "src/lib/", with the files below it at any depth
    files: int
    bytes: int


@dataclass(frozen=True)
class Estimate:
    functions: int
    functions_per_s: float | None  # measured embedding speed; None when it could not be measured
    seconds: float | None  # reading, chunking and embedding everything; None when unknown
    provider: str  # where the speed was measured: "CPU", "CUDA", or "" when it was not
    note: str  # how the estimate was made, or why the time is unknown


@dataclass(frozen=True)
class _Sample:
    """What chunking the sampled files found, kept so that the speed can be measured later."""

    files: int
    bytes: int
    seconds: float  # reading and chunking them
    codes: tuple[tuple[str, bool, str], ...]  # (code, is a class, language) of the functions picked to embed
    chunks_per_function: float = 1.0  # all chunks embedded (module-level code, file summaries too) per function


@dataclass(frozen=True)
class IndexPlan:
    root: str
    index_exists: bool
    files: tuple[SourceFile, ...]
    skipped: Counter
    skipped_paths: tuple[tuple[str, str], ...]
    languages: dict[str, LanguagePlan]  # by files, most first
    largest_dirs: tuple[DirectoryPlan, ...]
    estimate: Estimate
    sample: _Sample = field(repr=False, compare=False)
    secret_rules: dict[str, str] = field(default_factory=dict)  # path -> the rule that found a secret in it

    @property
    def sampled_files(self) -> int:
        return self.sample.files

    @property
    def bytes(self) -> int:
        return sum(lang.bytes for lang in self.languages.values())

    def to_json(self) -> dict:
        """The plan as `codesearch index --dry-run --json` prints it (a stable format)."""
        e = self.estimate
        return {
            "root": self.root,
            "index_exists": self.index_exists,
            "files": [{"path": f.path, "language": f.language, "bytes": f.size} for f in self.files],
            "skipped": [skipped_row(p, r, self.secret_rules) for p, r in self.skipped_paths],
            "skipped_counts": dict(self.skipped.most_common()),
            "languages": {name: dataclasses.asdict(lang) for name, lang in self.languages.items()},
            "largest_dirs": [dataclasses.asdict(d) for d in self.largest_dirs],
            "estimate": {
                "functions": e.functions,
                "functions_per_s": None if e.functions_per_s is None else round(e.functions_per_s, 1),
                "seconds": None if e.seconds is None else round(e.seconds, 3),
                "note": e.note,
            },
        }


def skipped_row(path: str, reason: str, secret_rules: dict[str, str]) -> dict:
    """One skipped path as `--json` prints it; a secret carries the name of the rule that found it."""
    rule = secret_rules.get(path)
    return {"path": path, "reason": reason, "rule": rule} if rule else {"path": path, "reason": reason}


def plan_index(
    root: Path, settings: Settings, *, encoder: Encoder | None = None, sample_files: int = 200, measure: bool = True
) -> IndexPlan:
    """What indexing `root` with `settings` would take; `measure=False` leaves out the embedding speed
    (and the model), which `measure_speed` can add later."""
    root = root.resolve()
    if not root.is_dir():
        raise CodesearchError(f"not a directory: {root}")
    check_languages(settings)
    options = walk_options(settings)
    walked = walk(root, **options)
    screen_secrets(walked, options["secrets"], settings.max_file_bytes)
    by_language: dict[str, list[SourceFile]] = defaultdict(list)
    for file in walked.files:
        by_language[file.language].append(file)
    picked = _pick_sample(by_language, sample_files)
    functions, sample = _chunk_sample(picked, by_language, settings)
    languages = {
        name: LanguagePlan(len(files), sum(f.size for f in files), functions[name])
        for name, files in sorted(by_language.items(), key=lambda item: (-len(item[1]), item[0]))
    }
    total = sum(lang.functions for lang in languages.values())
    plan = IndexPlan(
        root=str(root),
        index_exists=index_exists(settings.index_location(root)),
        files=tuple(walked.files),
        skipped=Counter(walked.skipped),
        skipped_paths=tuple(walked.skipped_paths),
        languages=languages,
        largest_dirs=_largest_dirs(walked.files),
        estimate=Estimate(total, None, None, "", "speed not measured"),
        sample=sample,
        secret_rules=dict(walked.secret_rules),
    )
    return measure_speed(plan, settings, encoder) if measure else plan


def load_encoder(settings: Settings) -> Encoder:
    """The model the indexer would embed with; raises CodesearchError when there is none."""
    return Encoder(
        resolve_model(settings.model), device=settings.device, threads=settings.threads,
        batch_tokens=settings.batch_tokens,
    )


def measure_speed(plan: IndexPlan, settings: Settings, encoder: Encoder | None = None) -> IndexPlan:
    """The plan with its time estimated from embedding sampled functions (loading the model when no
    encoder is given); when no model can be loaded the time stays unknown and the note says why."""
    functions, sample = plan.estimate.functions, plan.sample
    chunk_seconds = sample.seconds * plan.bytes / sample.bytes if sample.bytes else 0.0
    if not sample.codes:  # no function found: nothing to embed, no model needed
        return dataclasses.replace(plan, estimate=Estimate(functions, None, chunk_seconds, "", "nothing to embed"))
    try:
        encoder = encoder or load_encoder(settings)
    except CodesearchError as exc:
        return dataclasses.replace(plan, estimate=Estimate(functions, None, None, "", f"time unknown: {exc}"))
    rate, timed = _embedding_speed(encoder, sample.codes, settings)
    provider = encoder.providers[0].removesuffix("ExecutionProvider")
    note = f"{_counted(plan)}; speed measured on {provider} over {timed} functions"
    embedded = functions * sample.chunks_per_function  # module-level code and file summaries are embedded too
    estimate = Estimate(functions, rate, embedded / rate + chunk_seconds, provider, note)
    return dataclasses.replace(plan, estimate=estimate)


def _counted(plan: IndexPlan) -> str:
    files = len(plan.files)
    if plan.sample.files == files:
        return f"functions counted in all {files} files"
    return f"functions counted in {plan.sample.files} of {files} files and scaled by size per language"


def _pick_sample(by_language: dict[str, list[SourceFile]], limit: int) -> list[SourceFile]:
    """Up to `limit` files, taken in turn from each language (each shuffled with a fixed seed), so
    that a language with few files is still sampled."""
    rng = random.Random(SAMPLE_SEED)
    queues = []
    for name in sorted(by_language):
        files = sorted(by_language[name], key=lambda f: f.path)
        rng.shuffle(files)
        queues.append(files)
    picked: list[SourceFile] = []
    while len(picked) < limit and any(queues):
        for queue in queues:
            if queue and len(picked) < limit:
                picked.append(queue.pop())
    return picked


def _chunk_sample(
    picked: list[SourceFile], by_language: dict[str, list[SourceFile]], settings: Settings
) -> tuple[Counter, _Sample]:
    """Chunk the picked files; estimate each language's functions (functions, methods, classes) from
    its functions per byte, and how many chunks are embedded per function."""
    found: Counter = Counter()
    sampled_files: Counter = Counter()
    sampled_bytes: Counter = Counter()
    codes: list[tuple[str, bool, str]] = []
    all_chunks = 0
    started = time.perf_counter()
    for file in picked:
        sampled_files[file.language] += 1
        sampled_bytes[file.language] += file.size
        try:
            text, _ = read_source(file, settings.max_file_bytes, secrets=None)  # screened in plan_index
            chunks = chunk_text(text, file.language, file.path, cover=True).chunks
        except SkipFile:  # unreadable, binary, ... or a parse that ran out of time
            continue  # the indexer would skip it too: no functions
        found[file.language] += sum(1 for c in chunks if c.kind in DEFINITION_KINDS)
        all_chunks += len(chunks)
        codes.extend((c.code, c.kind == "class", c.language) for c in chunks)
    seconds = time.perf_counter() - started
    # A language left out of a small sample is scaled at the rate of all the sampled files.
    overall = sum(found.values()) / max(sum(sampled_bytes.values()), 1)
    functions: Counter = Counter()
    for name, files in by_language.items():
        if sampled_files[name] == len(files):
            functions[name] = found[name]
        else:
            rate = found[name] / sampled_bytes[name] if sampled_bytes[name] else overall
            functions[name] = round(rate * sum(f.size for f in files))
    picked_codes = random.Random(SAMPLE_SEED).sample(codes, min(len(codes), SPEED_SAMPLE + WARM_UP))
    per_function = all_chunks / sum(found.values()) if sum(found.values()) else 1.0
    sample = _Sample(len(picked), sum(sampled_bytes.values()), seconds, tuple(picked_codes), per_function)
    return functions, sample


def _embedding_speed(
    encoder: Encoder, codes: tuple[tuple[str, bool, str], ...], settings: Settings
) -> tuple[float, int]:
    """Functions embedded per second, and how many were timed; embedded as the indexer embeds them
    (a class by its first window only)."""

    def embed(batch: tuple[tuple[str, bool, str], ...]) -> None:
        for is_class in (False, True):
            picked = [(code, language) for code, cls, language in batch if cls == is_class]
            if picked:
                encoder.embed_texts(
                    [code for code, _ in picked], kind="code", overlap=settings.window_overlap,
                    max_windows=1 if is_class else None, languages=[language for _, language in picked],
                )

    embed(codes[:WARM_UP])
    timed = codes[WARM_UP:] or codes
    started = time.perf_counter()
    embed(timed)
    return len(timed) / max(time.perf_counter() - started, 1e-6), len(timed)


def _largest_dirs(files: list[SourceFile]) -> tuple[DirectoryPlan, ...]:
    """The directories at the first two levels holding the most bytes of files to index."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for file in files:
        parts = file.path.split("/")[:-1][:DIR_DEPTH]
        for depth in range(1, len(parts) + 1):
            total = totals["/".join(parts[:depth]) + "/"]
            total[0] += 1
            total[1] += file.size
    ranked = sorted(totals.items(), key=lambda item: (-item[1][1], item[0]))[:LARGEST_DIRS]
    return tuple(DirectoryPlan(path, n, size) for path, (n, size) in ranked)
