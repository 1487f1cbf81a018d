"""`python -m trainer import`: a tiny real BERT folder (safetensors, WordPiece, sentence-transformers
pipeline files) becomes a model folder that the engine reads, indexes with and searches, and whose
vectors are the transformers model's own, pooled as the folder says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from codesearch.config import Settings
from codesearch.indexer import build_index
from codesearch.model import Encoder, ModelFolder
from codesearch.search import Index
from tiny_bert import FIXED_LENGTH, MAX_SEQ_LENGTH, make_tiny_bert
from trainer.__main__ import main
from trainer.hf_import import import_model
from trainer.tiny import CODE_TEXTS, QUERY_TEXTS

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("bert") / "tiny-bert")


@pytest.fixture(scope="module")
def imported(bert, tmp_path_factory):
    """The tiny BERT imported in fp32: (model folder, parity figures)."""
    return import_model(bert, tmp_path_factory.mktemp("models") / "tiny-bert-cs")


def transformers_vectors(src: Path, texts: list[str], pooling: str, max_length: int) -> np.ndarray:
    """The reference, apart from the import's code: transformers' own model (default attention), each
    text alone with its full [CLS] ... [SEP] row up to max_length, pooled by hand, normalised."""
    from tokenizers import Tokenizer
    from transformers import BertModel

    model = BertModel.from_pretrained(str(src), local_files_only=True, use_safetensors=True).eval()
    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    out = []
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([tok.encode(text).ids[:max_length]])
            hidden = model(input_ids=ids).last_hidden_state[0]  # (T, H)
            v = hidden[0] if pooling == "cls" else hidden.mean(0)
            out.append((v / v.norm()).numpy())
    return np.stack(out)


def test_import_writes_the_contract_the_engine_reads(imported, bert):
    folder, figures = imported
    read = ModelFolder.read(folder.path)
    assert (read.dimension, read.max_length, read.pooling, read.pad_token_id) == (32, MAX_SEQ_LENGTH, "mean", 0)
    assert (read.query_prefix, read.code_prefix, read.hybrid_weight, read.query_model) == ("", "", 1.0, "")
    assert read.model_id.startswith("tiny-bert-cs-") and len(read.model_id) == len("tiny-bert-cs-") + 10
    tokenizer = json.loads((folder.path / "tokenizer.json").read_text())
    assert tokenizer["truncation"] is None and tokenizer["padding"] is None  # the source fixed both at 16
    assert figures["fp32 vs PyTorch"] >= 0.9999
    card = (folder.path / "MODEL_CARD.md").read_text()
    assert "worst cosine fp32 vs PyTorch: " in card and "TODO" in card and "hybrid_weight" in card
    assert sorted(p.name for p in folder.path.iterdir()) == ["MODEL_CARD.md", "codesearch.json", "model.onnx",
                                                            "tokenizer.json"]
    assert not folder.path.with_name(folder.path.name + ".partial").exists()


def test_engine_vectors_are_the_transformers_models_mean_pooled(imported, bert):
    folder, _ = imported
    texts = list(QUERY_TEXTS[:4] + CODE_TEXTS)  # the long codes run past 16 tokens and past 48 (windows)
    engine = Encoder(ModelFolder.read(folder.path), device="cpu", threads=1)
    assert max(len(ids) for ids in engine.tokenize(texts, "")) > MAX_SEQ_LENGTH > FIXED_LENGTH
    got = np.stack([windows[0] for windows in engine.embed_texts(texts, kind="code")])  # each text's first window
    want = transformers_vectors(bert, texts, "mean", MAX_SEQ_LENGTH)
    assert (got * want).sum(1).min() >= 0.9999


def test_cls_pooling_is_read_from_the_pooling_config(tmp_path):
    src = make_tiny_bert(tmp_path / "cls-bert", pooling="cls", seed=1)
    folder, _ = import_model(src, tmp_path / "cls-model", max_length=32)
    assert (folder.pooling, folder.max_length) == ("cls", 32)
    texts = list(CODE_TEXTS[:3])
    got = np.stack([w[0] for w in Encoder(folder, device="cpu", threads=1).embed_texts(texts, kind="code")])
    assert (got * transformers_vectors(src, texts, "cls", 32)).sum(1).min() >= 0.9999


def test_imported_model_indexes_and_answers_a_query(imported, tmp_path):
    folder, _ = imported
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "jsonio.py").write_text(CODE_TEXTS[0] + "\n\n" + CODE_TEXTS[1])
    (repo / "fib.py").write_text(CODE_TEXTS[4])
    (repo / "debounce.js").write_text(CODE_TEXTS[6])
    settings = Settings(model=str(folder.path), threads=1)
    build_index(repo, settings)
    index = Index.open(repo, settings)
    # The tiny model's vectors carry no meaning, but a query that is a function's own text has cosine 1 to it.
    hits = index.search(CODE_TEXTS[4], k=3, mode="semantic")
    assert hits[0].path == "fib.py" and hits[0].score == pytest.approx(1.0, abs=1e-4)
    names = {h.name for h in index.search("json", k=4, mode="hybrid")}
    assert {"read_json", "write_json"} <= names


def test_int8_import_through_the_cli_reports_its_worst_cosine(bert, tmp_path):
    out = tmp_path / "int8-model"
    done = subprocess.run([sys.executable, "-m", "trainer", "import", str(bert), "--out", str(out), "--int8"],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                          timeout=300)
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stderr.splitlines() if "worst cosine int8 vs fp32 ONNX" in line)
    assert float(line.rsplit(":", 1)[1]) >= 0.99
    assert "worst cosine int8 vs fp32 ONNX" in (out / "MODEL_CARD.md").read_text()
    read = ModelFolder.read(out)
    vectors = Encoder(read, device="cpu", threads=1).embed_texts(list(QUERY_TEXTS[:2]), kind="query")
    assert all(np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4) for v in vectors)


def _no_safetensors(src: Path, tmp: Path) -> list[str]:
    bad = tmp / "pickled"
    bad.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (bad / name).write_bytes((src / name).read_bytes())
    (bad / "pytorch_model.bin").write_bytes(b"not loaded")
    return ["import", str(bad), "--out", str(tmp / "out")]


def _dense_module(src: Path, tmp: Path) -> list[str]:
    bad = tmp / "dense"
    bad.mkdir()
    for file in src.rglob("*"):
        if file.is_file():
            (bad / file.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            (bad / file.relative_to(src)).write_bytes(file.read_bytes())
    modules = json.loads((bad / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (bad / "modules.json").write_text(json.dumps(modules))
    return ["import", str(bad), "--out", str(tmp / "out")]


def _max_pooling(src: Path, tmp: Path) -> list[str]:
    argv = _dense_module(src, tmp)
    bad = Path(argv[1])
    (bad / "modules.json").unlink()
    (bad / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_max_tokens": True}))
    return argv


def _user_folder(src: Path, tmp: Path) -> list[str]:
    (tmp / "mine").mkdir()
    (tmp / "mine" / "notes.txt").write_text("keep me")
    return ["import", str(src), "--out", str(tmp / "mine")]


@pytest.mark.parametrize("make_argv, message", [
    (lambda src, tmp: ["import", "--out", str(tmp / "out")], "import: name the folder"),
    (lambda src, tmp: ["import", str(src)], "import: --out DIR is required"),
    (lambda src, tmp: ["import", str(tmp / "absent"), "--out", str(tmp / "out")], "is not a folder"),
    (_no_safetensors, "has no model.safetensors (pytorch_model.bin is a pickle: it is never loaded)"),
    (_dense_module, "has a Dense module in modules.json: not supported"),
    (_max_pooling, "asks for pooling pooling_mode_max_tokens"),
    (lambda src, tmp: ["import", str(src), "--out", str(tmp / "out"), "--max-length", "65"], "outside 1 to 64"),
    (lambda src, tmp: ["import", str(src), "--out", str(tmp / "out"), "--max-length", "0"], "at least 1"),
    (lambda src, tmp: ["import", str(src), "--out", str(src)], "would replace the folder being imported"),
    (_user_folder, "is not a codesearch model folder: choose another --out"),
    (lambda src, tmp: ["pretrain", str(src)], "pretrain: unexpected argument"),
])
def test_bad_input_is_one_line_and_exit_2(bert, tmp_path, capsys, make_argv, message):
    assert main(make_argv(bert, tmp_path)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    if (tmp_path / "mine").exists():
        assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
