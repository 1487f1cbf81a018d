"""Peak memory of `codesearch index` on a generated repository of about a million lines.

    python benchmarks/memory.py --model PATH [--lines 1000000] [--seed 0] [--threads N] [--keep DIR]

Generates a seeded repository of multi-language code (Python, JavaScript, TypeScript, Go, Rust, Java,
C, Ruby: files of 60-900 lines, functions of 3-60 lines with nested ifs and loops, comments and
docstrings, names drawn from a programmer's vocabulary), runs `codesearch index --json` on it in a
child process and prints the child's peak resident memory (getrusage's ru_maxrss), its RSS sampled
over the run (to say which stage holds the peak), the wall time and the functions indexed.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

VERBS = (
    "parse", "load", "save", "read", "write", "build", "merge", "split", "find", "filter", "sort", "group",
    "count", "check", "validate", "encode", "decode", "fetch", "send", "open", "close", "flush", "update",
    "render", "resolve", "format", "compute", "apply", "collect", "reset", "register", "normalize", "scan",
)
NOUNS = (
    "user", "order", "item", "record", "config", "path", "token", "buffer", "header", "request", "response",
    "session", "cache", "entry", "node", "edge", "graph", "matrix", "vector", "queue", "stack", "message",
    "event", "handler", "file", "line", "column", "row", "table", "index", "key", "value", "result", "error",
    "price", "account", "invoice", "report", "schema", "query", "batch", "chunk", "frame", "packet", "slot",
)


@dataclass(frozen=True)
class Style:
    """How one language spells a function and the few statements the generator writes."""

    ext: str
    header: str  # the file's first lines
    open: str  # {name} {params}; the function's first line(s)
    close: str | None  # the block closer (None: indentation ends the block)
    assign: str  # {var} {call} {arg}
    cond: str  # {var} {n}: opens an if block
    loop: str  # {item} {var}: opens a loop block
    ret: str  # {var}
    comment: str
    camel: bool = False
    wrap: tuple[str, str] | None = None  # a class around the functions: ({name} opener, closer)


STYLES = (
    Style("py", "import os\nimport json\n\n", "def {name}({params}):", None, "{var} = {call}({arg})",
          "if {var} > {n}:", "for {item} in {var}:", "return {var}", "#"),
    Style("js", "'use strict';\n\n", "function {name}({params}) {{", "}}", "const {var} = {call}({arg});",
          "if ({var} > {n}) {{", "for (const {item} of {var}) {{", "return {var};", "//", camel=True),
    Style("ts", "import {{ strict }} from './util';\n\n", "export function {name}({params}): number {{", "}}",
          "const {var} = {call}({arg});", "if ({var} > {n}) {{", "for (const {item} of {var}) {{",
          "return {var};", "//", camel=True),
    Style("go", "package gen\n\nimport \"fmt\"\n\n", "func {name}({params}) int {{", "}}", "{var} := {call}({arg})",
          "if {var} > {n} {{", "for _, {item} := range {var} {{", "return {var}", "//", camel=True),
    Style("rs", "use std::collections::HashMap;\n\n", "pub fn {name}({params}) -> i64 {{", "}}",
          "let {var} = {call}({arg});", "if {var} > {n} {{", "for {item} in {var}.iter() {{", "return {var};", "//"),
    Style("java", "package gen;\n\nimport java.util.List;\n\n", "    public int {name}({params}) {{", "}}",
          "int {var} = {call}({arg});", "if ({var} > {n}) {{", "for (int {item} : {var}) {{", "return {var};",
          "//", camel=True, wrap=("public class {name} {{\n", "}\n")),
    Style("c", "#include <stdio.h>\n#include <stdlib.h>\n\n", "int {name}({params}) {{", "}}",
          "int {var} = {call}({arg});", "if ({var} > {n}) {{", "for (int {item} = 0; {item} < {var}; {item}++) {{",
          "return {var};", "//"),
    Style("rb", "require 'json'\n\n", "def {name}({params})", "end", "{var} = {call}({arg})",
          "if {var} > {n}", "{var}.each do |{item}|", "{var}", "#"),
)
PARAMS = {
    "py": "{a}, {b}", "js": "{a}, {b}", "ts": "{a}: number, {b}: number[]", "go": "{a} int, {b} []int",
    "rs": "{a}: i64, {b}: &[i64]", "java": "int {a}, int[] {b}", "c": "int {a}, int {b}", "rb": "{a}, {b}",
}


class Generator:
    """Seeded source text: `file(style)` returns one file's lines."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.serial = 0

    def ident(self, style: Style, *words: str) -> str:
        if style.camel:
            return words[0] + "".join(w.capitalize() for w in words[1:])
        return "_".join(words)

    def name(self, style: Style) -> str:
        self.serial += 1
        words = [self.rng.choice(VERBS), self.rng.choice(NOUNS)]
        if self.rng.random() < 0.5:
            words.append(self.rng.choice(NOUNS))
        return self.ident(style, *words) + ("" if self.rng.random() < 0.7 else str(self.serial % 97))

    def var(self, style: Style) -> str:
        return self.ident(style, self.rng.choice(NOUNS), self.rng.choice(("count", "list", "map", "id", "size")))

    def block(self, style: Style, depth: int, budget: int) -> list[str]:
        """About `budget` statement lines at nesting `depth` (an if or a loop opens a nested block)."""
        pad = "    " * depth
        lines: list[str] = []
        while len(lines) < budget:
            roll = self.rng.random()
            if roll < 0.2 and depth < 4 and budget - len(lines) > 3:
                opener = style.cond if roll < 0.1 else style.loop
                lines.append(pad + opener.format(var=self.var(style), n=self.rng.randint(0, 99), item="it"))
                lines += self.block(style, depth + 1, self.rng.randint(1, min(6, budget - len(lines) - 1)))
                if style.close:
                    lines.append(pad + style.close.format())
            elif roll < 0.3:
                words = " ".join(self.rng.choices(VERBS + NOUNS, k=self.rng.randint(3, 9)))
                lines.append(f"{pad}{style.comment} {words}")
            else:
                call = self.ident(style, self.rng.choice(VERBS), self.rng.choice(NOUNS))
                lines.append(pad + style.assign.format(var=self.var(style), call=call, arg=self.var(style)))
        return lines

    def function(self, style: Style, indent: int) -> list[str]:
        name = self.name(style)
        a, b = self.var(style), self.var(style)
        lines = [style.open.format(name=name, params=PARAMS[style.ext].format(a=a, b=b)).strip()]
        summary = " ".join(self.rng.choices(VERBS + NOUNS, k=self.rng.randint(4, 12))).capitalize() + "."
        if style.ext == "py":
            lines.append(f'    """{summary}"""')
        else:
            lines.insert(0, f"{style.comment} {summary}")
        lines += self.block(style, 1, self.rng.choice((1, 2, 4, 6, 10, 16, 30, 50)))
        lines.append("    " + style.ret.format(var=a))
        if style.close:
            lines.append(style.close.format())
        return ["    " * indent + line for line in lines] + [""]

    def file(self, style: Style, target_lines: int) -> list[str]:
        lines = style.header.format().splitlines()
        indent = 0
        if style.wrap:
            lines.append(style.wrap[0].format(name=self.name(style).capitalize()).rstrip("\n"))
            indent = 1
        while len(lines) < target_lines:
            lines += self.function(style, indent)
        if style.wrap:
            lines.append(style.wrap[1].rstrip("\n"))
        return lines


def generate(root: Path, lines: int, seed: int) -> tuple[int, int]:
    """Write a repository of about `lines` lines under `root`: (files, lines written)."""
    gen = Generator(seed)
    written = files = 0
    while written < lines:
        style = gen.rng.choice(STYLES)
        text = gen.file(style, gen.rng.randint(60, 900))
        folder = root / f"pkg{files // 50:03d}" / gen.rng.choice(NOUNS)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{gen.name(style).lower()}_{files}.{style.ext}").write_text("\n".join(text) + "\n")
        written += len(text)
        files += 1
    return files, written


def rss_kib(pid: int) -> int:
    """The resident memory of process `pid` now, in KiB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def index_and_measure(repo: Path, model: str, threads: int | None) -> dict:
    """Run `codesearch index --json` on `repo` in a child; its report, peak RSS and RSS samples."""
    command = [sys.executable, "-m", "codesearch", "index", str(repo), "--json", "--model", model]
    if threads:
        command += ["--threads", str(threads)]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples: list[tuple[float, int]] = []  # (seconds since start, RSS KiB)

    def sample() -> None:
        while child.poll() is None:
            samples.append((time.perf_counter() - started, rss_kib(child.pid)))
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = child.communicate()
    wall = time.perf_counter() - started
    sampler.join()
    if child.returncode != 0:
        raise SystemExit(f"codesearch index failed ({child.returncode}): {err.strip()}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    return {"report": json.loads(out), "peak_kib": peak_kib, "wall": wall, "samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model folder to index with")
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines of code to generate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="embedding threads (default: the engine's)")
    parser.add_argument("--keep", help="generate into this folder and keep it (default: a temporary one)")
    args = parser.parse_args()

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="codesearch-memory-"))
    try:
        repo = work / "repo"
        if repo.exists():
            shutil.rmtree(repo)
        started = time.perf_counter()
        files, lines = generate(repo, args.lines, args.seed)
        size = sum(p.stat().st_size for p in repo.rglob("*") if p.is_file())
        print(f"generated {files:,} files, {lines:,} lines, {size / 1e6:.1f} MB in {time.perf_counter() - started:.0f}s")
        result = index_and_measure(repo, args.model, args.threads)
        report, samples = result["report"], result["samples"]
        print(f"indexed {report['files']:,} files, {report['chunks']:,} functions "
              f"({report['chunks_embedded']:,} embedded) in {result['wall']:.0f}s wall")
        print(f"peak RSS (ru_maxrss): {result['peak_kib'] / 1024:.0f} MiB")
        if samples:
            at, peak = max(samples, key=lambda s: s[1])
            print(f"sampled RSS: peak {peak / 1024:.0f} MiB at {at:.0f}s of {result['wall']:.0f}s; by tenths of the run: "
                  + " ".join(f"{samples[min(len(samples) - 1, len(samples) * i // 10)][1] / 1024:.0f}" for i in range(10))
                  + " MiB")
        model_mb = sum(p.stat().st_size for p in Path(args.model).iterdir() if p.is_file()) / 1e6
        print(f"model folder: {model_mb:.1f} MB on disk")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
