"""An exported model folder read back into a trainable encoder (trainer.reload): fp32 exactly, int8 closely."""

import numpy as np
import pytest
import torch

from codesearch.errors import CodesearchError
from trainer.export import export_onnx
from trainer.model import BaseConfig, EncoderConfig, tokenize_batch
from trainer.reload import encoder_from_folder
from trainer.tiny import CODE_TEXTS, QUERY_TEXTS, tiny_encoder, tiny_tokenizer
from trainer.tokenizer import special_ids

# tiny_encoder's architecture, as a recipe's [pretrain] and [contrastive] fields give it
SHAPE = BaseConfig(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64, max_position=128)
POOLING = EncoderConfig(pooling="pma", dimension=32, pma_heads=4)


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """A tiny PMA encoder with every weight moved off its initial value, and its fp32 and int8 exports."""
    root = tmp_path_factory.mktemp("reload")
    tok = tiny_tokenizer(root / "tokenizer.json")
    encoder = tiny_encoder(tok, seed=7, dimension=32, pooling="pma").eval()
    with torch.no_grad():  # zero biases and unit norms would match whatever stands in their place
        generator = torch.Generator().manual_seed(7)
        for p in encoder.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)
    folders = {
        q: export_onnx(encoder, root / "tokenizer.json", root / q, model_id="r", max_length=128,
                       query_prefix="query: ", code_prefix="", quantize=q).path
        for q in ("none", "int8")
    }
    return encoder, tok, folders


def vectors(encoder, tok, texts):
    ids, mask = tokenize_batch(tok, list(texts), "", 128, special_ids(tok)["pad"])
    with torch.no_grad():
        return encoder(ids, mask).numpy()


def test_fp32_folder_gives_back_every_weight_exactly(original):
    encoder, tok, folders = original
    reloaded, worst = encoder_from_folder(folders["none"], SHAPE, POOLING)
    assert worst > 0.9999 and reloaded.training
    theirs = dict(reloaded.named_parameters())
    for name, param in encoder.named_parameters():
        assert torch.equal(theirs[name], param), name


def test_int8_folder_gives_back_the_same_function(original):
    encoder, tok, folders = original
    reloaded, worst = encoder_from_folder(folders["int8"], SHAPE, POOLING)
    assert worst >= 0.99
    # The exporter folded PMA's query fc_q(seed) into one constant: it comes back as the seed.
    assert torch.equal(reloaded.pooling.fc_q.weight, torch.eye(32))
    with torch.no_grad():
        folded = encoder.pooling.fc_q(encoder.pooling.seed)
    assert torch.allclose(reloaded.pooling.seed, folded, atol=1e-5)
    texts = CODE_TEXTS + QUERY_TEXTS
    a, b = vectors(encoder, tok, texts), vectors(reloaded.eval(), tok, texts)
    assert (a * b).sum(1).min() > 0.98
    # and the vectors still tell texts apart: not one vector for everything
    assert np.abs(b @ b.T - np.eye(len(texts))).max() < 0.999


def test_another_architecture_is_a_clear_error(original):
    folders = original[2]
    with pytest.raises(CodesearchError, match="not the recipe's architecture"):
        encoder_from_folder(folders["int8"], BaseConfig(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2,
                                                        intermediate_size=96, max_position=128), POOLING)
    with pytest.raises(CodesearchError, match="has pma pooling to 32 dimensions, the recipe mean to 32"):
        encoder_from_folder(folders["none"], SHAPE, EncoderConfig(pooling="mean", dimension=32))
