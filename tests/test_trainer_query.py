"""The query tower's loss: InfoNCE of each query against every code of the training set.

The whole stage (code vectors, training, export as query.onnx, the engine using it) runs in
tests/test_trainer_chain.py.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trainer.towers import corpus_info_nce


def test_corpus_info_nce_scores_each_query_against_every_code():
    torch.manual_seed(0)
    q, codes = F.normalize(torch.randn(3, 8), dim=-1), F.normalize(torch.randn(7, 8), dim=-1)
    positives = torch.tensor([4, 0, 6])
    expected = -sum(
        math.log(math.exp(q[i] @ codes[p] / 0.05) / sum(math.exp(q[i] @ c / 0.05) for c in codes))
        for i, p in enumerate(positives.tolist())
    ) / 3
    assert corpus_info_nce(q, codes, positives, 0.05).item() == pytest.approx(expected, rel=1e-4)

