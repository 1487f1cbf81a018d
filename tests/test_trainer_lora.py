"""LoRA: only adapters and the pooling head train, and merging them changes no output."""

import torch

from trainer.contrastive import ContrastiveConfig, apply_lora, info_nce, merge_lora
from trainer.model import Encoder, is_lora, tokenize_batch
from trainer.tiny import CODE_TEXTS, QUERY_TEXTS, tiny_encoder, tiny_tokenizer
from trainer.tokenizer import special_ids


def test_only_lora_and_pooling_parameters_train(tmp_path):
    tok = tiny_tokenizer(tmp_path / "tokenizer.json")
    encoder = apply_lora(tiny_encoder(tok), ContrastiveConfig(lora_r=4, lora_alpha=8))
    trainable = [n for n, p in encoder.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.startswith("pooling.") for n in trainable)
    assert {n for n, _ in encoder.pooling.named_parameters()} <= {n.removeprefix("pooling.") for n in trainable}
    for target in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert any(target in n for n in trainable), target


def test_merged_model_gives_the_same_vectors(tmp_path):
    tok = tiny_tokenizer(tmp_path / "tokenizer.json")
    pad = special_ids(tok)["pad"]
    encoder = apply_lora(tiny_encoder(tok, seed=1), ContrastiveConfig(lora_r=4, lora_alpha=8, lora_dropout=0.0))
    q_ids = tokenize_batch(tok, list(QUERY_TEXTS[:8]), "", 64, pad)
    c_ids = tokenize_batch(tok, list(CODE_TEXTS[:8]), "", 128, pad)

    # A couple of steps, so the adapters' B matrices move away from their zero initialisation.
    optimizer = torch.optim.AdamW([p for p in encoder.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        loss = info_nce(encoder(*q_ids), encoder(*c_ids))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    lora_b = [p for n, p in encoder.named_parameters() if "lora_B" in n]
    assert any(p.abs().max() > 0 for p in lora_b)

    encoder.eval()
    with torch.no_grad():
        before = encoder(*c_ids)
        merge_lora(encoder)
        assert not is_lora(encoder)
        after = encoder(*c_ids)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)

    # And the merged encoder saves and loads back to the same vectors.
    encoder.save(tmp_path / "enc", tokenizer=tok)
    loaded = Encoder.load(tmp_path / "enc").eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(*c_ids), after, atol=1e-6, rtol=0)
    assert (tmp_path / "enc" / "tokenizer.json").is_file()
