"""The data stage on a small real multi-language tree: pairs, filters, dedupe, split, decontamination, negatives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.data import (
    build_dataset,
    decontaminate,
    dedupe,
    first_sentence,
    mine_hard_negatives,
    split_by_repository,
    trivial_query,
    without_name_prefix,
)
from trainer.jsonl import read_jsonl
from codesearch.errors import CodesearchError
from trainer.dedupe import normalised_hash
from trainer.recipe import DataConfig
from trainer_sources import BENCH_COSQA, write_bench, write_tree


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("data")
    write_tree(root / "src")
    write_bench(root / "bench")
    cfg = DataConfig(sources=[{"glob": str(root / "src" / "*"), "exclude": [], "optional": False}], valid_fraction=0.2)
    stats = build_dataset(cfg, root / "out", root / "bench", log=lambda message: None)
    return root / "out", stats


def test_pairs_from_every_language_with_provenance(built):
    out, stats = built
    pairs = read_jsonl(out / "pairs-train.jsonl") + read_jsonl(out / "pairs-valid.jsonl")
    by_name = {(p["repo"], p["name"]): p for p in pairs}
    assert {p["language"] for p in pairs} == {"python", "javascript", "go", "rust", "java", "c"}

    area = by_name[("alpha", "circle_area")]
    assert area["query"] == "Compute the area of a circle from its radius."
    assert '"""' not in area["code"] and area["code"].startswith("def circle_area(radius):")
    # code_full is the function as the engine embeds it, docstring included; only where it differs.
    assert area["code_full"].startswith('def circle_area(radius):\n    """Compute the area of a circle')
    assert area["code_full"].replace(area["query"], "") != area["code_full"]
    assert "code_full" not in by_name[("beta", "titleCase")]  # a JS doc comment sits outside the code
    assert (area["path"], area["language"], area["start_line"]) == ("geometry.py", "python", 4)
    # The sentence ends at the first period that is not an abbreviation; parameter lists never get in.
    assert by_name[("alpha", "Vector.normalized")]["query"].endswith("e.g. for a heading.")
    assert by_name[("alpha", "distance")]["query"] == "Return the Euclidean distance between two points."
    assert by_name[("beta", "titleCase")]["query"] == "Convert a string to title case, capitalising every word."
    assert by_name[("delta", "max_value")]["query"] == "Find the largest value in a slice of integers."

    names = {p["name"] for p in pairs}
    assert "todo_helper" not in names  # "TODO." docstring
    assert "test_circle_area_of_unit_circle" not in names and "TestReverse" not in names
    assert "parse_message" not in names  # generated file
    assert stats["chunks"]["test"] == 2
    assert stats["skipped_files"] == {"generated": 1}


def test_split_keeps_each_repository_on_one_side(built):
    out, stats = built
    train = {p["repo"] for p in read_jsonl(out / "pairs-train.jsonl")}
    valid = {p["repo"] for p in read_jsonl(out / "pairs-valid.jsonl")}
    assert train and valid and not train & valid
    assert {r for r, info in stats["repositories"].items() if info["split"] == "valid" and info["pairs"]} == valid
    corpus_repos = {row["repo"] for row in read_jsonl(out / "corpus-train.jsonl")}
    assert corpus_repos <= train | {r for r, info in stats["repositories"].items() if info["split"] == "train"}
    assert not corpus_repos & valid


def test_split_by_repository_on_many_repositories():
    pairs = [{"repo": f"r{i % 20}", "code": str(i)} for i in range(400)]
    train, valid, valid_repos = split_by_repository(pairs, 0.25, seed=3)
    assert len(train) + len(valid) == 400
    assert 60 <= len(valid) <= 150
    assert {p["repo"] for p in valid} == set(valid_repos)
    assert not {p["repo"] for p in train} & set(valid_repos)
    assert split_by_repository(pairs, 0.25, seed=3)[2] == valid_repos  # the seed decides


def test_exact_and_near_duplicates_are_dropped(built):
    out, stats = built
    assert stats["dedupe"] == {"exact": 1, "near": 1}  # beta's copies of alpha's mean and histogram
    names = [(p["repo"], p["name"]) for p in read_jsonl(out / "pairs-train.jsonl") + read_jsonl(out / "pairs-valid.jsonl")]
    assert ("alpha", "mean") in names and ("beta", "mean") not in names
    assert ("alpha", "histogram") in names and ("beta", "histogram") not in names

    body = "\n".join(f"    total = total + values[{i}] * weights[{i}]" for i in range(12))
    original = f"def weighted(values, weights):\n    total = 0\n{body}\n    return total"
    pairs = [
        {"code": original},
        {"code": original.replace("\n", "\n  ").replace("    ", "\t")},  # whitespace only: exact
        {"code": original.replace("return total", "return total / 2")},  # one token more: near
        {"code": "def other(a):\n    b = a * 3\n    return sorted(b)"},
    ]
    kept, counts = dedupe(pairs, threshold=0.85)
    assert counts == {"exact": 1, "near": 1}
    assert [p["code"] for p in kept] == [original, pairs[3]["code"]]


def test_decontamination_drops_bench_code(built, tmp_path):
    out, stats = built
    # read_lines is CoSQA's function (docstring removed, other indentation); sum_digits is inside an OJ program.
    assert stats["decontamination"]["exact"] == 2
    names = {p["name"] for p in read_jsonl(out / "pairs-train.jsonl") + read_jsonl(out / "pairs-valid.jsonl")}
    assert "read_lines" not in names and "sum_digits" not in names and "write_lines" in names
    assert stats["corpus"]["dropped_for_bench_code"] == 2  # alpha/io_utils.py and zeta/digits.c
    assert all(row["path"] != "io_utils.py" for row in read_jsonl(out / "corpus-train.jsonl"))

    bench = write_bench(tmp_path / "bench")
    long_function = "def tally(words):\n" + "".join(f"    counts_{i} = words.count('w{i}')\n" for i in range(10)) + "    return counts_0"
    (bench / "cosqa" / "corpus.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in BENCH_COSQA + [{"id": 2, "code": long_function}]), encoding="utf-8"
    )
    pairs = [
        {"code": "def read_lines(path):\n    with open(path) as f:\n        return [line.rstrip('\\n') for line in f]"},
        {"code": long_function.replace("return counts_0", "return counts_1")},  # near copy
        {"code": "def fresh(x):\n    y = x ** 2\n    return y + 1"},
    ]
    kept, report = decontaminate(pairs, bench)
    assert [p["code"] for p in kept] == [pairs[2]["code"]]
    assert (report["exact"], report["near"], report["kept"], report["checked"]) == (1, 1, 1, 3)
    assert report["bench_items"] > len(BENCH_COSQA)


def test_hard_negative_is_never_the_positive_nor_a_copy_of_it():
    pairs = [
        {"query": "load json file", "code": "def load_json(path):\n    with open(path) as f:\n        return json.load(f)"},
        # The same code again (other indentation): BM25's best match for the first query, but a copy.
        {"query": "read json from disk", "code": "def load_json(path):\n  with open(path) as f:\n    return json.load(f)"},
        {"query": "write json to disk", "code": "def save_json(path, data):\n    with open(path, 'w') as f:\n        json.dump(data, f)"},
        {"query": "add two numbers", "code": "def add(a, b):\n    total = a + b\n    return total"},
    ]
    mined = mine_hard_negatives(pairs, "bm25")
    for pair in mined:
        assert pair["negative"] and pair["negative"] != pair["code"]
        assert normalised_hash(pair["negative"]) != normalised_hash(pair["code"])
    assert mined[0]["negative"] == pairs[2]["code"]  # the other json function, not the copy
    assert mined[2]["negative"] in (pairs[0]["code"], pairs[1]["code"])


def test_hard_negatives_are_mined_within_each_language():
    go = [
        {"query": "parse a json config", "language": "go",
         "code": "func parseConfig(data []byte) (Config, error) {\n\tvar c Config\n\treturn c, json.Unmarshal(data, &c)\n}"},
        {"query": "add two numbers", "language": "go", "code": "func add(a, b int) int {\n\ttotal := a + b\n\treturn total\n}"},
    ]
    python = [
        # BM25's best match for the Go json query, in another language
        {"query": "dump a config", "language": "python",
         "code": "def parse_json_config(config):\n    return json.loads(config)  # parse json config"},
        {"query": "count words", "language": "python", "code": "def count_words(text):\n    return len(text.split())"},
    ]
    lonely = [{"query": "sum a slice", "language": "rust", "code": "fn sum(xs: &[i32]) -> i32 {\n    xs.iter().sum()\n}"}]
    pairs = go + python + lonely
    unlabelled = [{k: v for k, v in p.items() if k != "language"} for p in pairs]
    assert mine_hard_negatives(unlabelled, "bm25")[0]["negative"] == python[0]["code"]  # all as one: across

    mined = mine_hard_negatives(pairs, "bm25")
    assert [p["query"] for p in mined] == [p["query"] for p in pairs]  # the order kept
    assert mined[0]["negative"] == go[1]["code"] and mined[1]["negative"] == go[0]["code"]
    assert mined[2]["negative"] == python[1]["code"] and mined[3]["negative"] == python[0]["code"]
    assert mined[4]["negative"] in {p["code"] for p in go + python}  # the only one of its language: any other


def test_written_negatives_come_from_the_same_split(built):
    out, _ = built
    for name in ("pairs-train.jsonl", "pairs-valid.jsonl"):
        pairs = read_jsonl(out / name)
        codes = {p["code"] for p in pairs}
        assert all(p["negative"] in codes and p["negative"] != p["code"] for p in pairs)
        full = {p["code"]: p.get("code_full") for p in pairs}
        assert all(p.get("negative_full") == full[p["negative"]] for p in pairs)


@pytest.mark.parametrize(
    "docstring, sentence",
    [
        ("Return the sum.\n\nLonger text.", "Return the sum."),
        ("Compute the mean\nof the values. Then more.", "Compute the mean of the values."),
        ("Use :func:`os.walk` to list files, i.e. recursively.", "Use os.walk to list files, i.e. recursively."),
        ("{@link Parser} reads a {@code String} into tokens.", "Parser reads a String into tokens."),
        (":param x: the value\n:returns: nothing", ""),
        ("Summary line\nArgs:\n    x: value", "Summary line"),
    ],
)
def test_first_sentence(docstring, sentence):
    assert first_sentence(docstring) == sentence


@pytest.mark.parametrize("query, name, expected", [
    ("kobject_synth_uevent - send synthetic uevent with arguments", "kobject_synth_uevent", "send synthetic uevent with arguments"),
    ("sysfs_remove_file() - remove an attribute file.", "sysfs_remove_file", "remove an attribute file."),
    ("Reverse returns the string reversed.", "strutil.Reverse", "Reverse returns the string reversed."),
    ("read_all - the rest", "read", "read_all - the rest"),
])
def test_kernel_doc_name_prefix_is_dropped(query, name, expected):
    assert without_name_prefix(query, name) == expected


@pytest.mark.parametrize(
    "query, name, reason",
    [
        ("TODO: write this function properly.", "f", "boilerplate_query"),
        ("Helper.", "helper", "short_query"),
        ("Get the value.", "get_value", "name_only_query"),
        ("======== Parsing helper methods ========", "parse", "boilerplate_query"),
        ("add_argument(dest, ..., name=value)", "add_argument", "signature_query"),
        ("Return the number of lines in a file.", "count_lines", None),
    ],
)
def test_trivial_queries(query, name, reason):
    assert trivial_query(query, name, DataConfig()) == reason


def test_pinned_validation_repositories_stay_put_as_the_corpus_grows():
    pairs = [{"repo": f"r{i % 20}", "code": str(i)} for i in range(400)]
    train, valid, valid_repos = split_by_repository(pairs, 0.25, seed=3, pinned=["r3", "r7", "gone"])
    assert valid_repos == ["r3", "r7"]
    assert {p["repo"] for p in valid} == {"r3", "r7"} and len(valid) == 40
    grown = pairs + [{"repo": f"new{i}", "code": f"n{i}"} for i in range(200)]
    assert split_by_repository(grown, 0.25, seed=3, pinned=["r3", "r7"])[2] == valid_repos
    with pytest.raises(CodesearchError, match="valid_repos"):
        split_by_repository(pairs, 0.25, seed=3, pinned=["gone"])
