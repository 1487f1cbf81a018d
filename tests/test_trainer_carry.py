"""Packed pairs (trainer.carry) unpack to the very file the data stage wrote."""

import pytest

from codesearch.errors import CodesearchError
from trainer.carry import main, pack_pairs, unpack_pairs
from trainer.data import mine_hard_negatives
from trainer.jsonl import write_jsonl

PAIRS = [
    {"query": f"{verb} the {thing} file", "code": f"def {verb}_{thing}(path):\n    return {verb}(open(path))\n",
     "code_full": f'def {verb}_{thing}(path):\n    """{verb} it."""\n    return {verb}(open(path))\n',
     "repo": "r", "language": "go" if thing == "ü" else "python"}
    for verb in ("read", "parse", "write", "load") for thing in ("json", "yaml", "ü")
]


def test_pack_then_unpack_gives_back_the_same_file(tmp_path):
    mined = mine_hard_negatives(PAIRS, seed=0)  # per language: some pairs' only other pairs are few
    mined.append({"query": "q", "code": "c", "negative": ""})  # a language's only pair: an empty negative
    mined.append({"query": "q2", "code": "c2"})  # no negative mined at all
    write_jsonl(tmp_path / "pairs.jsonl", mined)
    counts = pack_pairs(tmp_path / "pairs.jsonl", tmp_path / "pairs.jsonl.xz")
    assert counts["pairs"] == len(mined) and counts["bytes"] < (tmp_path / "pairs.jsonl").stat().st_size
    assert unpack_pairs(tmp_path / "pairs.jsonl.xz", tmp_path / "back.jsonl") == len(mined)
    assert (tmp_path / "back.jsonl").read_bytes() == (tmp_path / "pairs.jsonl").read_bytes()


def test_a_negative_that_is_no_pair_cannot_be_packed(tmp_path):
    write_jsonl(tmp_path / "pairs.jsonl", [dict(PAIRS[0], negative="def elsewhere(): pass")])
    with pytest.raises(CodesearchError, match="not another pair's code"):
        pack_pairs(tmp_path / "pairs.jsonl", tmp_path / "out.xz")


def test_command_line(tmp_path, capsys):
    write_jsonl(tmp_path / "pairs.jsonl", mine_hard_negatives(PAIRS, seed=0))
    assert main(["pack", str(tmp_path / "pairs.jsonl"), str(tmp_path / "p.xz")]) == 0
    assert main(["unpack", str(tmp_path / "p.xz"), str(tmp_path / "data" / "pairs-train.jsonl")]) == 0
    assert f"{len(PAIRS)} pairs -> " in capsys.readouterr().out
    assert main(["unpack", str(tmp_path / "pairs.jsonl"), str(tmp_path / "x.jsonl")]) == 2  # not xz
    assert capsys.readouterr().err.startswith("error: ") and main(["pack"]) == 2
