"""`codesearch clones` as CI meets it: formats parsed back, exit codes, --changed-since on a real git
repository, baselines, and one-line errors. The tiny random model needs --min-similarity STRICT
(see test_clones.py), so the groups here are the planted exact, renamed and edited copies."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from codesearch.cli import main

CLONES_REPO = Path(__file__).parent / "fixtures" / "clones_repo"
STRICT = "0.99"
PLANTED = 12  # exact, renamed and edited copies (hashing and token overlap): 3 per language


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo), *args],
                   check=True, capture_output=True)


@pytest.fixture
def clones_repo(tmp_path, run, monkeypatch):
    """The planted fixture as a git repository with one commit, indexed, as the current directory."""
    repo = tmp_path / "repo"
    shutil.copytree(CLONES_REPO, repo)
    (repo / ".gitignore").write_text(".codesearch/\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "planted clones")
    code, _, err = run("index", str(repo))
    assert code == 0, err
    monkeypatch.chdir(repo)
    return repo


def clones_json(run, *argv) -> tuple[int, dict]:
    code, out, err = run("clones", "--min-similarity", STRICT, "--format", "json", *argv)
    assert code in (0, 1), err
    return code, json.loads(out)


def test_table_lists_each_member_path_line_first(clones_repo, run):
    code, out, err = run("clones", "--min-similarity", STRICT)
    assert code == 0 and err == ""
    rows = out.splitlines()
    assert rows[0].split()[:2] == ["group", "location"]
    assert rows[1].split()[:3] == ["1", "go/billing/copies.go:10-18", "TotalPrice"]
    assert rows[2].split()[:2] == ["go/original.go:14-22", "TotalPrice"]
    assert f"{PLANTED} clone groups among 43 functions" in rows[-1]


def test_json_is_one_stable_object(clones_repo, run):
    code, data = clones_json(run)
    assert code == 0 and data["version"] == 1
    assert data["summary"]["groups"] == len(data["groups"]) == PLANTED
    group = data["groups"][0]
    assert group.keys() == {"fingerprint", "type", "similarity", "members"}
    assert group["members"][0].keys() == {"path", "start_line", "end_line", "name", "kind", "language", "content_hash"}
    assert {g["type"] for g in data["groups"]} == {"exact", "renamed", "edited"}
    assert data["options"]["min_overlap"] == 0.6


def check_sarif(log: dict) -> None:
    """The properties SARIF 2.1.0 requires (sarif-schema-2.1.0.json's "required" lists, checked by hand:
    the schema cannot be fetched here), and what GitHub code scanning needs to place an alert."""
    assert log["version"] == "2.1.0" and isinstance(log["runs"], list)
    for run_ in log["runs"]:
        driver = run_["tool"]["driver"]
        assert isinstance(driver["name"], str)
        rule_ids = [rule["id"] for rule in driver.get("rules", [])]
        for result in run_["results"]:
            assert isinstance(result["message"]["text"], str)
            assert result["ruleId"] in rule_ids and rule_ids[result["ruleIndex"]] == result["ruleId"]
            assert result["level"] in ("none", "note", "warning", "error")
            assert len(result["locations"]) == 1
            ids = []
            for location in result["locations"] + result["relatedLocations"]:
                physical = location["physicalLocation"]
                assert physical["artifactLocation"]["uri"] and not physical["artifactLocation"]["uri"].startswith("/")
                region = physical["region"]
                assert 1 <= region["startLine"] <= region["endLine"]
                if "id" in location:
                    assert isinstance(location["id"], int) and location["id"] >= 0
                    ids.append(location["id"])
            assert len(ids) == len(set(ids)) == len(result["relatedLocations"])
            for fingerprint in result["partialFingerprints"].values():
                assert isinstance(fingerprint, str)


def test_sarif_has_one_result_per_group_with_the_other_members_related(clones_repo, run):
    code, out, err = run("clones", "--min-similarity", STRICT, "--format", "sarif")
    log = json.loads(out)
    check_sarif(log)
    results = log["runs"][0]["results"]
    assert len(results) == PLANTED
    first = results[0]
    assert first["ruleId"] == "codesearch/duplicate-code" and first["level"] == "warning"
    assert first["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "go/billing/copies.go"
    assert first["relatedLocations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "go/original.go"
    assert "[TotalPrice](1)" in first["message"]["text"]
    assert len({r["partialFingerprints"]["cloneGroup/v1"] for r in results}) == PLANTED


def test_markdown_and_output_file(clones_repo, run):
    code, out, err = run("clones", "--min-similarity", STRICT, "--format", "markdown", "--output", "clones.md")
    assert code == 0 and out == "" and f"{PLANTED} clone groups written to clones.md" in err
    text = (clones_repo / "clones.md").read_text()
    assert text.startswith(f"### codesearch clones: {PLANTED} clone groups")
    assert "edited copy" in text
    assert "| `go/original.go:14` | `TotalPrice` | 9 |" in text


@pytest.mark.parametrize("fail_on, code", [("0", 1), ("11", 1), ("12", 0), ("100", 0)])
def test_fail_on_exits_1_when_more_groups_than_allowed(clones_repo, run, fail_on, code):
    assert run("clones", "--min-similarity", STRICT, "--fail-on", fail_on)[0] == code


def test_changed_since_reports_only_groups_touched_since_the_revision(clones_repo, run):
    copies = clones_repo / "js" / "copies.js"
    copies.write_text(copies.read_text().replace("const tally = {};", "const tally = {}; // edited"))
    (clones_repo / "py" / "more.py").write_text(  # untracked: all of it counts as changed
        (clones_repo / "py" / "original.py").read_text().split("\n\n\ndef word_frequencies")[0] + "\n"
    )
    assert run("index", ".")[0] == 0
    code, data = clones_json(run, "--changed-since", "HEAD")
    groups = [{m["path"] for m in g["members"]} for g in data["groups"]]
    assert groups == [{"py/copies.py", "py/more.py", "py/original.py"}, {"js/copies.js", "js/original.js"}]
    assert data["summary"]["unchanged"] == PLANTED - 2


def test_a_baseline_accepts_known_groups_through_line_shifts(clones_repo, run):
    code, out, err = run("clones", "--min-similarity", STRICT, "--write-baseline", "clones-baseline.json")
    assert code == 0 and f"wrote {PLANTED} known groups" in err
    assert run("clones", "--min-similarity", STRICT, "--baseline", "clones-baseline.json", "--fail-on", "0")[0] == 0

    original = clones_repo / "go" / "original.go"
    original.write_text("// A new first line shifts every function below.\n\n" + original.read_text())
    rewritten = (clones_repo / "py" / "original.py").read_text().split("def even_squares")[1].split("\n\n\n")[0]
    (clones_repo / "py" / "evens.py").write_text("def evens_squared" + rewritten.replace("result", "out") + "\n")
    assert run("index", ".")[0] == 0
    code, data = clones_json(run, "--baseline", "clones-baseline.json", "--fail-on", "0")
    assert code == 1 and data["summary"]["baselined"] == PLANTED
    assert [[m["name"] for m in g["members"]] for g in data["groups"]] == [["evens_squared", "even_squares"]]


def test_no_index_is_an_error(tmp_path, run, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run("clones")
    assert code == 2 and out == "" and "no index" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--min-similarity", "1.5"], "--min-similarity must be in (0, 1]"),
        (["--min-lines", "0"], "--min-lines must be at least 1"),
        (["--min-overlap", "0"], "--min-overlap must be above 0 (above 1 turns it off)"),
        (["--fail-on", "-1"], "--fail-on must be 0 or more"),
        (["--changed-since", "no-such-rev"], "unknown git revision 'no-such-rev'"),
        (["--baseline", "missing.json"], "cannot read baseline missing.json"),
        (["nowhere/"], "no such file or directory: nowhere/"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(clones_repo, run, argv, message):
    code, out, err = run("clones", *argv)
    assert code == 2 and out == "" and message in err and len(err.splitlines()) == 1


def test_a_file_that_is_not_a_baseline(clones_repo, run):
    (clones_repo / "bad.json").write_text("[1, 2]")
    code, out, err = run("clones", "--baseline", "bad.json")
    assert code == 2 and "bad.json is not a codesearch clones baseline" in err


def test_min_overlap_above_1_turns_the_edited_copies_off(clones_repo, run):
    _, data = clones_json(run, "--min-overlap", "2")
    assert data["summary"]["groups"] == PLANTED - 4 and {g["type"] for g in data["groups"]} == {"exact", "renamed"}
