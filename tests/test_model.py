"""The model folder contract and ONNX Runtime embedding, on a tiny model exported by the trainer."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from codesearch.chunking import docstring_as_line
from codesearch.errors import CodesearchError
from codesearch.model import Encoder, ModelFolder, pad_batch, token_windows


def test_short_text_is_one_window():
    assert token_windows([1, 2, 3], max_length=8, overlap=2) == [[1, 2, 3]]


def test_long_text_windows_overlap_and_cover_the_end():
    ids = list(range(20))
    windows = token_windows(ids, max_length=8, overlap=2)
    assert all(len(w) == 8 for w in windows)
    assert windows[0] == list(range(8))
    assert windows[1][:2] == windows[0][-2:]  # consecutive windows share `overlap` tokens
    assert windows[-1][-1] == 19  # the end of a long function is embedded
    assert set(ids) == {t for w in windows for t in w}


def test_pad_batch_right_pads_with_mask():
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_token_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_contract_is_read(tiny_model):
    folder = ModelFolder.read(tiny_model)
    meta = json.loads((tiny_model / "codesearch.json").read_text())
    assert folder.dimension == meta["dimension"]
    assert folder.max_length == meta["max_length"]


def test_embeddings_are_normalised_and_do_not_depend_on_batch_padding(tiny_model):
    encoder = Encoder(ModelFolder.read(tiny_model), threads=1)
    texts = ["def f(): pass", "def parse_json(text):\n    return json.loads(text)\n" * 3, "x = 1"]
    together = np.concatenate(encoder.embed_texts(texts, kind="code"))
    alone = np.concatenate([encoder.embed_texts([t], kind="code")[0] for t in texts])
    assert together.shape == (3, encoder.dimension)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_long_code_gets_several_windows(tiny_model):
    encoder = Encoder(ModelFolder.read(tiny_model), threads=1)
    long_code = "def long():\n" + "    value = compute(value, step)\n" * 200
    (vectors,) = encoder.embed_texts([long_code], kind="code", overlap=16)
    assert vectors.shape[0] > 1
    assert encoder.embed_texts([long_code], kind="code", max_windows=1)[0].shape[0] == 1
    assert encoder.embed_query(long_code).shape == (encoder.dimension,)


def test_missing_files_and_bad_contract_are_clear_errors(tiny_model, tmp_path):
    with pytest.raises(CodesearchError, match="has no model.onnx"):
        ModelFolder.read(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / "codesearch.json").write_text('{"format": 1}')
    with pytest.raises(CodesearchError, match="bad codesearch.json"):
        ModelFolder.read(broken)
    (broken / "codesearch.json").write_text('{"format": 99}')
    with pytest.raises(CodesearchError, match="format 99"):
        ModelFolder.read(broken)
    shutil.copy(tiny_model / "codesearch.json", broken / "codesearch.json")
    (broken / "model.onnx").write_bytes(b"not a graph")
    with pytest.raises(CodesearchError, match="cannot load model.onnx"):
        Encoder(ModelFolder.read(broken))


def _with_query_tower(folder: Path, tower: Path, name: str = "query.onnx") -> ModelFolder:
    """`folder` with `tower`'s graph as its query tower, named in the contract."""
    shutil.copy(tower / "model.onnx", folder / name)
    meta = json.loads((folder / "codesearch.json").read_text())
    (folder / "codesearch.json").write_text(json.dumps({**meta, "query_model": name}))
    return ModelFolder.read(folder)


def test_a_query_tower_embeds_queries_and_model_onnx_the_code(tiny_model, other_model, tmp_path):
    # tiny-b's graph as tiny-a's query tower (the two tokenizers are the same BPE of the same texts)
    assert (tiny_model / "tokenizer.json").read_bytes() == (other_model / "tokenizer.json").read_bytes()
    folder = _with_query_tower(shutil.copytree(tiny_model, tmp_path / "dual"), other_model)
    assert folder.query_model == "query.onnx"
    dual, code_tower, query_tower = (Encoder(ModelFolder.read(p), threads=1)
                                     for p in (folder.path, tiny_model, other_model))
    text = "parse a json file"
    np.testing.assert_allclose(dual.embed_query(text), query_tower.embed_query(text), atol=1e-6)
    np.testing.assert_allclose(dual.embed_texts([text], kind="query")[0], query_tower.embed_texts([text], kind="query")[0],
                               atol=1e-6)
    np.testing.assert_allclose(dual.embed_texts([text], kind="code")[0], code_tower.embed_texts([text], kind="code")[0],
                               atol=1e-6)
    assert not np.allclose(dual.embed_query(text), code_tower.embed_query(text), atol=1e-3)
    # written back as read
    folder.write()
    assert json.loads((folder.path / "codesearch.json").read_text())["query_model"] == "query.onnx"
    assert "query_model" not in json.loads((tiny_model / "codesearch.json").read_text())


def test_a_missing_or_bad_query_tower_is_a_clear_error(tiny_model, tmp_path):
    folder = _with_query_tower(shutil.copytree(tiny_model, tmp_path / "dual"), tiny_model)
    (folder.path / "query.onnx").unlink()
    with pytest.raises(CodesearchError, match="has no query.onnx"):
        ModelFolder.read(folder.path)
    for name in ("../model.onnx", "sub/query.onnx", 3):
        meta = json.loads((folder.path / "codesearch.json").read_text())
        (folder.path / "codesearch.json").write_text(json.dumps({**meta, "query_model": name}))
        with pytest.raises(CodesearchError, match="bad codesearch.json: query_model must be a file name"):
            ModelFolder.read(folder.path)
    (folder.path / "query.onnx").write_bytes(b"not a graph")
    meta = json.loads((folder.path / "codesearch.json").read_text())
    (folder.path / "codesearch.json").write_text(json.dumps({**meta, "query_model": "query.onnx"}))
    with pytest.raises(CodesearchError, match="cannot load query.onnx"):
        Encoder(ModelFolder.read(folder.path))


def test_cuda_asked_for_without_provider_is_a_clear_error(tiny_model):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has CUDA")
    with pytest.raises(CodesearchError, match="no CUDA provider"):
        Encoder(ModelFolder.read(tiny_model), device="cuda")


def test_onnx_runtime_telemetry_stays_off(tiny_model, tmp_path):
    # ONNX Runtime 1.29+ would write a device id and an event database under $XDG_CACHE_HOME (else
    # ~/.cache)/Microsoft and upload them; a codesearch process opts out before onnxruntime starts,
    # whatever its environment. The cache folder is set here: CI machines may set their own.
    repo = shutil.copytree(Path(__file__).parent / "fixtures" / "sample_repo", tmp_path / "repo")
    ci_names = {"CI", "TF_BUILD", "GITHUB_ACTIONS", "GITLAB_CI", "CIRCLECI", "TRAVIS", "JENKINS_URL",
                "CODEBUILD_BUILD_ID", "BUILDKITE", "TEAMCITY_VERSION", "APPVEYOR", "BITBUCKET_BUILD_NUMBER"}
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY" and k not in ci_names}
    cache = tmp_path / "cache"
    env.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(cache), CODESEARCH_MODEL=str(tiny_model),
               CODESEARCH_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "codesearch", "index", str(repo), "--yes"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not (cache / "Microsoft").exists()
    assert not (tmp_path / "home" / ".cache" / "Microsoft").exists()
    # The check can fail: onnxruntime 1.29+ left to itself does write there (the probe waits for it,
    # in case a build writes from a background thread).
    import onnxruntime

    if tuple(int(x) for x in onnxruntime.__version__.split(".")[:2]) >= (1, 29):
        probe = ("import onnxruntime as o, os, sys, time\n"
                 "o.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])\n"
                 "end = time.monotonic() + 10\n"
                 "while not os.path.isdir(sys.argv[2]) and time.monotonic() < end:\n"
                 "    time.sleep(0.05)\n")
        subprocess.run([sys.executable, "-c", probe, str(tiny_model / "model.onnx"), str(cache / "Microsoft")],
                       env=env, check=True, timeout=120)
        assert (cache / "Microsoft").exists()


def _with_code_view(folder: Path, view: object = "docstring-line") -> Path:
    meta = json.loads((folder / "codesearch.json").read_text())
    (folder / "codesearch.json").write_text(json.dumps({**meta, "code_view": view}))
    return folder


def test_the_docstring_line_view_shows_python_docstrings_as_one_plain_line(tiny_model, tmp_path):
    folder = ModelFolder.read(_with_code_view(shutil.copytree(tiny_model, tmp_path / "view")))
    assert folder.code_view == "docstring-line"
    viewed, plain = Encoder(folder, threads=1), Encoder(ModelFolder.read(tiny_model), threads=1)
    python = 'def load(path):\n    """Read a JSON file.\n\n    Returns a dict.\n    """\n    return json.load(open(path))'
    js = "function load(path) {\n  'use strict';\n  return JSON.parse(read(path));\n}"
    as_line = docstring_as_line(python)
    assert as_line == "def load(path):\n    Read a JSON file. Returns a dict.\n    return json.load(open(path))"

    def same(a, b):
        np.testing.assert_allclose(np.concatenate(a), np.concatenate(b), atol=1e-6)

    same(viewed.embed_texts([python, js], kind="code", languages=["python", "javascript"]),
         plain.embed_texts([as_line, js], kind="code"))
    same(viewed.embed_texts([python, js], kind="code"), plain.embed_texts([as_line, js], kind="code"))  # guessed
    same(viewed.embed_texts([python], kind="code", languages=["go"]), plain.embed_texts([python], kind="code"))
    same(viewed.embed_texts([python], kind="query"), plain.embed_texts([python], kind="query"))  # code only
    assert not np.allclose(plain.embed_texts([python], kind="code")[0], plain.embed_texts([as_line], kind="code")[0])
    folder.write()
    assert json.loads((folder.path / "codesearch.json").read_text())["code_view"] == "docstring-line"
    assert "code_view" not in json.loads((tiny_model / "codesearch.json").read_text())


def test_an_unknown_code_view_is_a_clear_error(tiny_model, tmp_path):
    folder = _with_code_view(shutil.copytree(tiny_model, tmp_path / "view"), "summaries")
    with pytest.raises(CodesearchError, match="bad codesearch.json: code_view 'summaries' is not one this codesearch"):
        ModelFolder.read(folder)
