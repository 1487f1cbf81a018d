"""The `codesearch` command: argument parsing and printing only; each command calls one engine function.

Results go to stdout (`path:line` on every hit line), progress and diagnostics to stderr.
Exit codes: 0 results, 1 no results, 2 bad input or error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import select
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from rich import box
from rich.console import Console
from rich.filesize import decimal
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from codesearch import __version__
from codesearch.config import Settings, load_settings
from codesearch.errors import CodesearchError
from codesearch.reports import terminal_safe
from codesearch.secrets import SECRET

if TYPE_CHECKING:
    from codesearch.plan import IndexPlan

EXIT_FOUND, EXIT_NONE, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    """argparse with a usage error on one line (what was wrong, and where help is), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="codesearch", description="Semantic code search over a repository.")
    parser.add_argument("--version", action="version", version=f"codesearch {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", help="model folder (default: the model shipped with codesearch)")
        p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where to embed (default auto)")
        p.add_argument("--threads", type=int, help="CPU threads for embedding (default: all cores)")
        p.add_argument("--json", action="store_true", help="machine-readable output (JSON Lines)")

    def index_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--index", dest="index_dir", metavar="LOCATION",
                       help="the index: a folder, or s3://bucket/prefix (default: the index_dir setting)")

    index = commands.add_parser("index", help="index or update the repository at PATH")
    index.add_argument("path", nargs="?", default=".", help="repository root (default .)")
    index.add_argument("--rebuild", action="store_true", help="drop the index and build it again")
    index.add_argument("--dry-run", action="store_true",
                       help="print what would be indexed and how long it would take; index nothing")
    index.add_argument("--tracked-only", action="store_true", default=None,
                       help="inside a git repository, index only the files git tracks")
    index.add_argument("-y", "--yes", action="store_true", help="never ask before a big first index")
    index.add_argument("--show-skipped", action="store_true",
                       help="after the summary, list every skipped path with its reason (secrets first)")
    index.add_argument("--repo-name", help="the repository's name in a shared index (default: the folder's name)")
    index.add_argument("--cluster", metavar="ADDRESS",
                       help="index on a Ray cluster: ray://HOST:PORT, or 'auto' (needs codesearch[cluster])")
    index_option(index)
    common(index)

    def query_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("-k", type=int, default=10, help="number of hits (default 10)")
        p.add_argument("--repo", help="only this repository's functions (in an index several share)")
        index_option(p)
        p.add_argument("--lang", action="append", default=[], help="only this language (repeatable)")
        p.add_argument("--path", dest="path_glob", help="only paths matching this glob (or under this prefix)")
        p.add_argument("--root", help="repository root (default: found upward from the current directory)")
        p.add_argument("--snippet-lines", type=int, default=6, help="lines of code shown per hit (0: none)")
        common(p)

    query = commands.add_parser("query", help="find functions by meaning")
    query.add_argument("text", help="what you are looking for, e.g. 'parse json'")
    query.add_argument("--mode", choices=["hybrid", "semantic", "lexical"], default="hybrid")
    query.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                       help="leave out paths matching this glob (repeatable)")
    query.add_argument("--include-tests", action="store_true",
                       help="do not rank tests, examples, benchmarks and declaration stubs lower")
    query.add_argument("--explain", action="store_true", help="show under each hit the signals that ranked it")
    query_options(query)

    similar = commands.add_parser("similar", help="find functions like the one at PATH:LINE, or like --code")
    similar.add_argument("target", nargs="?", help="PATH:LINE of a function in the index")
    similar.add_argument("--code", help="code to match instead of a location ('-' reads stdin)")
    similar.add_argument("--mode", choices=["hybrid", "semantic", "lexical"], default="hybrid",
                         help="hybrid (default): model and identifiers; semantic: the plain cosine")
    query_options(similar)

    status = commands.add_parser("status", help="what is indexed, with which model, how fresh")
    status.add_argument("path", nargs="?", default=None, help="repository root (default: found upward)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    index_option(status)

    clones = commands.add_parser("clones", help="find duplicated functions (copies, renamed and rewritten ones)")
    clones.add_argument("path", nargs="?", default=".", help="only functions under this directory or file (default .)")
    clones.add_argument("--min-similarity", type=float, help="embedding similarity for a pair (default 0.95)")
    clones.add_argument("--min-overlap", type=float,
                        help="token overlap (Jaccard of abstracted 4-grams) for an edited copy (default 0.6; "
                             "above 1 turns it off)")
    clones.add_argument("--min-lines", type=int, default=5, help="ignore functions shorter than this (default 5)")
    clones.add_argument("--lang", action="append", default=[], help="only this language (repeatable)")
    clones.add_argument("--path", dest="path_glob", action="append", default=[], metavar="GLOB",
                        help="only paths matching GLOB (repeatable)")
    clones.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                        help="leave out matching paths (repeatable)")
    clones.add_argument("--cross-language", action="store_true", help="also pair functions of different languages")
    clones.add_argument("--format", choices=["table", "json", "sarif", "markdown"], default="table")
    clones.add_argument("--output", metavar="FILE", help="write the report to FILE instead of stdout")
    clones.add_argument("--fail-on", type=int, metavar="N", help="exit 1 when more than N groups are reported")
    clones.add_argument("--changed-since", metavar="REV", help="only groups with a function changed since git REV")
    clones.add_argument("--baseline", metavar="FILE", help="leave out the groups known in FILE")
    clones.add_argument("--write-baseline", metavar="FILE", help="record every group found as known, in FILE")
    clones.add_argument("--model", help=argparse.SUPPRESS)

    lsp = commands.add_parser("lsp", help="run the language server (stdio; --socket or --tcp to listen)")
    transport = lsp.add_mutually_exclusive_group()
    transport.add_argument("--stdio", action="store_true", help="serve on stdin/stdout (the default)")
    transport.add_argument("--socket", nargs="?", const="", metavar="PATH",
                           help="listen on a Unix socket only you can use (default: $XDG_RUNTIME_DIR/codesearch/"
                                "lsp.sock, else /tmp/codesearch-UID/lsp.sock)")
    transport.add_argument("--tcp", action="store_true",
                           help="listen on 127.0.0.1; clients must first send the token the server writes to a "
                                "file only you can read")
    lsp.add_argument("--port", type=int, default=2087, help="TCP port with --tcp (default 2087; 0: any free port)")
    lsp.add_argument("--token-fd", type=int, help=argparse.SUPPRESS)  # a TCP listener's session: its token pipe
    lsp.add_argument("--listened", action="store_true", help=argparse.SUPPRESS)  # a session a listener started
    return parser


def find_root(start: Path) -> Path:
    """The nearest directory at or above `start` that has an index, else a git root, else `start`."""
    start = start.resolve()
    for directory in (start, *start.parents):
        if (directory / ".codesearch").is_dir() or (directory / ".codesearch.toml").is_file():
            return directory
    for directory in (start, *start.parents):
        if (directory / ".git").exists():
            return directory
    return start


def _enclosing_index_root(path: Path) -> Path | None:
    """The nearest directory strictly above `path`, within its git work tree, whose own index (its
    configured `index_dir` folder) exists, when `path` has none of its own; None otherwise. A nested
    repository (a submodule) keeps an index of its own, as git keeps its own history."""
    path = path.resolve()
    if _has_own_index(path) or (path / ".git").exists():
        return None
    for directory in path.parents:
        if _has_own_index(directory):
            return directory
        if (directory / ".git").exists():
            return None
    return None


def _has_own_index(directory: Path) -> bool:
    try:
        settings = load_settings(directory)
    except CodesearchError:
        return False
    return not settings.remote_index and settings.index_path(directory).is_dir()


def _settings(root: Path, args: argparse.Namespace) -> Settings:
    flags = {name: getattr(args, name, None) for name in ("model", "device", "threads", "index_dir")}
    return load_settings(root, flags)


# --- commands ------------------------------------------------------------------------------------


def cmd_index(args: argparse.Namespace, out: Console, err: Console) -> int:
    from codesearch.indexer import build_index
    from codesearch.plan import load_encoder, measure_speed, plan_index, skipped_row

    root = Path(args.path)
    if not root.is_dir():
        raise CodesearchError(f"not a directory: {args.path}")
    if args.index_dir is None and (enclosing := _enclosing_index_root(root)) is not None:
        if not args.json:
            err.print(terminal_safe(f"updating the index of {enclosing} (it holds {root.resolve()})"), highlight=False)
        root = enclosing  # as git finds its repository from a subdirectory: no second, nested index
    names = ("model", "device", "threads", "tracked_only", "repo_name", "index_dir")
    flags = {name: getattr(args, name) for name in names}
    settings = load_settings(root.resolve(), flags)
    if args.dry_run:
        with _planning(err):
            plan = plan_index(root, settings)
        if args.json:
            print(json.dumps(plan.to_json()))
        else:
            _print_plan(plan, out)
            if args.show_skipped:
                _print_skipped(plan.skipped_paths, plan.secret_rules, out)
        return EXIT_FOUND
    encoder = None
    if _may_ask(args, settings, root, err):
        with _planning(err):
            plan = plan_index(root, settings, measure=False)
            if plan.estimate.functions > settings.confirm_above:
                encoder = load_encoder(settings)  # measured here, then reused to index
                plan = measure_speed(plan, settings, encoder)
        if plan.estimate.functions > settings.confirm_above:
            _print_plan(plan, err)
            if not _confirm(plan, err):
                err.print("codesearch: nothing indexed", markup=False)
                return EXIT_NONE
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=True, disable=not err.is_terminal,
    ) as bar:
        tasks: dict[str, int] = {}

        def tick(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        if args.cluster:
            from codesearch.cluster import build_index_on_cluster

            report = build_index_on_cluster(root, settings, args.cluster, rebuild=args.rebuild, progress=tick)
        else:
            report = build_index(root, settings, rebuild=args.rebuild, progress=tick, encoder=encoder)
    if report.rebuilt:
        err.print(terminal_safe(f"codesearch: {report.rebuilt}"))
    if args.json:
        data = asdict(report)
        data["skipped"] = dict(report.skipped)
        rules = data.pop("secret_rules")
        data["skipped_paths"] = [skipped_row(p, r, rules) for p, r in report.skipped_paths]
        data["embedded_per_s"] = round(report.embedded_per_s, 1)
        print(json.dumps(data))
        return EXIT_FOUND
    out.print(
        f"indexed {report.files} files, {report.functions} functions in {report.seconds:.1f}s "
        f"({report.files_changed} files changed, {report.files_deleted} deleted; "
        f"{report.chunks_embedded} chunks embedded at {report.embedded_per_s:.0f}/s, {report.chunks_reused} reused)",
        highlight=False,
    )
    out.print(f"skipped: {_skip_counts(report.skipped)}", highlight=False)
    if report.syntax_errors:
        out.print(f"{report.syntax_errors} files had syntax errors (their clean functions are indexed)", highlight=False)
    if args.show_skipped:
        _print_skipped(report.skipped_paths, report.secret_rules, out)
    return EXIT_FOUND


def _by_reason(counts: Counter) -> list[tuple[str, int]]:
    """Skip reasons with their counts, secrets first, then the most common."""
    return sorted(counts.most_common(), key=lambda item: item[0] != SECRET)


def _skip_counts(counts: Counter) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in _by_reason(counts)) or "none"


def _print_skipped(paths: Iterable[tuple[str, str]], secret_rules: dict[str, str], out: Console) -> None:
    """Every skipped path under its reason, secrets first; a secret shows the rule that found it,
    never the text it matched."""
    groups: dict[str, list[str]] = defaultdict(list)
    for path, reason in paths:
        groups[reason].append(path)
    for reason, n in _by_reason(Counter({reason: len(group) for reason, group in groups.items()})):
        out.print(f"{reason} ({n}):")
        for path in groups[reason]:
            rule = f"  ({secret_rules[path]})" if path in secret_rules else ""
            out.print(terminal_safe(f"  {path}{rule}"))


def _planning(err: Console):
    """A spinner on stderr while the plan is worked out (only on a terminal)."""
    return err.status("codesearch: planning the index") if err.is_terminal else contextlib.nullcontext()


def _may_ask(args: argparse.Namespace, settings: Settings, root: Path, err: Console) -> bool:
    """Whether a first index may ask before it starts: a person at a terminal, no index yet, no --yes."""
    if args.yes or args.json or settings.confirm_above <= 0 or not err.is_terminal:
        return False
    try:
        interactive = sys.stdin is not None and sys.stdin.isatty()
    except ValueError:  # stdin was closed
        interactive = False
    from codesearch.objectstore import index_exists

    return interactive and not index_exists(settings.index_location(root.resolve()))


def _confirm(plan: IndexPlan, err: Console) -> bool:
    """Ask on stderr whether to index; anything but y/yes (EOF, Ctrl-C included) is a no."""
    e = plan.estimate
    about = f", about {_duration(e.seconds)}" if e.seconds is not None else ""
    try:
        err.print(f"Index {len(plan.files)} files (~{e.functions:,} functions{about})? [y/N] ", end="", markup=False)
        answer = _read_answer()
    except KeyboardInterrupt:
        answer = ""
    if not answer.endswith("\n"):
        err.print()  # EOF or Ctrl-C left the cursor after the prompt
    return answer.strip().lower() in ("y", "yes")


def _read_answer() -> str:
    """One line from stdin that Ctrl-C always interrupts.

    Python runs its SIGINT handler between bytecodes. A Ctrl-C that lands after its last check and before
    readline's read() starts would wait for Enter, so wait for input in short selects first: the loop
    gives the handler its turn within a tenth of a second.
    """
    try:
        fd = sys.stdin.fileno()
        while not select.select([fd], [], [], 0.1)[0]:
            pass
    except (OSError, ValueError):  # no select on this stdin (Windows consoles): a plain read
        pass
    return sys.stdin.readline()


def _print_plan(plan: IndexPlan, console: Console) -> None:
    """The human form of a dry run: files and functions by language, skips, big directories, the time."""
    state = "an index exists and would be updated" if plan.index_exists else "no index yet"
    console.print(terminal_safe(f"{plan.root}: {state}"))
    table = Table(box=box.SIMPLE, pad_edge=False, show_edge=False, show_footer=True)
    total = ("total", f"{len(plan.files):,}", decimal(plan.bytes), f"{plan.estimate.functions:,}")
    for name, footer in zip(("language", "files", "size", "est. functions"), total):
        table.add_column(name, footer=footer, justify="left" if name == "language" else "right")
    for name, lang in plan.languages.items():
        table.add_row(name, f"{lang.files:,}", decimal(lang.bytes), f"{lang.functions:,}")
    console.print(table)
    console.print(f"skipped: {_skip_counts(plan.skipped)}", markup=False)
    if plan.largest_dirs:
        console.print("largest directories:")
        dirs = Table.grid(padding=(0, 2))
        for justify in ("left", "right", "right"):
            dirs.add_column(justify=justify)
        for d in plan.largest_dirs:
            dirs.add_row(Text(terminal_safe(f"  {d.path}")), f"{d.files:,} file{'' if d.files == 1 else 's'}",
                         decimal(d.bytes))
        console.print(dirs)
    console.print(_estimate_line(plan), markup=False)


def _estimate_line(plan: IndexPlan) -> str:
    e = plan.estimate
    sampled = "" if plan.sampled_files == len(plan.files) else f" (counted in a sample of {plan.sampled_files} files)"
    line = f"estimate: ~{e.functions:,} functions{sampled}"
    if e.functions_per_s is not None and e.seconds is not None:
        return f"{line}, about {_duration(e.seconds)} at {e.functions_per_s:,.0f} functions/s measured on {e.provider}"
    if e.seconds is not None:
        return f"{line}, about {_duration(e.seconds)}"
    return f"{line}; {e.note}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def _open_index(args: argparse.Namespace):
    """The index a query command reads, after its options are checked (bad input is never taken
    for a damaged index, and no index is opened for it)."""
    from codesearch.search import Index, check_filters, check_k

    check_k(args.k)
    check_filters(args.lang, args.path_glob, args.repo)
    root = find_root(Path(args.root or "."))
    return Index.open(root, _settings(root, args))


def cmd_query(args: argparse.Namespace, out: Console, err: Console) -> int:
    started = time.perf_counter()
    index = _open_index(args)
    hits = index.search(args.text, args.k, mode=args.mode, languages=args.lang, path=args.path_glob, repo=args.repo,
                        exclude=args.exclude, include_tests=args.include_tests)
    summary = {"type": "summary", "query": args.text, "mode": args.mode, "hits": len(hits)}
    return _print_hits(hits, args, out, summary, started)


def cmd_similar(args: argparse.Namespace, out: Console, err: Console) -> int:
    started = time.perf_counter()
    if bool(args.target) == bool(args.code):
        raise CodesearchError("give either PATH:LINE or --code TEXT (or --code - to read stdin)")
    location = _location(args.target) if args.target else None
    index = _open_index(args)
    filters = {"mode": args.mode, "languages": args.lang, "path": args.path_glob, "repo": args.repo}
    if args.code:
        code = _read_stdin() if args.code == "-" else args.code
        hits = index.similar(code, args.k, **filters)
        summary = {"type": "summary", "query": "code", "mode": args.mode, "hits": len(hits)}
    else:
        this, hits = index.similar_at(*location, args.k, **filters)
        if not args.json:
            err.print(terminal_safe(f"similar to {this.name} ({this.path}:{this.start_line})"))
        summary = {"type": "summary", "query": f"{this.path}:{this.start_line}", "name": this.name, "mode": args.mode,
                   "hits": len(hits)}
    return _print_hits(hits, args, out, summary, started)


def _location(target: str) -> tuple[str, int]:
    """PATH:LINE from the command line, as (path, line); only ASCII digits count as a line number
    (`int` would take `²` or Arabic digits and fail later), and its range is checked by `similar_at`."""
    path, sep, line = target.rpartition(":")
    if not sep or not path or not re.fullmatch("[0-9]+", line):
        raise CodesearchError(f"expected PATH:LINE with a line number, got {target!r}")
    return path, int(line)


def _read_stdin() -> str:
    """All of stdin as text (for `--code -`), with a clear error when it is not UTF-8."""
    try:
        return sys.stdin.read()
    except UnicodeDecodeError as exc:
        raise CodesearchError(f"--code -: stdin is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _print_hits(hits, args: argparse.Namespace, out: Console, summary: dict, started: float) -> int:
    summary["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 1)
    if args.json:
        for hit in hits:
            row = {"type": "hit", **asdict(hit)}
            row["line"] = row.pop("start_line")
            print(json.dumps(row))
        print(json.dumps(summary))
        return EXIT_FOUND if hits else EXIT_NONE
    for hit in hits:
        out.print(Text.assemble(
            (f"{hit.rank:>2}", "bold"), f"  {hit.score:.3f}  ",
            (terminal_safe(f"{hit.path}:{hit.start_line}"), "magenta"), "  ", (terminal_safe(hit.name), "green"),
        ))
        if getattr(args, "explain", False) and hit.explain:
            out.print(Text(f"      {hit.explain}", "dim"))
        if args.snippet_lines > 0:
            snippet = terminal_safe("\n".join(hit.code.splitlines()[: args.snippet_lines]), code=True)
            if out.is_terminal:
                out.print(Syntax(snippet, _lexer(hit.language), line_numbers=True, start_line=hit.start_line))
            else:
                for number, text in enumerate(snippet.splitlines(), start=hit.start_line):
                    out.print(Text(f"    {number:>5}  {text}"))
    return EXIT_FOUND if hits else EXIT_NONE


def _lexer(language: str) -> str:
    return {"csharp": "csharp", "tsx": "tsx", "cpp": "cpp"}.get(language, language)


def cmd_status(args: argparse.Namespace, out: Console, err: Console) -> int:
    from codesearch.search import Index

    root = find_root(Path(args.path or "."))
    status = Index.open(root, _settings(root, args)).status()
    if args.json:
        print(json.dumps(asdict(status)))
        return EXIT_FOUND
    age = time.time() - status.updated_at if status.updated_at else None
    fresh = "up to date" if status.stale_files == 0 else f"{status.stale_files} files changed since"
    out.print(terminal_safe(f"index:     {status.index_path}"))
    out.print(terminal_safe(f"model:     {status.model_id} ({status.dimension} dims)"))
    out.print(f"contents:  {status.files} files, {status.chunks} chunks")
    out.print("languages: " + ", ".join(f"{lang} {n}" for lang, n in status.languages.items()))
    if status.repos and len(status.repos) > 1:
        out.print(terminal_safe("repos:     " + ", ".join(f"{name} {n}" for name, n in status.repos.items())))
    updated = f"{age / 60:.0f} min ago" if age is not None else "never"
    state = "" if status.complete else " (last run did not finish: run `codesearch index`)"
    out.print(f"updated:   {updated}, {fresh}{state}")
    return EXIT_FOUND


def cmd_clones(args: argparse.Namespace, out: Console, err: Console) -> int:
    from codesearch.clones import (
        DEFAULT_MIN_OVERLAP, DEFAULT_MIN_SIMILARITY, CloneOptions, find_clones, write_baseline,
    )
    from codesearch.reports import render
    from codesearch.search import Index, check_filters

    check_filters(args.lang)
    start = Path(args.path)
    if not start.exists():
        raise CodesearchError(f"no such file or directory: {args.path}")
    root = find_root(start if start.is_dir() else start.parent)
    under = start.resolve().relative_to(root).as_posix()
    options = CloneOptions(
        min_similarity=DEFAULT_MIN_SIMILARITY if args.min_similarity is None else args.min_similarity,
        min_overlap=DEFAULT_MIN_OVERLAP if args.min_overlap is None else args.min_overlap,
        min_lines=args.min_lines, languages=tuple(args.lang), paths=tuple(args.path_glob),
        excludes=tuple(args.exclude), cross_language=args.cross_language, changed_since=args.changed_since,
        baseline=Path(args.baseline) if args.baseline else None, under="" if under == "." else under,
    )
    if args.fail_on is not None and args.fail_on < 0:
        raise CodesearchError("--fail-on must be 0 or more")
    report = find_clones(Index.open(root, _settings(root, args)), options)
    if args.write_baseline:
        write_baseline(Path(args.write_baseline), report.all_groups)
        err.print(terminal_safe(f"codesearch: wrote {len(report.all_groups)} known groups to {args.write_baseline}"))
    text = render(report, args.format, color=out.is_terminal and not args.output,
                  width=out.width if out.is_terminal and not args.output else 400)
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CodesearchError(f"cannot write {args.output}: {exc.strerror}") from None
        err.print(terminal_safe(f"codesearch: {len(report.groups)} clone groups written to {args.output}"))
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    return 1 if args.fail_on is not None and len(report.groups) > args.fail_on else EXIT_FOUND


def cmd_lsp(args: argparse.Namespace, out: Console, err: Console) -> int:
    from lsp.server import start

    if not 0 <= args.port <= 65535:
        raise CodesearchError(f"--port must be from 0 to 65535, got {args.port}")
    start(socket_path=args.socket, tcp=args.tcp, port=args.port, token_fd=args.token_fd, listened=args.listened)
    return EXIT_FOUND


COMMANDS = {
    "index": cmd_index, "query": cmd_query, "similar": cmd_similar, "status": cmd_status, "clones": cmd_clones,
    "lsp": cmd_lsp,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Plain text by default: paths and code are data, never Rich markup (`[b].py`) or emoji codes (`:x:`).
    out = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
    err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)
    try:
        return COMMANDS[args.command](args, out, err)
    except CodesearchError as exc:
        if args.debug:
            raise
        err.print(terminal_safe(f"codesearch: error: {exc}"))
        return EXIT_ERROR
    except KeyboardInterrupt:
        err.print("codesearch: interrupted (the index stays queryable; run the command again to finish)")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`codesearch query ... | head`): exit quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FOUND
    except Exception as exc:  # noqa: BLE001 - last resort: one line, never a traceback
        if args.debug:
            raise
        detail = f"{type(exc).__name__}: {exc}"
        err.print(terminal_safe(f"codesearch: internal error: {detail} (run with --debug for details)"))
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
