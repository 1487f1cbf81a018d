"""Training pairs packed small enough to carry to another machine (the GPU machine takes 64 MiB a call).

    pairs-train.jsonl (~560 MB)  ->  pack  ->  pairs.jsonl.xz (~30 MB)  ->  unpack  ->  the same file

A pair's hard negative is another pair's code (trainer.data mines it among the pairs), so the packed
rows keep its index instead of its text, and xz (Python's lzma: nothing to install on either side)
squeezes the rest.

    python -m trainer.carry pack runs/NAME/data/pairs-train.jsonl .carry/pairs.jsonl.xz
    python -m trainer.carry unpack .carry/pairs.jsonl.xz /tmp/run/data/pairs-train.jsonl
"""

from __future__ import annotations

import json
import lzma
import os
import sys
from pathlib import Path

from codesearch.errors import CodesearchError
from trainer.jsonl import read_jsonl, write_jsonl

_NEGATIVE = {"negative": "code", "negative_full": "code_full"}  # a negative's field: the other pair's field


def pack_pairs(src: Path, dst: Path) -> dict:
    """Write `src`'s pairs to `dst` (xz JSON Lines), each negative as `negative_index`; returns counts."""
    rows = read_jsonl(Path(src))
    first = {}
    for i, row in enumerate(rows):
        first.setdefault((row["code"], row.get("code_full")), i)
    packed = []
    for row in rows:
        row = dict(row)
        negative = row.pop("negative", None)
        j = first.get((negative, row.pop("negative_full", None))) if negative else None
        if negative and j is None:
            raise CodesearchError(f"{src}: a hard negative is not another pair's code; it cannot be packed")
        if negative is not None:
            row["negative_index"] = -1 if j is None else j  # -1: the pair had an empty negative
        packed.append(row)
    tmp = Path(dst).with_name(Path(dst).name + ".tmp")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    with lzma.open(tmp, "wt", encoding="utf-8", preset=6) as f:
        for row in packed:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, dst)
    return {"pairs": len(rows), "bytes": Path(dst).stat().st_size}


def unpack_pairs(src: Path, dst: Path) -> int:
    """Write the pairs packed in `src` to `dst` as the data stage wrote them; returns their number."""
    try:
        with lzma.open(src, "rt", encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    except (OSError, lzma.LZMAError, json.JSONDecodeError) as exc:
        raise CodesearchError(f"{src}: not packed pairs ({exc})") from None
    out = []
    for row in rows:
        row = dict(row)
        j = row.pop("negative_index", None)
        if j is not None:
            other = rows[j] if j >= 0 else {"code": ""}
            for field, source in _NEGATIVE.items():
                if source in other:
                    row[field] = other[source]
        out.append(row)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(Path(dst), out)
    return len(out)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("pack", "unpack"):
        print("usage: python -m trainer.carry pack|unpack SRC DST", file=sys.stderr)
        return 2
    try:
        if argv[0] == "pack":
            counts = pack_pairs(Path(argv[1]), Path(argv[2]))
            print(f"{counts['pairs']} pairs -> {argv[2]} ({counts['bytes'] / 1e6:.1f} MB)")
        else:
            print(f"{unpack_pairs(Path(argv[1]), Path(argv[2]))} pairs -> {argv[2]}")
    except (CodesearchError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
