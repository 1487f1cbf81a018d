"""Incremental indexing on a real repository copy, a real tiny model and a real LanceDB."""

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest

from codesearch.chunking import docstring_as_line
from codesearch.errors import CodesearchError
from codesearch.indexer import build_index
from codesearch.model import Encoder, ModelFolder
from codesearch.search import Index

LANGS = {"python", "javascript", "typescript", "go", "java", "ruby", "php", "rust", "c", "cpp", "csharp"}


def _rows(repo, settings):
    """The index's chunk rows as comparable tuples."""
    table = Index.open(repo, settings).store.chunks.to_arrow()
    cols = ["id", "path", "name", "start_line", "content_hash", "window"]
    return sorted(zip(*(table[c].to_pylist() for c in cols)))


def test_first_index_covers_every_language(repo, settings):
    report = build_index(repo, settings)
    assert report.files == 12 and report.files_changed == 12
    assert report.chunks == report.chunks_embedded + report.chunks_reused > 20
    status = Index.open(repo, settings).status()
    assert set(status.languages) == LANGS
    assert status.complete and status.stale_files == 0
    names = {row[2] for row in _rows(repo, settings)}
    assert {"parse_json", "ConfigLoader.load", "LRUCache.get", "Stack.Push", "Graph.bfs", "Validator.validateEmail"} <= names
    assert (repo / ".codesearch").stat().st_mode & 0o777 == 0o700


def test_no_change_rerun_reads_nothing(repo, settings):
    build_index(repo, settings)
    again = build_index(repo, settings)
    assert (again.files_read, again.files_changed, again.chunks_embedded) == (0, 0, 0)


def test_touched_file_is_read_but_not_rewritten(repo, settings):
    build_index(repo, settings)
    os.utime(repo / "py" / "retry.py", ns=(1, 1))
    again = build_index(repo, settings)
    assert (again.files_read, again.files_changed, again.chunks_embedded) == (1, 0, 0)
    assert build_index(repo, settings).files_read == 0  # the new mtime was recorded


def test_edit_embeds_only_the_changed_function(repo, settings):
    build_index(repo, settings)
    path = repo / "py" / "jsonutil.py"
    path.write_text(path.read_text().replace("sort_keys=True", "sort_keys=False"))
    again = build_index(repo, settings)
    assert again.files_changed == 1
    assert again.chunks_embedded == 1  # dump_json; the other functions of the file keep their vectors
    hits = Index.open(repo, settings).search("dump_json", 3, mode="lexical")
    assert "sort_keys=False" in hits[0].code


def test_renamed_file_is_not_re_embedded_and_old_rows_go(repo, settings):
    build_index(repo, settings)
    shutil.move(repo / "py" / "retry.py", repo / "py" / "backoff.py")
    again = build_index(repo, settings)
    # only the file's summary chunk, which names the path, is new; its functions keep their vectors
    assert again.chunks_embedded == 1 and again.files_deleted == 1
    paths = {row[1] for row in _rows(repo, settings)}
    assert "py/backoff.py" in paths and "py/retry.py" not in paths


def test_deleted_file_rows_disappear(repo, settings):
    build_index(repo, settings)
    (repo / "go" / "stack.go").unlink()
    again = build_index(repo, settings)
    assert again.files_deleted == 1
    assert not [r for r in _rows(repo, settings) if r[1] == "go/stack.go"]


def test_model_change_rebuilds_with_a_message(repo, settings, other_model):
    build_index(repo, settings)
    changed = dataclasses.replace(settings, model=str(other_model))
    report = build_index(repo, changed)
    assert "model changed" in report.rebuilt and "rebuilding" in report.rebuilt
    assert report.chunks_embedded == report.chunks
    with pytest.raises(CodesearchError, match="built with model"):
        Index.open(repo, settings).search("parse json", mode="semantic")


def test_interrupted_index_stays_queryable_and_next_run_finishes(repo, settings):
    build_index(repo, settings)
    clean = _rows(repo, settings)
    for path in sorted(repo.rglob("*.*")):
        if ".codesearch" not in path.parts:
            path.write_text(path.read_text() + "\n")  # every file changes, no function does

    def interrupt(stage, done, total):
        if stage == "embedding" and done < total:
            raise KeyboardInterrupt

    (repo / "py" / "retry.py").write_text((repo / "py" / "retry.py").read_text().replace("5", "6"))
    with pytest.raises(KeyboardInterrupt):
        build_index(repo, settings, progress=interrupt, batch_chunks=4)
    index = Index.open(repo, settings)
    assert not index.status().complete
    assert index.search("parse json", 3, mode="lexical")  # the old rows still answer
    finished = build_index(repo, settings)
    assert finished.files_changed > 0
    after = _rows(repo, settings)
    shutil.rmtree(repo / ".codesearch")
    build_index(repo, settings)
    assert _rows(repo, settings) == after  # the resumed index equals a clean build
    assert len(after) == len(clean)


def test_long_function_is_windowed_and_its_end_is_findable(repo, settings):
    body = "".join(f"    step_{i} = transform(step_{i - 1})\n" for i in range(1, 300))
    (repo / "py" / "long.py").write_text(
        "def very_long_pipeline(step_0):\n" + body + "    return finalize_checksum_digest(step_299)\n"
    )
    report = build_index(repo, settings)
    assert report.windows_embedded > report.chunks_embedded
    rows = [r for r in _rows(repo, settings) if r[2] == "very_long_pipeline"]
    assert len(rows) > 1
    index = Index.open(repo, settings)
    hits = index.similar("    return finalize_checksum_digest(step_299)\n", 50)
    assert [h.name for h in hits].count("very_long_pipeline") == 1  # its windows come back as one hit
    # The last window holds the function's last tokens, so its end is searchable.
    encoder = index.encoder
    chunk_id = hits[[h.name for h in hits].index("very_long_pipeline")].chunk_id
    stored = index.store.vectors_of_chunk(chunk_id)
    ids = encoder.tokenize([hits[0].code if hits[0].chunk_id == chunk_id else _code_of(hits, chunk_id)], "")[0]
    np.testing.assert_allclose(stored[-1], encoder.embed_ids([ids[-encoder.folder.max_length :]])[0], atol=1e-5)


def _code_of(hits, chunk_id):
    return next(h.code for h in hits if h.chunk_id == chunk_id)


def test_unknown_language_in_settings_is_an_error(repo, settings):
    with pytest.raises(CodesearchError, match="unknown language 'cobol'"):
        build_index(repo, dataclasses.replace(settings, languages=("cobol",)))


def test_second_writer_is_refused(repo, settings):
    from codesearch.indexer import writer_lock

    with writer_lock(repo / ".codesearch"):
        with pytest.raises(CodesearchError, match="another codesearch process"):
            build_index(repo, settings)


# --- update_files: the daemon's path, a few named files at a time ----------------------------------


def test_update_files_reads_only_the_named_files_and_matches_a_full_run(repo, settings):
    from codesearch.indexer import update_files

    build_index(repo, settings)
    path = repo / "py" / "jsonutil.py"
    path.write_text(path.read_text() + "\n\ndef fresh_marker():\n    return 1\n")
    (repo / "go" / "stack.go").unlink()
    os.utime(repo / "rb" / "slug.rb", ns=(1, 1))  # not named: left alone
    report = update_files(repo, settings, ["py/jsonutil.py", "go/stack.go"])
    # the changed function and the file's summary chunk, which shows it
    assert (report.files_read, report.files_changed, report.files_deleted, report.chunks_embedded) == (1, 1, 1, 2)
    names = {row[2] for row in _rows(repo, settings)}
    assert "fresh_marker" in names and "Stack.Push" not in names
    after = _rows(repo, settings)
    assert build_index(repo, settings).files_read == 1  # slug.rb, whose new mtime no one reported
    assert _rows(repo, settings) == after


def test_update_files_drops_ignored_files_and_deleted_directories(repo, settings):
    from codesearch.indexer import update_files

    build_index(repo, settings)
    ignoring = dataclasses.replace(settings, ignore=("py/retry.py",))
    report = update_files(repo, ignoring, ["py/retry.py"])
    assert report.skipped == {"ignored": 1} and report.files_deleted == 1
    shutil.rmtree(repo / "ts")
    assert update_files(repo, settings, ["ts"]).files_deleted == 1
    paths = {row[1] for row in _rows(repo, settings)}
    assert "py/retry.py" not in paths and not any(p.startswith("ts/") for p in paths)
    assert Index.open(repo, settings).status().complete


def test_update_files_builds_a_missing_index_in_full(repo, settings):
    from codesearch.indexer import update_files

    report = update_files(repo, settings, ["py/retry.py"])
    assert report.files == 12 and report.files_changed == 12
    shutil.copytree(repo / "py", repo / "py2")
    assert update_files(repo, settings, ["py2"]).files_changed == 2  # a directory moved in is walked


def test_a_model_with_a_code_view_indexes_python_docstrings_as_one_line(repo, settings, tiny_model, tmp_path):
    folder = shutil.copytree(tiny_model, tmp_path / "viewed")
    meta = json.loads((folder / "codesearch.json").read_text())
    (folder / "codesearch.json").write_text(json.dumps({**meta, "model_id": "viewed", "code_view": "docstring-line"}))
    viewed = dataclasses.replace(settings, model=str(folder))
    build_index(repo, viewed)
    index = Index.open(repo, viewed)
    plain = Encoder(ModelFolder.read(tiny_model), threads=1)
    for name, language in (("parse_json", "python"), ("Stack.Push", "go")):
        (hit,) = [h for h in index.search(name.split(".")[-1], 20, mode="lexical") if h.name == name]
        assert hit.language == language
        shown = docstring_as_line(hit.code) if language == "python" else hit.code
        assert (shown != hit.code) == (language == "python")  # parse_json has a docstring
        np.testing.assert_allclose(index.store.vectors_of_chunk(hit.chunk_id)[0],
                                   plain.embed_texts([shown], kind="code")[0][0], atol=1e-5)
