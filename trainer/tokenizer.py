"""Byte-level BPE tokenizers: train our own, or load a base model's, always appending EOS.

Every encoding ends with the EOS token `<|endoftext|>` (added by the tokenizer's post-processor,
so the engine, which only calls `Tokenizer.encode`, produces the same ids as the trainer). Last-token
pooling reads the hidden state at that EOS; the other poolings simply see one more token.

Our own tokenizer has one special token, `<|endoftext|>` with id 0, used both as EOS and as padding
(as in GPT-2 and Qwen base models): padding is always masked by `attention_mask`, so sharing the id
is harmless and keeps the vocabulary minimal.

A Hugging Face model folder's `tokenizer.json` (e.g. Qwen2.5-Coder) is used as is, except that if
its post-processor does not already append an EOS, `load_tokenizer` wraps it in a
`processors.Sequence([original, TemplateProcessing("$A <eos>")])`. Saving that tokenizer
(`tok.save(path)`, which `export_onnx` does) writes the EOS-appending version for the engine.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from codesearch.errors import CodesearchError

EOS = "<|endoftext|>"
# Tried in order when a base model's tokenizer does not say which token ends a text.
EOS_CANDIDATES = (EOS, "<|end_of_text|>", "</s>", "<eos>", "<|end|>")


def train_bpe(texts: Iterable[str], vocab_size: int, out_path: Path) -> Tokenizer:
    """Train a byte-level BPE on `texts`, save it as a tokenizer.json at `out_path`, return it."""
    tok = Tokenizer(models.BPE())
    # GPT-2 style: split on the usual regex, bytes mapped to printable characters, no added space.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],  # id 0
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodes: no unknowns
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok = with_eos(tok, EOS)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_path))
    return tok


def load_tokenizer(path: Path) -> Tokenizer:
    """Load a tokenizer.json file, or the one in a model folder, with EOS appended to encodings.

    Padding and truncation settings stored in the file are dropped: the trainer and the engine pad
    and truncate themselves.
    """
    path = Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise CodesearchError(f"no tokenizer.json at {path}")
    try:
        tok = Tokenizer.from_file(str(file))
    except Exception as exc:  # tokenizers raises a bare Exception on a bad file
        raise CodesearchError(f"cannot read tokenizer {file}: {exc}") from None
    tok.no_padding()
    tok.no_truncation()
    return with_eos(tok, _configured_eos(file.parent))


def with_eos(tok: Tokenizer, eos_token: str | None = None) -> Tokenizer:
    """`tok` if its encodings already end with an EOS, else a copy whose post-processor appends one."""
    if _appended_eos(tok) is not None:
        return tok
    eos_token = eos_token or next((t for t in EOS_CANDIDATES if tok.token_to_id(t) is not None), None)
    if eos_token is None or tok.token_to_id(eos_token) is None:
        raise CodesearchError(f"tokenizer has no EOS token (tried {', '.join(EOS_CANDIDATES)})")
    eos_id = tok.token_to_id(eos_token)
    template = processors.TemplateProcessing(
        single=f"$A {eos_token}",
        pair=f"$A {eos_token} $B:1 {eos_token}:1",
        special_tokens=[(eos_token, eos_id)],
    )
    out = Tokenizer.from_str(tok.to_str())
    original = out.post_processor
    out.post_processor = template if original is None else processors.Sequence([original, template])
    return out


def special_ids(tok: Tokenizer) -> dict[str, int]:
    """{"eos": id, "pad": id}: EOS is the token the post-processor appends; padding reuses it."""
    eos = _appended_eos(tok)
    if eos is None:
        found = next((t for t in EOS_CANDIDATES if tok.token_to_id(t) is not None), None)
        if found is None:
            raise CodesearchError("tokenizer has no EOS token")
        eos = tok.token_to_id(found)
    return {"eos": eos, "pad": eos}


def _appended_eos(tok: Tokenizer) -> int | None:
    """The id the post-processor appends to every encoding, if any."""
    ids = tok.encode("x").ids
    if not ids:
        return None
    last = ids[-1]
    token = tok.id_to_token(last)
    # The appended token must be special (an added token) and absent from a plain "x".
    added = {t.content for t in tok.get_added_tokens_decoder().values()}
    if token in added and tok.encode("x", add_special_tokens=False).ids[-1:] != [last]:
        return last
    return None


def _configured_eos(folder: Path) -> str | None:
    """The EOS token a Hugging Face model folder's tokenizer_config.json names, if any."""
    config = folder / "tokenizer_config.json"
    if not config.is_file():
        return None
    try:
        eos = json.loads(config.read_text(encoding="utf-8")).get("eos_token")
    except ValueError:
        return None
    if isinstance(eos, dict):  # older files store an AddedToken dict
        eos = eos.get("content")
    return eos if isinstance(eos, str) else None
