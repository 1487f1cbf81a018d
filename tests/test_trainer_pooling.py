"""Pooling: padding never changes an embedding, and the output dimension follows the config."""

import pytest
import torch

from trainer.model import LastTokenPooling, MeanPooling, PMAPooling, tokenize_batch
from trainer.tiny import tiny_encoder, tiny_tokenizer
from trainer.tokenizer import special_ids

TEXTS = [
    "def read_json(path):\n    with open(path) as f:\n        return json.load(f)\n",
    "sum",
    "reverse a unicode string",
    "const sum = (values) => values.reduce((a, b) => a + b, 0);",
]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.json")


@pytest.mark.parametrize("pooling", ["pma", "mean", "last"])
def test_padding_does_not_change_an_embedding(tok, pooling):
    encoder = tiny_encoder(tok, pooling=pooling, dimension=32).eval()
    pad = special_ids(tok)["pad"]
    with torch.no_grad():
        batch = encoder(*tokenize_batch(tok, TEXTS, "", 128, pad))  # (4, 32), three rows padded
        for i, text in enumerate(TEXTS):
            alone = encoder(*tokenize_batch(tok, [text], "", 128, pad))  # (1, 32), no padding
            torch.testing.assert_close(batch[i], alone[0], atol=1e-5, rtol=1e-5)
    assert torch.allclose(batch.norm(dim=1), torch.ones(len(TEXTS)), atol=1e-5)


@pytest.mark.parametrize("pool", [MeanPooling(16, 16), LastTokenPooling(16, 8), PMAPooling(16, 24, heads=4, seeds=2)])
def test_pooling_ignores_what_sits_under_padding(pool):
    torch.manual_seed(0)
    h = torch.randn(3, 7, 16)  # (B, T, H)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] + [0] * 6])
    noisy = h.clone()
    noisy[mask == 0] = torch.randn(int((mask == 0).sum()), 16) * 100
    torch.testing.assert_close(pool(h, mask), pool(noisy, mask))


def test_last_token_pooling_reads_the_last_real_token():
    h = torch.arange(2 * 4 * 1, dtype=torch.float32).view(2, 4, 1)  # (B, T, 1): value = position
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    assert LastTokenPooling(1, 1)(h, mask).flatten().tolist() == [3.0, 5.0]


@pytest.mark.parametrize("pooling,dimension", [("pma", 16), ("pma", 48), ("mean", 24), ("last", 32), ("mean", 0)])
def test_output_dimension_follows_the_config(tok, pooling, dimension):
    encoder = tiny_encoder(tok, pooling=pooling, dimension=dimension).eval()
    with torch.no_grad():
        out = encoder(*tokenize_batch(tok, TEXTS, "", 128, special_ids(tok)["pad"]))
    expected = dimension or 32  # 0: the hidden size
    assert out.shape == (len(TEXTS), expected) and encoder.dimension == expected


def test_tokenize_batch_matches_the_engine_ids(tok):
    ids, mask = tokenize_batch(tok, ["sum", "def f(x): return x"], "query: ", 5, 0)
    first = tok.encode("query: sum").ids[:5]
    assert ids.dtype == torch.int64 and mask.dtype == torch.int64
    assert ids[0, : len(first)].tolist() == first and mask[0].sum() == len(first)
    assert ids[1].tolist() == tok.encode("query: def f(x): return x").ids[:5]
    assert tok.encode("sum").ids[-1] == special_ids(tok)["eos"]  # EOS appended for last-token pooling
