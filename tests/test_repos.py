"""Several repositories in one index: each row names its repository, `--repo` filters by it, and an
index made before the `repo` column keeps working and gains the column on its next update."""

from __future__ import annotations

import json
import shutil

from codesearch.search import Index
from codesearch.config import Settings


def _hits(out: str) -> list[dict]:
    return [row for row in map(json.loads, out.splitlines()) if row["type"] == "hit"]


def test_two_repositories_share_one_index_and_filter_by_name(run, repo, tmp_path, tiny_model):
    fork = tmp_path / "fork"
    shutil.copytree(repo, fork)
    (fork / "py" / "only_in_fork.py").write_text("def parse_json_fork(text):\n    return text\n", encoding="utf-8")
    shared = str(tmp_path / "shared-index")

    assert run("index", str(repo), "--index", shared, "--json")[0] == 0
    code, out, err = run("index", str(fork), "--index", shared, "--repo-name", "the-fork", "--json")
    assert code == 0, err
    report = json.loads(out)
    # the fork's copies reuse the original's vectors: its new function and that file's summary are new
    assert report["chunks_embedded"] == 2

    code, out, _ = run("status", str(repo), "--index", shared, "--json")
    repos = json.loads(out)["repos"]
    # one more function, and the summary chunk of the file that holds it
    assert code == 0 and set(repos) == {"repo", "the-fork"} and repos["the-fork"] == repos["repo"] + 2

    for name in ("repo", "the-fork"):
        code, out, _ = run("query", "parse json", "--root", str(repo), "--index", shared, "--repo", name, "--json", "-k", "50")
        assert code == 0 and {h["repo"] for h in _hits(out)} == {name}
    code, out, _ = run("query", "parse json", "--root", str(repo), "--index", shared, "--json", "-k", "50")
    assert {h["repo"] for h in _hits(out)} == {"repo", "the-fork"}
    code, out, _ = run("query", "parse json", "--root", str(repo), "--index", shared, "--repo", "nothing", "--json")
    assert code == 1 and _hits(out) == []

    # PATH:LINE names a function of the repository it is run from, though both have that path.
    found = _hits(run("query", "parse json", "--root", str(fork), "--index", shared, "--json", "-k", "50")[1])
    hit = next(h for h in found if h["path"] != "py/only_in_fork.py")
    for root, name in ((fork, "the-fork"), (repo, "repo")):
        settings = Settings(model=str(tiny_model), index_dir=shared, repo_name=name if root == fork else "")
        this, _ = Index.open(root, settings).similar_at(str(root / hit["path"]), hit["line"])
        assert (this.repo, this.path) == (name, hit["path"])

    # Re-indexing one repository after a deletion leaves the other's rows alone.
    (repo / "py" / "jsonutil.py").unlink()
    assert run("index", str(repo), "--index", shared)[0] == 0
    code, out, _ = run("query", "parse json", "--root", str(repo), "--index", shared, "--json", "-k", "100")
    paths = {(h["repo"], h["path"]) for h in _hits(out)}
    assert ("the-fork", "py/jsonutil.py") in paths and ("repo", "py/jsonutil.py") not in paths


def test_an_index_from_before_the_repo_column_keeps_working(run, repo, tiny_model):
    assert run("index", str(repo))[0] == 0
    store = Index.open(repo, Settings(model=str(tiny_model))).store
    for table in (store.chunks, store.files):  # what an index made by the previous version looks like
        table.drop_columns(["repo"])

    code, out, _ = run("query", "parse json", "--root", str(repo), "--json")
    assert code == 0 and _hits(out)[0]["repo"] == ""
    code, out, err = run("query", "parse json", "--root", str(repo), "--repo", "repo")
    assert code == 2 and "does not name repositories" in err and "codesearch index" in err

    code, out, err = run("index", str(repo), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["chunks_embedded"] == 0 and not report["rebuilt"]  # the column was added, nothing re-embedded
    code, out, _ = run("query", "parse json", "--root", str(repo), "--repo", "repo", "--json")
    assert code == 0 and {h["repo"] for h in _hits(out)} == {"repo"}


def test_a_moved_checkout_keeps_its_index_and_its_name(run, repo, tmp_path):
    code, out, _ = run("index", str(repo), "--json")
    first = json.loads(out)
    moved = tmp_path / "moved"
    shutil.copytree(repo, moved)  # the index comes along, inside the checkout
    code, out, err = run("index", str(moved), "--json")
    report = json.loads(out)
    assert code == 0, err
    assert report["chunks"] == first["chunks"] and report["chunks_embedded"] == 0
    code, out, _ = run("status", str(moved), "--json")
    assert json.loads(out)["repos"] == {"repo": first["chunks"]} and json.loads(out)["stale_files"] == 0
