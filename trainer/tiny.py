"""A tiny, untrained but real model folder, built by the trainer's own code path (for tests).

Tokenizer training, Qwen2 construction, pooling and ONNX export are the ones a real model goes
through, so engine tests that use this folder exercise the real contract in about a second.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer

from trainer.export import export_onnx
from trainer.model import BaseConfig, Encoder, EncoderConfig, build_base
from trainer.tokenizer import special_ids, train_bpe

CODE_TEXTS = (
    "def read_json(path):\n    with open(path, encoding='utf-8') as f:\n        return json.load(f)\n",
    "def write_json(path, data):\n    with open(path, 'w', encoding='utf-8') as f:\n"
    "        json.dump(data, f, indent=2)\n",
    "def binary_search(items, target):\n    lo, hi = 0, len(items) - 1\n    while lo <= hi:\n"
    "        mid = (lo + hi) // 2\n        if items[mid] == target:\n            return mid\n"
    "        if items[mid] < target:\n            lo = mid + 1\n        else:\n"
    "            hi = mid - 1\n    return -1\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n"
    "        self.items.append(item)\n\n    def pop(self):\n        return self.items.pop()\n",
    "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
    "async def fetch(session, url):\n    async with session.get(url) as response:\n"
    "        return await response.text()\n",
    "function debounce(fn, ms) {\n  let timer;\n  return (...args) => {\n    clearTimeout(timer);\n"
    "    timer = setTimeout(() => fn(...args), ms);\n  };\n}\n",
    "const sum = (values) => values.reduce((total, value) => total + value, 0);\n",
    "export function parseQuery(query) {\n  return Object.fromEntries(new URLSearchParams(query));\n}\n",
    "func Reverse(s string) string {\n\trunes := []rune(s)\n\tfor i, j := 0, len(runes)-1; i < j; i, j = i+1, j-1 {\n"
    "\t\trunes[i], runes[j] = runes[j], runes[i]\n\t}\n\treturn string(runes)\n}\n",
    "fn max_value(values: &[i64]) -> Option<i64> {\n    values.iter().copied().max()\n}\n",
    "public static int countWords(String text) {\n    return text.trim().split(\"\\\\s+\").length;\n}\n",
    "SELECT name, COUNT(*) FROM users GROUP BY name ORDER BY COUNT(*) DESC;\n",
)
QUERY_TEXTS = (
    "read a json file",
    "write a dictionary to a json file",
    "find the index of a value in a sorted list",
    "a stack with push and pop",
    "compute the nth fibonacci number",
    "download a web page asynchronously",
    "delay a function call until input stops",
    "add up a list of numbers",
    "parse a url query string",
    "reverse a unicode string",
    "largest value in a slice",
    "count the words in a sentence",
    "count users by name",
)


def make_tiny_model(
    out_dir: Path,
    *,
    seed: int = 0,
    dimension: int = 32,
    max_length: int = 128,
    pooling: str = "pma",
    texts: Sequence[str] | None = None,
    quantize: str = "none",
    query_prefix: str = "query: ",
    code_prefix: str = "",
) -> Path:
    """Train a ~500-token BPE, build a 2-layer Qwen2 (hidden 32), export it to `out_dir`; return it."""
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="codesearch-tiny-") as work:
        tokenizer_json = Path(work) / "tokenizer.json"
        tok = tiny_tokenizer(tokenizer_json, texts)
        encoder = tiny_encoder(tok, seed=seed, dimension=dimension, pooling=pooling, max_position=max_length)
        export_onnx(
            encoder,
            tokenizer_json,
            out_dir,
            model_id=f"tiny-random-{pooling}-{dimension}",
            max_length=max_length,
            query_prefix=query_prefix,
            code_prefix=code_prefix,
            quantize=quantize,
            card="# tiny-random\n\nAn untrained 2-layer Qwen2 for tests: its vectors carry no meaning.",
        )
    return out_dir


def tiny_tokenizer(out_path: Path, texts: Sequence[str] | None = None) -> Tokenizer:
    """A byte-level BPE of at most 512 tokens trained on `texts` (default: the built-in snippets)."""
    corpus = list(texts) if texts is not None else list(CODE_TEXTS + QUERY_TEXTS)
    return train_bpe(corpus * 4, vocab_size=512, out_path=Path(out_path))


def tiny_encoder(
    tok: Tokenizer, *, seed: int = 0, dimension: int = 32, pooling: str = "pma", max_position: int = 128
) -> Encoder:
    """A random 2-layer Qwen2 (hidden 32, 4 heads, 2 KV heads) under the chosen pooling."""
    ids = special_ids(tok)
    torch.manual_seed(seed)
    config = BaseConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        intermediate_size=64,
        max_position=max(max_position, 64),
    )
    base = build_base(config, pad_token_id=ids["pad"], eos_token_id=ids["eos"])
    heads = 4 if dimension % 4 == 0 else 1
    return Encoder(base, EncoderConfig(pooling=pooling, dimension=dimension, pma_heads=heads))
