"""train_contrastive on tiny pairs: the loss falls, runs repeat, and a stopped run resumes exactly."""

import json
from dataclasses import replace

import pytest
import torch

import random

from trainer.contrastive import ContrastiveConfig, batch_queries, fit_budget, search_style, train_contrastive
from trainer.model import Encoder, tokenize_batch, uses_bf16
from trainer.tiny import tiny_encoder, tiny_tokenizer
from trainer.tokenizer import special_ids

VERBS = ["read", "write", "sort", "parse", "fetch", "merge", "split", "count",
         "filter", "reverse", "sum", "join", "open", "close", "print", "copy"]
PAIRS = [
    {"query": f"{verb} a {thing}", "code": f"def {verb}_{thing}(x):\n    return {verb}({thing}(x))\n",
     "negative": f"def {thing}_{verb}(y):\n    pass\n" if i % 5 else None}
    for i, (verb, thing) in enumerate((v, t) for v in VERBS for t in ("file", "list"))
]  # 32 pairs, a few without a hard negative
CFG = ContrastiveConfig(
    lr=3e-3, warmup_steps=2, max_steps=16, batch_size=8, log_every=1, lora_r=4, lora_alpha=8,
    query_max_length=32, code_max_length=64, checkpoint_every=100,
)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.json")


def losses(out_dir):
    return [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]


def test_loss_decreases_and_the_final_encoder_loads(tok, tmp_path):
    result = train_contrastive(tiny_encoder(tok), tok, PAIRS, CFG, tmp_path, progress=False)
    log = [r["loss"] for r in losses(tmp_path)]
    assert result["steps"] == 16 and len(log) == 16
    assert sum(log[-4:]) / 4 < 0.5 * sum(log[:4]) / 4
    assert result["first_loss"] == log[0] and result["pairs_per_s"] > 0

    final = Encoder.load(tmp_path / "final").eval()  # LoRA merged, tokenizer alongside
    assert (tmp_path / "final" / "tokenizer.json").is_file()
    pad = special_ids(tok)["pad"]
    with torch.no_grad():
        q = final(*tokenize_batch(tok, [p["query"] for p in PAIRS[:8]], "", 32, pad))
        c = final(*tokenize_batch(tok, [p["code"] for p in PAIRS[:8]], "", 64, pad))
    assert ((q @ c.T).argmax(1) == torch.arange(8)).float().mean() >= 0.5  # chance: 1 in 8


def test_bf16_and_fp32_steps_differ_and_both_learn(tok, tmp_path):
    # bf16 matrix products (what "auto" picks on an AVX-512 CPU or CUDA) change the losses a little
    logs = {}
    for precision in ("fp32", "bf16"):
        cfg = replace(CFG, precision=precision)
        result = train_contrastive(tiny_encoder(tok), tok, PAIRS, cfg, tmp_path / precision, progress=False)
        assert result["precision"] == precision
        logs[precision] = [r["loss"] for r in losses(tmp_path / precision)]
        assert sum(logs[precision][-4:]) / 4 < 0.5 * sum(logs[precision][:4]) / 4
    assert logs["fp32"] != logs["bf16"]
    assert logs["bf16"][0] == pytest.approx(logs["fp32"][0], rel=0.05)  # the same first step, roughly


def test_precision_auto_follows_the_hardware():
    cpu = torch.device("cpu")
    assert uses_bf16(cpu, "auto") == torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert uses_bf16(torch.device("cuda"), "auto")  # always on CUDA, whatever this CPU has
    assert uses_bf16(cpu, "bf16") and not uses_bf16(cpu, "fp32")
    with pytest.raises(ValueError, match="precision must be one of auto, bf16, fp32"):
        uses_bf16(cpu, "fp16")


@pytest.mark.parametrize("in_batch,use_lora", [(False, True), (True, False)])
def test_variants_run_and_repeat_given_the_seed(tok, tmp_path, in_batch, use_lora):
    cfg = replace(CFG, max_steps=2, in_batch=in_batch, use_lora=use_lora, lr=1e-3)
    a = train_contrastive(tiny_encoder(tok), tok, PAIRS, cfg, tmp_path / "a", progress=False)
    b = train_contrastive(tiny_encoder(tok), tok, PAIRS, cfg, tmp_path / "b", progress=False)
    assert a["steps"] == b["steps"] == 2
    assert [r["loss"] for r in losses(tmp_path / "a")] == [r["loss"] for r in losses(tmp_path / "b")]


def test_a_stopped_run_resumes_where_it_left_off(tok, tmp_path):
    # Warmup longer than the run, so the learning rate of steps 1-6 is the same for 3 or 6 max steps.
    # dropout and rewritten queries: the RNG state and the step's query rewrites must resume too
    cfg = replace(CFG, warmup_steps=10, lora_dropout=0.1, search_style=0.5)
    def run(max_steps, out_dir):
        return train_contrastive(tiny_encoder(tok), tok, PAIRS, replace(cfg, max_steps=max_steps), out_dir, progress=False)

    unbroken = run(6, tmp_path / "unbroken")
    first = run(3, tmp_path / "run")
    assert first["steps"] == 3 and json.loads((tmp_path / "run" / "checkpoint" / "step.json").read_text())["step"] == 3
    resumed = run(6, tmp_path / "run")
    assert resumed["steps"] == 6

    log = losses(tmp_path / "run")
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    expected = [r["loss"] for r in losses(tmp_path / "unbroken")]
    assert [r["loss"] for r in log] == pytest.approx(expected, rel=1e-5)
    assert resumed["last_loss"] == pytest.approx(unbroken["last_loss"], rel=1e-5)

    again = run(6, tmp_path / "run")  # nothing left to do: the summary still says where the run ended
    assert again["steps"] == 6 and again["last_loss"] == log[-1]["loss"] and again["pairs_per_s"] > 0


def test_search_style_reads_like_a_typed_search():
    rng = random.Random(0)
    sentence = "Return the number of lines in the given file."
    styled = [search_style(sentence, "python", rng) for _ in range(50)]
    assert all(s == s.lower() and not s.endswith(".") for s in styled)
    assert all("number" in s.split() for s in styled)
    assert sum("the" in s.split() for s in styled) < len(styled) / 2  # function words mostly dropped
    assert any(s.startswith("python ") for s in styled) and any("python" not in s for s in styled)
    assert search_style("Parse it.", "cobol", random.Random(1)) in {"parse it", "parse"}  # never empty


def test_batch_queries_rewrite_a_share_and_repeat_for_a_step():
    pairs = [{"query": f"Read the file number {i}.", "language": "go"} for i in range(200)]
    cfg = replace(CFG, search_style=0.5)
    first = batch_queries(pairs, 7, cfg)
    assert first == batch_queries(pairs, 7, cfg) != batch_queries(pairs, 8, cfg)
    rewritten = sum(q != p["query"] for q, p in zip(first, pairs))
    assert 60 < rewritten < 140
    assert batch_queries(pairs, 7, replace(cfg, search_style=0.0)) == [p["query"] for p in pairs]


def test_a_time_budget_fits_max_steps_and_ends_the_schedule_there(tok, tmp_path):
    cfg = replace(CFG, max_steps=5000, max_minutes=0.01)  # 0.6 s: a few dozen tiny steps at most
    result = train_contrastive(tiny_encoder(tok), tok, PAIRS, cfg, tmp_path, progress=False)
    log = losses(tmp_path)
    assert result["max_minutes"] == 0.01 and result["steps"] == result["max_steps"] == log[-1]["step"]
    assert 25 < result["steps"] < 5000  # 5 untimed and 20 timed steps, then what fits
    assert log[-1]["lr"] < 0.05 * cfg.lr  # the cosine reached its end at the fitted step, not at 5000


def test_fit_budget():
    assert fit_budget(step=25, seconds_per_step=0.5, seconds_left=100.0, max_steps=1000) == 225
    assert fit_budget(step=25, seconds_per_step=0.5, seconds_left=1e6, max_steps=1000) == 1000
    assert fit_budget(step=25, seconds_per_step=0.5, seconds_left=-3.0, max_steps=1000) == 26
