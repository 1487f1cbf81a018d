"""The model shipped in models/: found by default, loads, keeps its contract, ranks the obvious first.

A smoke test, not the evaluation (that is `python -m trainer eval`, figures in the model card).
"""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from codesearch.model import Encoder, ModelFolder, default_model_path, resolve_model

ROOT = Path(__file__).resolve().parent.parent

# Five tasks a user might search for, each with the one function that does it.
TASKS = {
    "read a json file": '''def load_config(path):
    with open(path) as f:
        return json.load(f)
''',
    "reverse a string": '''def reverse(text):
    return text[::-1]
''',
    "compute the md5 hash of a file": '''def file_md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(65536), b""):
            digest.update(block)
    return digest.hexdigest()
''',
    "sort a list of dictionaries by a key": '''def sort_records(records, key):
    return sorted(records, key=lambda record: record[key])
''',
    "send an http get request and retry on failure": '''def fetch(url, attempts=3):
    for attempt in range(attempts):
        try:
            return requests.get(url, timeout=10)
        except requests.RequestException:
            time.sleep(2 ** attempt)
    raise RuntimeError("gave up on " + url)
''',
}


@pytest.fixture(scope="module")
def shipped() -> ModelFolder:
    path = default_model_path()
    assert path is not None, "no default model in models/"
    return resolve_model("")


def test_the_default_model_is_the_one_in_models(shipped):
    assert shipped.path.resolve().parent in {(ROOT / "models").resolve(), *_installed_models()}
    for name in ("model.onnx", "tokenizer.json", "codesearch.json", "MODEL_CARD.md"):
        assert (shipped.path / name).is_file(), name
    size = sum(f.stat().st_size for f in shipped.path.iterdir() if f.is_file())
    assert size <= 40 * 1024 * 1024
    assert shipped.max_length >= 512


def test_it_embeds_to_its_stated_dimension(shipped):
    meta = json.loads((shipped.path / "codesearch.json").read_text())
    vectors = Encoder(shipped, threads=1).embed_texts(list(TASKS.values()), kind="code")
    assert all(v.shape == (1, meta["dimension"]) for v in vectors)
    assert np.allclose([np.linalg.norm(v[0]) for v in vectors], 1.0, atol=1e-3)


def test_it_ranks_the_obvious_function_first(shipped):
    # A smoke test of a small CPU-trained model (see its card): most tasks find their function first,
    # none ranks it below second. Random weights would put it first for one task in five.
    encoder = Encoder(shipped, threads=1)
    codes = np.stack([v[0] for v in encoder.embed_texts(list(TASKS.values()), kind="code")])
    ranks = []
    for i, query in enumerate(TASKS):
        scores = codes @ encoder.embed_query(query)
        ranks.append(int((scores > scores[i]).sum()) + 1)
    assert max(ranks) <= 2 and ranks.count(1) >= len(TASKS) - 1, dict(zip(TASKS, ranks))


def test_the_wheel_carries_the_model(tmp_path, shipped):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=600,
    )
    (wheel,) = tmp_path.glob("codesearch-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("model.onnx", "tokenizer.json", "codesearch.json", *filter(None, [shipped.query_model])):
        assert f"codesearch/models/{shipped.path.name}/{name}" in names


def _installed_models() -> set[Path]:
    import importlib.util

    spec = importlib.util.find_spec("codesearch.models")
    return {Path(p).resolve() for p in (spec.submodule_search_locations or [])} if spec else set()
