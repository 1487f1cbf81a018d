"""The whole trainer chain on CPU with the tiny recipe: `python -m trainer all` on a small source tree.

data -> BPE tokenizer -> a few pretraining steps -> contrastive steps with LoRA and PMA -> a query
tower -> a code tower tuned against it -> ONNX export -> eval, then the exported folder is loaded by the engine's own Encoder. About a minute on 2 cores.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

import trainer
from trainer.__main__ import main
from trainer_sources import write_bench, write_tree

TINY = Path(trainer.__file__).parent / "recipes" / "tiny.toml"


def tiny_argv(stage: str, root: Path, *extra: str) -> list[str]:
    return [stage, "--recipe", str(TINY), "--quiet",
            "--set", f'run_dir="{root / "run"}"',
            "--set", f'data.sources=["{root / "src"}/*"]',
            "--set", f'eval.bench_dir="{root / "bench"}"', *extra]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("chain")
    write_tree(root / "src")
    write_bench(root / "bench")
    started = time.perf_counter()
    code = main(tiny_argv("all", root))
    return root, code, time.perf_counter() - started


def read_log(path: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in path.read_text(encoding="utf-8").splitlines()]


def test_all_stages_write_their_outputs(chain):
    root, code, seconds = chain
    assert code == 0
    run = root / "run"
    for rel in ("data/stats.json", "data/pairs-train.jsonl", "data/pairs-valid.jsonl", "tokenizer/tokenizer.json",
                "pretrain/final/config.json", "contrastive/final/encoder.json", "query/codes.npy",
                "query/final/encoder.json", "code/queries.npy", "code/final/encoder.json",
                "code/requery/codes.npy", "code/requery/final/encoder.json", "code/round-2/queries.npy",
                "code/round-2/final/encoder.json", "code/round-2/requery/final/encoder.json", "model/model.onnx", "model/query.onnx",
                "model/tokenizer.json", "model/codesearch.json", "model/MODEL_CARD.md", "eval/exported.valid.json"):
        assert (run / rel).is_file(), rel
    assert seconds < 240  # about 60 s alone on 2 cores; the bound leaves room for a busy machine
    card = (run / "model" / "MODEL_CARD.md").read_text(encoding="utf-8")
    stats = json.loads((run / "data" / "stats.json").read_text(encoding="utf-8"))
    assert f"{stats['pairs']['train']} training and {stats['pairs']['valid']} validation pairs" in card
    results = json.loads((run / "eval" / "exported.valid.json").read_text(encoding="utf-8"))
    assert set(results["valid"]) == {"queries", "docs", "bm25", "fulltext", "model", "hybrid"}
    # eval calibrates the exported model's fusion weight on the validation split and files its figures
    contract = json.loads((run / "model" / "codesearch.json").read_text(encoding="utf-8"))
    assert contract["hybrid_weight"] == results["hybrid_weight"]
    card = (run / "model" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "## Evaluation" in card and f"| {results['valid']['bm25']['mrr']:.3f} |" in card


def test_training_losses_go_down(chain):
    run = chain[0] / "run"
    pretrain = read_log(run / "pretrain" / "log.jsonl")
    contrastive = read_log(run / "contrastive" / "log.jsonl")
    assert len(contrastive) == 4  # 40 steps, one line per 10
    assert pretrain[-1] < pretrain[0]
    assert contrastive[-1] < contrastive[0] - 0.1  # LoRA adapters + PMA head learn the training pairs
    encoder = json.loads((run / "contrastive" / "final" / "encoder.json").read_text(encoding="utf-8"))
    assert encoder["pooling"] == "pma" and encoder["dimension"] == 64
    query = read_log(run / "query" / "log.jsonl")
    assert len(query) == 2 and query[-1] < query[0]  # the query tower learns to find its codes among all
    code = read_log(run / "code" / "log.jsonl")
    assert len(code) == 2 and code[-1] < code[0]  # the code tower learns to find its queries among all
    assert len(read_log(run / "code" / "requery" / "log.jsonl")) == 1  # then the query tower once more
    assert len(read_log(run / "code" / "round-2" / "log.jsonl")) == 2  # and a second round of both
    assert len(read_log(run / "code" / "round-2" / "requery" / "log.jsonl")) == 1


def test_the_engine_loads_the_exported_model(chain):
    import torch

    from codesearch.model import Encoder, ModelFolder
    from trainer.model import Encoder as TrainerEncoder
    from trainer.model import tokenize_batch
    from trainer.tokenizer import load_tokenizer

    folder = ModelFolder.read(chain[0] / "run" / "model")
    assert re.fullmatch(r"tiny-smoke-[0-9a-f]{10}", folder.model_id)  # the recipe's id + a digest of the weights
    assert (folder.dimension, folder.max_length, folder.query_prefix) == (64, 128, "query: ")
    encoder = Encoder(folder, device="cpu")
    query = encoder.embed_query("compute the area of a circle")
    assert query.shape == (64,) and np.linalg.norm(query) == pytest.approx(1.0, abs=1e-4)
    # queries go through the query tower as tuned last (against the code stage's last tower), code
    # through the code stage's last tower (not the contrastive encoder)
    assert folder.query_model == "query.onnx"
    towers = [TrainerEncoder.load(chain[0] / "run" / stage / "final").eval()
              for stage in ("code/round-2/requery", "code/round-2", "contrastive")]
    tok = load_tokenizer(folder.path / "tokenizer.json")
    area = "def area(r):\n    return 3.14 * r * r"
    with torch.no_grad():
        by_query_tower, by_code_tower, _ = (t(*tokenize_batch(tok, ["compute the area of a circle"], "query: ", 128, 0))[0]
                                            .numpy() for t in towers)
        _, code_side, contrastive_side = (t(*tokenize_batch(tok, [area], "", 128, 0))[0].numpy() for t in towers)
    np.testing.assert_allclose(query, by_query_tower, atol=1e-4)
    assert not np.allclose(query, by_code_tower, atol=1e-3)
    (code,) = encoder.embed_texts([area], kind="code")
    assert code.shape == (1, 64) and np.linalg.norm(code[0]) == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(code[0], code_side, atol=1e-4)
    assert not np.allclose(code[0], contrastive_side, atol=1e-3)


def test_the_engine_indexes_and_queries_a_repo_with_the_exported_model(chain, tmp_path):
    from codesearch.config import Settings
    from codesearch.indexer import build_index
    from codesearch.search import Index
    from conftest import SAMPLE_REPO

    repo = tmp_path / "repo"
    shutil.copytree(SAMPLE_REPO, repo, ignore=shutil.ignore_patterns(".codesearch"))
    settings = Settings(model=str(chain[0] / "run" / "model"), threads=1)
    report = build_index(repo, settings)
    assert report.model_id.startswith("tiny-smoke-") and report.chunks == report.chunks_embedded > 20
    index = Index.open(repo, settings)
    assert index.search("parse json", 3)[0].name == "parse_json"
    assert len(index.search("matrix multiplication", 5, mode="semantic")) == 5


def test_a_second_run_skips_finished_stages_and_resumes_training(chain, capsys):
    root = chain[0]
    run = root / "run"
    log_lines = len(read_log(run / "contrastive" / "log.jsonl"))
    started = time.perf_counter()
    assert main([a for a in tiny_argv("all", root) if a != "--quiet"]) == 0
    assert time.perf_counter() - started < 30
    err = capsys.readouterr().err
    for stage in ("data", "tokenizer", "pretrain", "contrastive", "query", "code", "export", "eval"):
        assert f"{stage}: done" in err
    # Without its final folder, contrastive resumes from its last checkpoint (step 40 of 40): no new steps.
    shutil.rmtree(run / "contrastive" / "final")
    assert main(tiny_argv("contrastive", root)) == 0
    assert (run / "contrastive" / "final" / "encoder.json").is_file()
    assert len(read_log(run / "contrastive" / "log.jsonl")) == log_lines
    # Without the last query tower, the code stage redoes that alone: the towers before it stay as they were.
    last = run / "code" / "round-2"
    kept = {p: p.stat().st_mtime_ns for p in (run / "code").rglob("encoder.json") if p.parent != last / "requery" / "final"}
    shutil.rmtree(last / "requery" / "final")
    assert main(tiny_argv("code", root)) == 0
    assert (last / "requery" / "final" / "encoder.json").is_file() and len(kept) == 3
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in kept.items())


@pytest.mark.parametrize("start, base", [("model", "the exported model"), ("contrastive/final", "the trained encoder")])
def test_a_run_starts_from_a_model_folder(chain, capsys, start, base):
    """tokenizer.from_model: an exported or trained model's tokenizer and weights; no BPE, no pretraining."""
    from trainer.tokenizer import load_tokenizer

    root = chain[0]
    shipped, again = root / "run" / start, root / f"again-{start.replace('/', '-')}"
    argv = tiny_argv("all", root, "--set", f'run_dir="{again}"', "--set", f'tokenizer.from_model="{shipped}"',
                     "--set", "contrastive.max_steps=20")
    assert main([a for a in argv if a != "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "pretrain: skipped" in err and f"contrastive: starting from {shipped}" in err
    assert not (again / "pretrain").exists()
    assert load_tokenizer(again / "tokenizer" / "tokenizer.json").get_vocab() == load_tokenizer(
        shipped / "tokenizer.json").get_vocab()
    # It goes on from where the first run ended, not from a barely pretrained decoder.
    assert read_log(again / "contrastive" / "log.jsonl")[0] < read_log(root / "run" / "contrastive" / "log.jsonl")[0]
    assert f"Base: {base} {shipped}" in (again / "model" / "MODEL_CARD.md").read_text(encoding="utf-8")


def test_a_run_folder_refuses_another_recipe(chain, capsys):
    root = chain[0]
    assert main(tiny_argv("data", root, "--set", "data.min_code_lines=5")) == 2
    err = capsys.readouterr().err
    assert "was made with another recipe (changed: data.min_code_lines)" in err


BAD_RECIPE = 'name = "bad"\n[data]\nsources = ["src/*"]\nbogus = 1\n'


@pytest.mark.parametrize(
    "argv, message",
    [
        (["data", "--recipe", "{root}/missing.toml"], "no such file"),
        (["data", "--recipe", "{root}/bad.toml"], "[data]: unknown key 'bogus'; valid keys: sources, languages"),
        (["data", "--recipe", "{root}/bad.toml", "--set", "data.bogus=2", "--set", "name=3"], "`name` (a string) is required"),
        (["pretrain"], "pretrain: --recipe is required"),
        (["data", "--recipe", str(TINY), "--set", 'data.sources=["{root}/nowhere/*"]', "--set", 'run_dir="{root}/r"'],
         "matches no directory"),
        (["data", "--recipe", str(TINY), "--set", "data.min_code_lines=\"x\""], "min_code_lines must be of type int"),
        (["data", "--recipe", str(TINY), "--set", "eval.sets=[\"cosqa\", \"nope\"]"], "unknown sets ['nope']"),
        (["data", "--recipe", str(TINY), "--set", "contrastive.lr=\"fast\""], "[contrastive]: lr must be of type float"),
        (["data", "--recipe", str(TINY), "--set", "pretrain.precision=fp16"], "[pretrain] precision must be auto, bf16, fp32"),
        (["data", "--recipe", str(TINY), "--set", "export.code_view=summaries"], "[export] code_view must be one of"),
        (["data", "--recipe", str(TINY), "--set", "query.max_steps=0"], "[code] tunes the code tower against the query tower"),
        (["data", "--recipe", str(TINY), "--set", "query.requery_steps=5"], "the turns of the two towers are [code]'s"),
        (["data", "--recipe", str(TINY), "--set", "code.requery_steps=0"], "[code] rounds must be 1, or more with"),
        (["code", "--recipe", str(TINY), "--set", 'run_dir="{root}/r"'], "run the contrastive stage"),
        (["contrastive", "--recipe", str(TINY), "--set", 'run_dir="{root}/empty"'], "run the tokenizer stage first"),
        (["data", "--recipe", str(TINY), "--set", 'tokenizer.base="{root}"', "--set", 'tokenizer.from_model="{root}"'],
         "base and from_model are two starts"),
        (["tokenizer", "--recipe", str(TINY), "--set", 'run_dir="{root}/r"', "--set", 'tokenizer.from_model="{root}"'],
         "not a codesearch model folder"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    (tmp_path / "bad.toml").write_text(BAD_RECIPE, encoding="utf-8")
    argv = [a.replace("{root}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert message.replace("{root}", str(tmp_path)) in err


def test_the_gpu_job_trains_and_exports_from_what_was_carried(chain, tmp_path):
    """trainer/gpu_job.sh as the device runs it, here on CPU: packed pairs and a reloaded start in."""
    import subprocess
    import sys

    from trainer.carry import pack_pairs
    from trainer.reload import main as reload_main

    root = chain[0]
    carry, out = tmp_path / "carry", tmp_path / "out"
    pack_pairs(root / "run" / "data" / "pairs-train.jsonl", carry / "pairs.jsonl.xz")
    assert reload_main([str(root / "run" / "model"), str(carry / "start"), "--recipe", str(TINY)]) == 0
    script = Path(trainer.__file__).parent / "gpu_job.sh"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OUT": str(out), "CARRY": str(carry),
           "RUN": str(tmp_path / "run"), "RECIPE": str(TINY), "MINUTES": "0.05", "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(script), "--set", "contrastive.batch_size=8",
                           "--set", "contrastive.code_max_length=64", "--set", "contrastive.warmup_steps=2"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["max_minutes"] == 0.05 and 25 < summary["steps"] < 1_000_000  # the budget ended it
    assert "Base: the trained encoder" in (out / "model" / "MODEL_CARD.md").read_text(encoding="utf-8")
    from codesearch.model import Encoder, ModelFolder

    (code,) = Encoder(ModelFolder.read(out / "model"), device="cpu").embed_texts(["def f(x):\n    return x"], kind="code")
    assert code.shape == (1, 64)


def test_an_average_of_two_models_exports_with_zero_steps(chain, tmp_path, capsys):
    """python -m trainer.average, then a contrastive stage of 0 steps from it: the export of the mix."""
    import torch

    from trainer.average import main as average_main
    from trainer.model import Encoder

    from trainer.tokenizer import load_tokenizer

    root = chain[0]
    first, second = root / "run" / "model", tmp_path / "shifted"  # the exported model, and it + 0.1
    trained = Encoder.load(root / "run" / "code" / "round-2" / "final")  # the exported code tower
    shifted = Encoder.load(root / "run" / "code" / "round-2" / "final")
    with torch.no_grad():
        for p in shifted.parameters():
            p.add_(0.1)
    shifted.save(second, tokenizer=load_tokenizer(first / "tokenizer.json"))
    assert average_main([str(first), str(second), str(tmp_path / "mix"), "--recipe", str(TINY), "--weight", "0.25"]) == 0
    mix = dict(Encoder.load(tmp_path / "mix").named_parameters())
    for name, param in trained.named_parameters():  # 0.75 x the model + 0.25 x (it + 0.1)
        assert torch.allclose(mix[name], param + 0.025, atol=1e-5), name
    run = tmp_path / "run"
    argv = tiny_argv("export", root, "--set", f'run_dir="{run}"', "--set", f'tokenizer.from_model="{tmp_path / "mix"}"',
                     "--set", "contrastive.max_steps=0")
    for stage in ("data", "tokenizer", "contrastive", "query", "code", "export"):
        argv[0] = stage
        assert main(argv) == 0
    assert (run / "model" / "model.onnx").is_file() and not (run / "contrastive" / "log.jsonl").read_text()
    assert average_main([str(first), str(second), str(tmp_path / "bad"), "--recipe", str(TINY), "--weight", "2"]) == 2
    assert "must be in [0, 1]" in capsys.readouterr().err


def test_the_query_stage_reuses_its_code_vectors_only_with_the_same_tower_and_settings(chain):
    import dataclasses

    import torch

    from codesearch.errors import CodesearchError
    from trainer.jsonl import read_jsonl
    from trainer.model import Encoder, tokenize_batch
    from trainer.recipe import Recipe
    from trainer.tokenizer import load_tokenizer
    from trainer.towers import code_vectors, pair_codes

    run = chain[0] / "run"
    final = run / "contrastive" / "final"
    tower, tok = Encoder.load(final).eval(), load_tokenizer(final / "tokenizer.json")
    pairs, cfg = read_jsonl(run / "data" / "pairs-train.jsonl"), Recipe.load(TINY).query
    written = np.load(run / "query" / "codes.npy")
    assert written.shape == (len(pairs), 64)
    ids, mask = tokenize_batch(tok, pair_codes(pairs, cfg)[:3], "", cfg.code_max_length, 0)
    with torch.no_grad():
        np.testing.assert_allclose(written[:3], tower(ids, mask).numpy(), atol=0.02)  # pair i's code, row i
    np.testing.assert_array_equal(code_vectors(tower, final, tok, pairs, cfg, run / "query", "").numpy(), written)
    with pytest.raises(CodesearchError, match=r"another tower or settings \(changed: docstring_share\)"):
        code_vectors(tower, final, tok, pairs, dataclasses.replace(cfg, docstring_share=0.0), run / "query", "")


def test_the_code_stage_embeds_each_query_once_with_the_frozen_query_tower(chain):
    import dataclasses

    import torch

    from codesearch.errors import CodesearchError
    from trainer.jsonl import read_jsonl
    from trainer.model import Encoder, tokenize_batch
    from trainer.recipe import Recipe
    from trainer.tokenizer import load_tokenizer
    from trainer.towers import pair_queries, query_vectors

    run = chain[0] / "run"
    final = run / "query" / "final"
    tower, tok = Encoder.load(final).eval(), load_tokenizer(final / "tokenizer.json")
    pairs, cfg = read_jsonl(run / "data" / "pairs-train.jsonl"), Recipe.load(TINY).code
    texts = pair_queries(pairs, cfg)
    assert any(t != p["query"] for t, p in zip(texts, pairs)) and any(t == p["query"] for t, p in zip(texts, pairs))
    written = np.load(run / "code" / "queries.npy")
    assert written.shape == (len(pairs), 64)
    ids, mask = tokenize_batch(tok, texts[:3], "query: ", cfg.query_max_length, 0)
    with torch.no_grad():
        np.testing.assert_allclose(written[:3], tower(ids, mask).numpy(), atol=0.02)  # pair i's query, row i
    np.testing.assert_array_equal(query_vectors(tower, final, tok, pairs, cfg, run / "code", "query: ").numpy(), written)
    with pytest.raises(CodesearchError, match=r"another tower or settings \(changed: search_style\)"):
        query_vectors(tower, final, tok, pairs, dataclasses.replace(cfg, search_style=0.0), run / "code", "query: ")
    with pytest.raises(CodesearchError, match=r"\(changed: tower\)"):
        query_vectors(tower, run / "contrastive" / "final", tok, pairs, cfg, run / "code", "query: ")
