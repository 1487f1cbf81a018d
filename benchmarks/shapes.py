"""How large a model the speed target leaves room for: embedding speed of other shapes, on this CPU.

    python benchmarks/shapes.py [--repo PATH] [--sample 1000] [--shapes 2x256,3x256,4x256,2x384]

The issue asks for at least 200 functions/s embedded through the engine on a 2-core CPU. Speed
depends on a model's shape, not on its weights, so each shape (LAYERSxHIDDEN, SwiGLU width 3x
hidden, 4 heads, 2 KV heads, PMA to 256 dims) is built with random weights, exported by the
trainer as the shipped model is (int8, max 512 tokens, the shipped tokenizer), and times the same
sample of functions (default: the Python standard library's) through `codesearch.model.Encoder`,
one after the other in one run, so their ratios hold whatever else the machine is doing. Prints
parameters (without the tied embeddings), folder size and functions/s per shape.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.engine import sample_functions  # noqa: E402
from codesearch.model import Encoder, ModelFolder, default_model_path  # noqa: E402


def random_folder(layers: int, hidden: int, tokenizer: Path, out: Path) -> tuple[Path, int]:
    """A random-weight model of that shape, exported as the shipped one is; and its non-embedding parameters."""
    import torch

    from trainer.export import export_onnx
    from trainer.model import BaseConfig, Encoder as TrainEncoder, EncoderConfig, build_base
    from trainer.tokenizer import load_tokenizer, special_ids

    tok = load_tokenizer(tokenizer)
    ids = special_ids(tok)
    torch.manual_seed(0)
    cfg = BaseConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden, num_layers=layers,
                     intermediate_size=3 * hidden)
    encoder = TrainEncoder(build_base(cfg, pad_token_id=ids["pad"], eos_token_id=ids["eos"]),
                           EncoderConfig(pooling="pma", dimension=256, pma_heads=8))
    parameters = sum(p.numel() for p in encoder.parameters()) - cfg.vocab_size * hidden
    export_onnx(encoder, tokenizer, out, model_id=f"random-{layers}x{hidden}", max_length=512,
                query_prefix="query: ", code_prefix="", quantize="int8", card="random weights, for speed only")
    return out, parameters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", default=sysconfig.get_paths()["stdlib"])
    parser.add_argument("--sample", type=int, default=1000)
    parser.add_argument("--shapes", default="2x256,3x256,4x256,2x320,2x384,3x320")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: all cores)")
    args = parser.parse_args()

    shipped = default_model_path()
    if shipped is None:
        sys.exit("no shipped model: its tokenizer is the one every shape uses")
    codes, languages = sample_functions(Path(args.repo), args.sample)
    work = Path(tempfile.mkdtemp(prefix="codesearch-shapes-"))
    try:
        runs = [("shipped", shipped, None)]
        for shape in args.shapes.split(","):
            layers, hidden = (int(x) for x in shape.split("x"))
            folder, parameters = random_folder(layers, hidden, Path(shipped) / "tokenizer.json", work / shape)
            runs.append((shape, folder, parameters))
        lengths = None
        for name, folder, parameters in runs:
            encoder = Encoder(ModelFolder.read(folder), device="cpu", threads=args.threads)
            if lengths is None:
                lengths = sorted(len(i) for i in encoder.tokenize(codes, encoder.folder.code_prefix))
                print(f"sample: {len(codes)} functions of {args.repo}, median {lengths[len(lengths) // 2]} tokens")
            encoder.embed_texts(codes[:50], kind="code", languages=languages[:50])  # warm up
            started = time.perf_counter()
            encoder.embed_texts(codes, kind="code", languages=languages)
            rate = len(codes) / (time.perf_counter() - started)
            size = sum(f.stat().st_size for f in Path(folder).iterdir() if f.is_file()) / 1e6
            extra = "" if parameters is None else f", {parameters / 1e6:.1f}M parameters besides the embeddings"
            print(f"{name}: {rate:.0f} functions/s, folder {size:.1f} MB{extra}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
