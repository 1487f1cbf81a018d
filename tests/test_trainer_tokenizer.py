"""Tokenizers: ours and a base model folder's both end every encoding with EOS, in trainer and engine."""

import json

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from codesearch.errors import CodesearchError
from codesearch.model import Encoder as EngineEncoder
from trainer.export import export_onnx
from trainer.model import BaseConfig, Encoder, EncoderConfig, build_base, load_base
from trainer.tiny import CODE_TEXTS
from trainer.tokenizer import load_tokenizer, special_ids, train_bpe


def test_our_bpe_appends_eos_and_pads_with_it(tmp_path):
    tok = train_bpe(list(CODE_TEXTS) * 4, vocab_size=400, out_path=tmp_path / "tokenizer.json")
    assert 300 < tok.get_vocab_size() <= 400
    assert special_ids(tok) == {"eos": 0, "pad": 0} and tok.id_to_token(0) == "<|endoftext|>"
    ids = tok.encode("def f(x): return 'é'").ids
    assert ids[-1] == 0 and 0 not in ids[:-1]
    assert tok.decode(ids) == "def f(x): return 'é'"  # byte-level: nothing is unknown
    again = load_tokenizer(tmp_path / "tokenizer.json")
    assert again.encode("read a file").ids == tok.encode("read a file").ids


def hf_folder(path):
    """A Hugging Face causal LM folder like Qwen2.5-Coder's: its tokenizer.json appends no EOS."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(list(CODE_TEXTS), trainers.BpeTrainer(
        vocab_size=350, special_tokens=["<|im_end|>", "<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    path.mkdir()
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}))
    torch.manual_seed(0)
    config = BaseConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_layers=1, num_heads=2,
                        num_kv_heads=1, intermediate_size=64, max_position=128)
    build_base(config, pad_token_id=1, eos_token_id=1).save_pretrained(str(path))
    return path


def test_base_model_folder_gets_eos_and_exports_with_it(tmp_path):
    folder = hf_folder(tmp_path / "base")
    assert Tokenizer.from_file(str(folder / "tokenizer.json")).encode("x").ids[-1] != 1
    tok = load_tokenizer(folder)
    assert special_ids(tok) == {"eos": 1, "pad": 1}  # tokenizer_config's eos, not the first special
    assert tok.encode("x").ids[-1] == 1

    encoder = Encoder(load_base(folder), EncoderConfig(pooling="last", dimension=16))
    model = export_onnx(encoder, folder / "tokenizer.json", tmp_path / "model", model_id="hf",
                        max_length=64, query_prefix="", code_prefix="")
    engine = EngineEncoder(model, device="cpu")
    assert engine.tokenize(["def f(): pass"], "") == [tok.encode("def f(): pass").ids]
    assert model.pad_token_id == 1


def test_missing_tokenizer_is_a_clear_error(tmp_path):
    with pytest.raises(CodesearchError, match="no tokenizer.json"):
        load_tokenizer(tmp_path)
    with pytest.raises(CodesearchError, match="no Hugging Face model"):
        load_base(tmp_path)
