"""ONNX export: the engine reads the folder and gets PyTorch's vectors at any batch and length."""

import numpy as np
import pytest
import torch

from codesearch.errors import CodesearchError
from codesearch.model import Encoder as EngineEncoder
from codesearch.model import ModelFolder, token_windows
from trainer.export import export_onnx
from trainer.model import tokenize_batch
from trainer.tiny import CODE_TEXTS, QUERY_TEXTS, make_tiny_model, tiny_encoder, tiny_tokenizer
from trainer.tokenizer import special_ids


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny PMA encoder, its tokenizer.json, and its exported fp32 folder."""
    root = tmp_path_factory.mktemp("export")
    tok = tiny_tokenizer(root / "tokenizer.json")
    encoder = tiny_encoder(tok, seed=3, dimension=24, pooling="pma")
    folder = export_onnx(
        encoder, root / "tokenizer.json", root / "model", model_id="t", max_length=48,
        query_prefix="query: ", code_prefix="code: ", card="# t",
    )
    return encoder, tok, root, folder


@pytest.mark.parametrize("texts", [CODE_TEXTS[:1], CODE_TEXTS[:5], QUERY_TEXTS + CODE_TEXTS])
def test_engine_matches_pytorch_at_other_batch_and_sequence_sizes(exported, texts):
    encoder, tok, _, folder = exported
    engine = EngineEncoder(ModelFolder.read(folder.path), device="cpu")
    got = np.concatenate(engine.embed_texts(list(texts), kind="code", overlap=8))  # long codes become windows
    rows = [w for ids in engine.tokenize(list(texts), "code: ") for w in token_windows(ids, 48, 8)]
    with torch.no_grad():
        want = torch.cat([encoder(torch.tensor([r]), torch.ones(1, len(r), dtype=torch.long)) for r in rows]).numpy()
    assert got.shape == want.shape == (len(rows), 24)
    assert (got * want).sum(1).min() >= 0.9999
    # And a padded batch straight through the session, longer than the export example.
    ids, mask = tokenize_batch(tok, list(texts), "code: ", 48, special_ids(tok)["pad"])
    out = engine.session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(out, encoder(ids, mask).numpy(), atol=1e-5)


def test_folder_contract(exported):
    _, tok, _, folder = exported
    read = ModelFolder.read(folder.path)
    assert (read.dimension, read.max_length, read.pooling) == (24, 48, "pma")
    assert (read.query_prefix, read.code_prefix, read.pad_token_id) == ("query: ", "code: ", special_ids(tok)["pad"])
    card = (folder.path / "MODEL_CARD.md").read_text()
    assert card.startswith("# t") and "worst cosine fp32 vs PyTorch: 1.0000" in card


def test_int8_export_meets_its_bound(exported):
    encoder, _, root, _ = exported
    folder = export_onnx(
        encoder, root / "tokenizer.json", root / "int8", model_id="t8", max_length=48,
        query_prefix="", code_prefix="", quantize="int8",
    )
    card = (folder.path / "MODEL_CARD.md").read_text()
    worst = float(card.split("worst cosine int8 vs fp32 ONNX: ")[1].split()[0])
    assert worst >= 0.99
    vectors = EngineEncoder(folder, device="cpu").embed_ids([[5, 6, 7], [8]])
    assert vectors.shape == (2, 24) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-3)


def test_failed_parity_raises_a_clear_error_and_keeps_the_old_folder(exported):
    encoder, _, root, folder = exported
    before = (folder.path / "model.onnx").read_bytes()
    with pytest.raises(CodesearchError, match=r"parity check: worst cosine int8 vs fp32 ONNX is 0\.\d+, below 1\.5"):
        export_onnx(
            encoder, root / "tokenizer.json", folder.path, model_id="t", max_length=48,
            query_prefix="", code_prefix="", quantize="int8", min_cosine=1.5,
        )
    assert (folder.path / "model.onnx").read_bytes() == before
    assert ModelFolder.read(folder.path).query_prefix == "query: "
    assert not (root / "model.partial").exists()


def test_make_tiny_model_is_a_readable_model_folder(tmp_path):
    path = make_tiny_model(tmp_path / "tiny", dimension=48, max_length=64, pooling="mean")
    folder = ModelFolder.read(path)
    assert folder.dimension == 48 and folder.max_length == 64 and folder.pooling == "mean"
    engine = EngineEncoder(folder, device="cpu")
    vectors = engine.embed_texts(["def f(x):\n    return x", "read a json file"], kind="code")
    assert [v.shape for v in vectors] == [(1, 48), (1, 48)]


def test_the_code_view_is_written_and_changes_the_model_id(exported):
    encoder, _, root, folder = exported
    viewed = export_onnx(
        encoder, root / "tokenizer.json", root / "viewed", model_id="t", max_length=48,
        query_prefix="query: ", code_prefix="code: ", code_view="docstring-line",
    )
    assert (viewed.code_view, folder.code_view) == ("docstring-line", "")
    assert (viewed.path / "model.onnx").read_bytes() == (folder.path / "model.onnx").read_bytes()
    assert viewed.model_id != folder.model_id  # an index of code shown the other way is not reused
    assert "- code view: docstring-line" in (viewed.path / "MODEL_CARD.md").read_text()
