"""What looking for secrets costs when files are read, on a real tree (default: the Python standard
library, less site-packages), and what it flags there.

    python benchmarks/secret_scan.py [--repo PATH] [--rounds 3]

Prints: files and MB, the walk, reading every file with `read_source` without and with the secret
scan (best of --rounds), the scan's own throughput, and every file it flagged with the rule.
"""

from __future__ import annotations

import argparse
import sysconfig
import time
from pathlib import Path

from codesearch.files import SkipFile, read_source, walk
from codesearch.secrets import BUILTIN


def best_of(rounds: int, work) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def read_all(files, secrets) -> list[tuple[str, str]]:
    flagged = []
    for file in files:
        try:
            read_source(file, secrets=secrets)
        except SkipFile as skip:
            if skip.rule:
                flagged.append((file.path, skip.rule))
    return flagged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", default=sysconfig.get_paths()["stdlib"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    repo = Path(args.repo)
    ignores = ["site-packages/", "dist-packages/"]
    walk_s = best_of(args.rounds, lambda: walk(repo, extra_ignores=ignores))
    files = walk(repo, extra_ignores=ignores).files
    megabytes = sum(f.size for f in files) / 1e6
    plain_s = best_of(args.rounds, lambda: read_all(files, None))
    scanned_s = best_of(args.rounds, lambda: read_all(files, BUILTIN))
    scan_s = scanned_s - plain_s
    print(f"repo: {repo}: {len(files)} code files, {megabytes:.1f} MB")
    print(f"walk: {walk_s:.2f} s (names checked for secrets)")
    print(f"read_source, no scan: {plain_s:.2f} s; with the secret scan: {scanned_s:.2f} s "
          f"(scan {scan_s:.2f} s, {megabytes / max(scan_s, 1e-9):.0f} MB/s)")
    flagged = read_all(files, BUILTIN)
    print(f"flagged: {len(flagged)}")
    for path, rule in flagged:
        print(f"  {path}  ({rule})")


if __name__ == "__main__":
    main()
