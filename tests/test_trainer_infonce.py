"""InfoNCE: positives first, hard negatives after them, target of query i is column i."""

import math

import pytest
import torch
import torch.nn.functional as F

from trainer.contrastive import ContrastiveConfig, batch_codes, info_nce

# Two queries, their two positives, then one hard negative each (B=2, n=1, D=2).
Q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
C = torch.tensor([[0.8, 0.6], [0.6, 0.8], [1.0, 0.0], [0.0, -1.0]])


def hand_loss(rows):
    """-mean log softmax of the target, written out: rows = [(target score, [all scores])]."""
    return -sum(t - math.log(sum(math.exp(s) for s in scores)) for t, scores in rows) / len(rows)


def test_in_batch_loss_matches_a_hand_computation():
    tau = 0.05
    s = (Q @ C.T / tau).tolist()  # (2, 4)
    expected = hand_loss([(s[0][0], s[0]), (s[1][1], s[1])])
    assert info_nce(Q, C, temperature=tau).item() == pytest.approx(expected, rel=1e-5)


def test_own_negatives_only_loss_matches_a_hand_computation():
    tau = 0.1
    s = (Q @ C.T / tau).tolist()
    # Query 0 sees its positive C[0] and its negative C[2]; query 1 sees C[1] and C[3].
    expected = hand_loss([(s[0][0], [s[0][0], s[0][2]]), (s[1][1], [s[1][1], s[1][3]])])
    assert info_nce(Q, C, temperature=tau, in_batch=False).item() == pytest.approx(expected, rel=1e-5)


def test_hard_negatives_are_laid_out_pair_by_pair():
    B, n, D = 3, 2, 8
    torch.manual_seed(0)
    q = F.normalize(torch.randn(B, D), dim=1)
    c = F.normalize(torch.randn(B * (1 + n), D), dim=1)
    logits = torch.stack([q[i] @ torch.stack([c[i], c[B + i * n], c[B + i * n + 1]]).T for i in range(B)]) / 0.05
    expected = F.cross_entropy(logits, torch.zeros(B, dtype=torch.long))
    torch.testing.assert_close(info_nce(q, c, in_batch=False), expected)


def test_perfect_embeddings_give_almost_zero_loss():
    q = torch.eye(4)  # orthogonal unit vectors: each query matches only its own code
    c = torch.cat([torch.eye(4), -torch.eye(4)])  # positives, then hard negatives pointing away
    assert info_nce(q, c).item() < 1e-6
    assert info_nce(q, c, in_batch=False).item() < 1e-6


def test_batch_codes_handles_missing_negatives():
    pairs = [{"query": "a", "code": "A", "negative": "nA"}, {"query": "b", "code": "B", "negative": None}]
    assert batch_codes(pairs, ContrastiveConfig()) == ["A", "B", "nA"]
    assert batch_codes(pairs, ContrastiveConfig(in_batch=False)) == ["A", "B", "nA", "A"]
    assert batch_codes(pairs, ContrastiveConfig(hard_negatives=False)) == ["A", "B"]


def test_batch_codes_show_a_share_of_docstrings_on_positives_and_negatives_alike():
    pairs = [{"query": f"q{i}", "code": f"C{i}", "code_full": f"doc C{i}", "negative": f"N{i}",
              "negative_full": f"doc N{i}"} for i in range(200)]
    cfg = ContrastiveConfig(docstring_share=0.5)
    codes = batch_codes(pairs, cfg, step=3)
    assert [c.removeprefix("doc ") for c in codes] == [f"C{i}" for i in range(200)] + [f"N{i}" for i in range(200)]
    positives, negatives = codes[:200], codes[200:]
    assert 70 < sum(c.startswith("doc") for c in positives) < 130
    assert 70 < sum(c.startswith("doc") for c in negatives) < 130
    assert batch_codes(pairs, cfg, step=3) == codes  # a pure function of the step (resumable)
    assert batch_codes(pairs, cfg, step=4) != codes
    assert batch_codes(pairs, ContrastiveConfig(), step=3) == [f"C{i}" for i in range(200)] + [f"N{i}" for i in range(200)]
    bare = [{"query": "q", "code": "C", "negative": "N"}]  # no docstring to show: the code as is
    assert batch_codes(bare, ContrastiveConfig(docstring_share=1.0)) == ["C", "N"]
