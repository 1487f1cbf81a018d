"""The stages of a recipe, each one function: skip what is done, else do it and write its outputs.

    runs/<name>/data/          pairs-train.jsonl, pairs-valid.jsonl, corpus-train.jsonl, stats.json
    runs/<name>/tokenizer/     tokenizer.json (BPE trained on the corpus, or the base model's)
    runs/<name>/pretrain/      tokens.npy, checkpoint.pt, log.jsonl, final/ (Hugging Face folder)
    runs/<name>/contrastive/   checkpoint/, log.jsonl, final/ (trainer Encoder)
    runs/<name>/query/         codes.npy, checkpoint/, log.jsonl, final/ (the query tower, if [query] max_steps)
    runs/<name>/code/          queries.npy, checkpoint/, log.jsonl, final/ (the code tower, if [code] max_steps),
                               requery/ (the query tower tuned again, if [code] requery_steps),
                               round-N/ (the same for round N, if [code] rounds > 1)
    runs/<name>/model/         the exported model folder (or [export] out_dir)
    runs/<name>/eval/          <model>.<sets>.json: model, BM25 and hybrid figures per set

Pretraining and contrastive training resume from their checkpoints; the other stages are redone
only when their outputs are missing (delete a folder to redo it).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

from codesearch.errors import CodesearchError
from trainer.jsonl import read_jsonl, write_json
from trainer.recipe import Recipe

Log = Callable[[str], None]
STAGES = ("data", "tokenizer", "pretrain", "contrastive", "query", "code", "export", "eval")


# Settings whose change makes a run folder's finished stages stale (step counts may grow: runs resume).
_RUN_DEFINING = {"data": None, "tokenizer": None, "model": None, "encoder": None}


def check_run_dir(recipe: Recipe) -> None:
    """Refuse to mix two recipes in one run folder: a stage's outputs would silently be the other's."""
    current = {
        section: json.loads(json.dumps(dataclasses.asdict(getattr(recipe, section)), default=str))
        for section in _RUN_DEFINING
    }
    stamp = recipe.run_dir / "recipe.json"
    if stamp.is_file():
        before = json.loads(stamp.read_text(encoding="utf-8"))
        changed = [
            f"{section}.{key}"
            for section, values in current.items()
            for key in values
            if before.get(section, {}).get(key) != values[key]
        ]
        if changed:
            raise CodesearchError(
                f"{recipe.run_dir} was made with another recipe (changed: {', '.join(changed)}): "
                "delete it, or give another run_dir (--set run_dir=...)"
            )
        return
    recipe.run_dir.mkdir(parents=True, exist_ok=True)
    write_json(stamp, current)


def run_data(recipe: Recipe, bench_dir: Path | None, log: Log) -> dict:
    out = recipe.stage_dir("data")
    if (out / "stats.json").is_file():
        log(f"data: done ({out / 'stats.json'})")
        return json.loads((out / "stats.json").read_text(encoding="utf-8"))
    from trainer.data import build_dataset  # Tree-Sitter and the engine's walk: only this stage needs them

    return build_dataset(recipe.data, out, bench_dir if recipe.data.decontaminate else None, log=log)


def run_tokenizer(recipe: Recipe, log: Log) -> Path:
    from trainer.tokenizer import load_tokenizer, train_bpe

    path = recipe.stage_dir("tokenizer") / "tokenizer.json"
    if path.is_file():
        log(f"tokenizer: done ({path})")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    if recipe.base_path is not None:
        load_tokenizer(recipe.base_path).save(str(path))
        log(f"tokenizer: copied from base model {recipe.base_path}")
        return path
    if recipe.from_model is not None:
        from trainer.reload import start_tokenizer

        load_tokenizer(start_tokenizer(recipe.from_model)).save(str(path))
        log(f"tokenizer: copied from model {recipe.from_model}")
        return path
    texts = corpus_texts(recipe, recipe.tokenizer.max_chars)
    # The queries too, so natural-language words get tokens of their own, not only code's.
    texts += [p["query"] for p in read_jsonl(_data_file(recipe, "pairs-train.jsonl"))]
    tok = train_bpe(texts, recipe.tokenizer.vocab_size, path)
    log(f"tokenizer: BPE with {tok.get_vocab_size()} tokens from {len(texts)} texts -> {path}")
    return path


def run_pretrain(recipe: Recipe, log: Log, progress: bool) -> dict | None:
    if recipe.base_path is not None or recipe.from_model is not None:
        log(f"pretrain: skipped, starting from {recipe.base_path or recipe.from_model}")
        return None
    out = recipe.stage_dir("pretrain")
    if (out / "final" / "config.json").is_file():
        log(f"pretrain: done ({out / 'final'})")
        return None
    import torch

    from trainer.model import build_base
    from trainer.pretrain import pretrain
    from trainer.tokenizer import load_tokenizer, special_ids

    tok = load_tokenizer(_tokenizer_file(recipe))
    ids = special_ids(tok)
    torch.manual_seed(recipe.pretrain.seed)
    model_cfg = dataclasses.replace(recipe.model, vocab_size=tok.get_vocab_size())
    model = build_base(model_cfg, pad_token_id=ids["pad"], eos_token_id=ids["eos"])
    n_params = sum(p.numel() for p in model.parameters())
    log(f"pretrain: Qwen2 decoder with {n_params / 1e6:.1f}M parameters, {recipe.pretrain.steps} steps")
    summary = pretrain(model, tok, corpus_texts(recipe), recipe.pretrain, out, progress=progress)
    write_json(out / "summary.json", summary)
    log(f"pretrain: loss {summary['first_loss']} -> {summary['last_loss']}")
    return summary


def run_contrastive(recipe: Recipe, log: Log, progress: bool) -> dict | None:
    out = recipe.stage_dir("contrastive")
    if (out / "final" / "encoder.json").is_file():
        log(f"contrastive: done ({out / 'final'})")
        return None
    import torch

    from trainer.contrastive import train_contrastive
    from trainer.model import Encoder, load_base
    from trainer.tokenizer import load_tokenizer

    tok = load_tokenizer(_tokenizer_file(recipe))
    torch.manual_seed(recipe.contrastive.seed)
    if recipe.from_model is not None:
        from trainer.reload import load_start

        encoder, worst = load_start(recipe.from_model, recipe.model, recipe.encoder)
        read_back = "" if worst is None else f" (worst cosine to its vectors {worst:.4f})"
        log(f"contrastive: starting from {recipe.from_model}{read_back}")
    else:
        encoder = Encoder(load_base(recipe.base_path or recipe.stage_dir("pretrain") / "final"), recipe.encoder)
    pairs = read_jsonl(_data_file(recipe, "pairs-train.jsonl"))
    log(f"contrastive: {len(pairs)} pairs, {recipe.encoder.pooling} pooling, {recipe.contrastive.max_steps} steps")
    summary = train_contrastive(encoder, tok, pairs, recipe.contrastive, out, progress=progress)
    write_json(out / "summary.json", summary)
    log(f"contrastive: loss {summary['first_loss']} -> {summary['last_loss']}")
    return summary


def run_query(recipe: Recipe, log: Log, progress: bool) -> dict | None:
    """The query tower (trainer.towers), tuned against the contrastive stage's encoder as the code tower."""
    if recipe.query.max_steps <= 0:
        log("query: skipped ([query] max_steps is 0: model.onnx embeds queries too)")
        return None
    out = recipe.stage_dir("query")
    if (out / "final" / "encoder.json").is_file():
        log(f"query: done ({out / 'final'})")
        return None
    from trainer.model import Encoder
    from trainer.towers import code_vectors, train_query_tower
    from trainer.tokenizer import load_tokenizer

    final = recipe.stage_dir("contrastive") / "final"
    if not (final / "encoder.json").is_file():
        raise CodesearchError(f"no code tower: {final} missing (run the contrastive stage)")
    tok = load_tokenizer(_tokenizer_file(recipe))
    code_tower = Encoder.load(final)
    pairs = read_jsonl(_data_file(recipe, "pairs-train.jsonl"))
    codes = code_vectors(code_tower, final, tok, pairs, recipe.query, out, recipe.contrastive.code_prefix,
                         progress=progress, log=log)
    log(f"query: {len(pairs)} queries against all {len(pairs)} codes, {recipe.query.max_steps} steps")
    summary = train_query_tower(code_tower, codes, tok, pairs, recipe.query, out,
                                query_prefix=recipe.contrastive.query_prefix, progress=progress)
    write_json(out / "summary.json", summary)
    log(f"query: loss {summary['first_loss']} -> {summary['last_loss']}")
    return summary


def run_code(recipe: Recipe, log: Log, progress: bool) -> dict | None:
    """The code tower (trainer.towers): the contrastive encoder tuned against the query tower's
    vectors; then, with `[code] requery_steps`, the query tower tuned again against the new code
    tower's vectors (requery/). With `rounds` > 1 the two take turns again, each round going on from
    the last one's towers (code/round-N/)."""
    if recipe.code.max_steps <= 0:
        log("code: skipped ([code] max_steps is 0: model.onnx is the contrastive encoder)")
        return None
    last = round_dir(recipe, recipe.code.rounds)
    if (last / "final" / "encoder.json").is_file() and (
            recipe.code.requery_steps <= 0 or (last / "requery" / "final" / "encoder.json").is_file()):
        log(f"code: done ({last / 'final'})")
        return None
    from trainer.model import Encoder
    from trainer.tokenizer import load_tokenizer
    from trainer.towers import code_vectors, query_vectors, train_code_tower, train_query_tower

    code_tower, query_tower = (recipe.stage_dir(stage) / "final" for stage in ("contrastive", "query"))
    for final, stage in ((code_tower, "contrastive"), (query_tower, "query")):
        if not (final / "encoder.json").is_file():
            raise CodesearchError(f"{final} missing (run the {stage} stage)")
    tok = load_tokenizer(_tokenizer_file(recipe))
    pairs = read_jsonl(_data_file(recipe, "pairs-train.jsonl"))
    summary = None
    for n in range(1, recipe.code.rounds + 1):
        out = round_dir(recipe, n)
        step = f"code (round {n} of {recipe.code.rounds})" if recipe.code.rounds > 1 else "code"
        if not (out / "final" / "encoder.json").is_file():
            queries = query_vectors(Encoder.load(query_tower), query_tower, tok, pairs, recipe.code, out,
                                    recipe.contrastive.query_prefix, progress=progress, log=log)
            log(f"{step}: {len(pairs)} codes against all {len(pairs)} queries, {recipe.code.max_steps} steps")
            summary = train_code_tower(Encoder.load(code_tower), queries, tok, pairs, recipe.code, out,
                                       code_prefix=recipe.contrastive.code_prefix, progress=progress)
            write_json(out / "summary.json", summary)
            log(f"{step}: loss {summary['first_loss']} -> {summary['last_loss']}")
        code_tower = out / "final"
        if recipe.code.requery_steps <= 0:
            continue
        requery = out / "requery"
        if not (requery / "final" / "encoder.json").is_file():
            cfg = requery_config(recipe)
            codes = code_vectors(Encoder.load(code_tower), code_tower, tok, pairs, cfg, requery,
                                 recipe.contrastive.code_prefix, progress=progress, log=log)
            log(f"{step}: the query tower again, against the new code vectors, {cfg.max_steps} steps")
            summary = train_query_tower(Encoder.load(query_tower), codes, tok, pairs, cfg, requery,
                                        query_prefix=recipe.contrastive.query_prefix, progress=progress)
            write_json(requery / "summary.json", summary)
            log(f"{step}: requery loss {summary['first_loss']} -> {summary['last_loss']}")
        query_tower = requery / "final"
    return summary


def round_dir(recipe: Recipe, n: int) -> Path:
    """Round n's folder of the code stage: code/ for the first, code/round-N/ for the others."""
    out = recipe.stage_dir("code")
    return out if n == 1 else out / f"round-{n}"


def requery_config(recipe: Recipe):
    """The query tower's second tuning: [query]'s settings with [code]'s steps, rate and warmup."""
    return dataclasses.replace(recipe.query, max_steps=recipe.code.requery_steps, lr=recipe.code.lr,
                               warmup_steps=recipe.code.warmup_steps)


def code_tower_folder(recipe: Recipe, required: bool = True) -> Path:
    """The encoder that embeds code (model.onnx): the code stage's when the recipe has one, else the
    contrastive stage's. Missing, it is an error if `required`, else the contrastive stage's is used."""
    stage = "code" if recipe.code.max_steps > 0 else "contrastive"
    final = (round_dir(recipe, recipe.code.rounds) if stage == "code" else recipe.stage_dir(stage)) / "final"
    if not required and not (final / "encoder.json").is_file():
        stage, final = "contrastive", recipe.stage_dir("contrastive") / "final"
    if not (final / "encoder.json").is_file():
        raise CodesearchError(f"{final} missing (run the {stage} stage)")
    return final


def query_tower_folder(recipe: Recipe, required: bool = True) -> Path | None:
    """The query tower that ships (query.onnx), when the recipe asks for one: the code stage's second
    tuning of it if there is one, else the query stage's. Missing, it is an error if `required`, else
    the query stage's is used (and None if that is missing too)."""
    if recipe.query.max_steps <= 0:
        return None
    final, stage = recipe.stage_dir("query") / "final", "query"
    if recipe.code.max_steps > 0 and recipe.code.requery_steps > 0:
        requery = round_dir(recipe, recipe.code.rounds) / "requery" / "final"
        if required or (requery / "encoder.json").is_file():
            final, stage = requery, "code"
    if (final / "encoder.json").is_file():
        return final
    if required:
        raise CodesearchError(f"{final} is missing (run the {stage} stage)")
    return None


def run_export(recipe: Recipe, log: Log) -> Path:
    out = recipe.export_dir
    if (out / "codesearch.json").is_file():
        log(f"export: done ({out})")
        return out
    from trainer.export import export_onnx
    from trainer.model import Encoder

    final = code_tower_folder(recipe)
    query_tower = query_tower_folder(recipe)
    export_onnx(
        Encoder.load(final),
        _tokenizer_file(recipe),
        out,
        model_id=recipe.export.model_id or recipe.name,
        max_length=recipe.export.max_length,
        query_prefix=recipe.contrastive.query_prefix,
        code_prefix=recipe.contrastive.code_prefix,
        quantize=recipe.export.quantize,
        card=model_card(recipe),
        query_encoder=Encoder.load(query_tower) if query_tower is not None else None,
        code_view=recipe.export.code_view,
    )
    log(f"export: {out}")
    return out


def run_eval(recipe: Recipe | None, bench_dir: Path | None, log: Log, *, model: Path | None = None,
             sets: list[str] | None = None, out: Path | None = None) -> dict:
    """Evaluate `model` (a model folder), else the recipe's exported model, else its trained encoder.

    Without a recipe and a model, BM25 alone is measured. The figures go to `out`, by default
    <run_dir>/eval/<model>.<sets>.json (none without a recipe), which is shown, not redone, if it exists.
    """
    from trainer.eval import evaluate, onnx_embedder, print_report, torch_embedder

    from codesearch.model import ModelFolder

    sets = sets or (recipe.eval.sets if recipe else ["cosqa", "ojclone"])
    embedder, label = None, "bm25"
    weight, calibrate = None, None  # a given folder keeps its hybrid weight; the recipe's export is calibrated
    if model is not None:
        embedder, label = onnx_embedder(model), Path(model).name
        weight = ModelFolder.read(model).hybrid_weight
    elif recipe is not None and (recipe.export_dir / "codesearch.json").is_file():
        embedder, label, calibrate = onnx_embedder(recipe.export_dir), "exported", recipe.export_dir
    elif recipe is not None and (recipe.stage_dir("contrastive") / "final" / "encoder.json").is_file():
        from trainer.model import Encoder
        from trainer.tokenizer import load_tokenizer

        encoder = Encoder.load(code_tower_folder(recipe, required=False))
        query_tower = query_tower_folder(recipe, required=False)
        embedder = torch_embedder(encoder, load_tokenizer(_tokenizer_file(recipe)),
                                  query_encoder=Encoder.load(query_tower) if query_tower is not None else None,
                                  query_prefix=recipe.contrastive.query_prefix, code_prefix=recipe.contrastive.code_prefix,
                                  max_length=recipe.export.max_length, batch_size=recipe.eval.batch_size,
                                  code_view=recipe.export.code_view)
        label = "torch"
    elif recipe is not None:
        raise CodesearchError("nothing to evaluate: run the contrastive stage (or pass --model)")
    redo = out is not None  # an explicit file is always written afresh
    if out is None and recipe is not None:
        out = recipe.stage_dir("eval") / f"{label}.{'-'.join(sets)}.json"
    if out is not None and out.is_file() and not redo:
        log(f"eval: done ({out})")
        results = json.loads(out.read_text(encoding="utf-8"))
    else:
        valid = read_jsonl(_data_file(recipe, "pairs-valid.jsonl")) if recipe is not None and {"valid", "valid-docs"} & set(sets) else None
        results = evaluate(embedder, sets, bench_dir, valid_pairs=valid,
                           aggregate=recipe.eval.aggregate if recipe else "max",
                           max_valid=recipe.eval.max_valid if recipe else 2000, hybrid_weight=weight, log=log)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            write_json(out, results)
    if calibrate is not None and "valid" in results:
        folder = ModelFolder.read(calibrate)
        if folder.hybrid_weight != results["hybrid_weight"]:
            dataclasses.replace(folder, hybrid_weight=results["hybrid_weight"]).write()
            log(f"eval: hybrid_weight {results['hybrid_weight']} written to {calibrate / 'codesearch.json'}")
        write_card_metrics(calibrate / "MODEL_CARD.md", results)
    print_report(results, title=f"retrieval: {label}")
    return results


def write_card_metrics(card: Path, results: dict) -> None:
    """Put the figures of `results` in the model card's "## Evaluation" section (replacing an old one)."""
    from trainer.eval import COLUMNS

    text = card.read_text(encoding="utf-8") if card.is_file() else ""
    if "\n## Evaluation\n" in text:
        head, _, rest = text.partition("\n## Evaluation\n")
        after = rest.find("\n## ")
        text = head + (rest[after:] if after >= 0 else "\n")
    lines = ["", "## Evaluation", "",
             "`python -m trainer eval` on the exported model as shipped. BM25 is the baseline over identifier-split "
             "tokens; full text is the engine's own full-text search (LanceDB, English stemming and stop words); "
             "hybrid is the engine's fusion of the model with full text, the model weighted "
             f"{results.get('hybrid_weight', 1.0)} (calibrated on the validation split, never on the bench). On "
             "a clone set the engine's clone query ranks by the model's cosine after subtracting the corpus' mean "
             "vector (model, centered), and hybrid fuses that ranking with full text.", "",
             "| " + " | ".join(("set", "metric", *COLUMNS.values())) + " |", "|" + " --- |" * (2 + len(COLUMNS))]
    for name, result in results.items():
        if isinstance(result, dict):
            for metric in result["bm25"]:
                cells = [f"{result[k][metric]:.3f}" if k in result else "-" for k in COLUMNS]
                lines.append(f"| {name} ({result['queries']} queries, {result['docs']} docs) | {metric} | " + " | ".join(cells) + " |")
    card.write_text(text.rstrip("\n") + "\n" + "\n".join(lines) + "\n", encoding="utf-8")


def corpus_texts(recipe: Recipe, max_chars: int = 0) -> list[str]:
    """The training repositories' file texts (corpus-train.jsonl), up to `max_chars` in all (0: no cap)."""
    texts, total = [], 0
    for row in read_jsonl(_data_file(recipe, "corpus-train.jsonl")):
        if max_chars and total + len(row["text"]) > max_chars:
            break
        texts.append(row["text"])
        total += len(row["text"])
    return texts


def model_card(recipe: Recipe) -> str:
    """What the card says about how the model was made: recipe, data counts, training summaries."""
    lines = [f"# {recipe.export.model_id or recipe.name}", "", f"Trained with recipe `{recipe.source}`."]
    base = recipe.base_path or "a Qwen2-style decoder pretrained from scratch on the training corpus"
    from trainer.reload import is_encoder_folder  # export's caller has torch loaded already

    if recipe.from_model is not None and is_encoder_folder(recipe.from_model):
        base = f"the trained encoder {recipe.from_model}"
    elif recipe.from_model is not None:
        base = f"the exported model {recipe.from_model} (weights read back from its graph, trainer.reload)"
    lines += ["", f"Base: {base}. Pooling: {recipe.encoder.pooling}, dimension {recipe.encoder.dimension}."]
    stats_file = recipe.stage_dir("data") / "stats.json"
    if stats_file.is_file():
        stats = json.loads(stats_file.read_text(encoding="utf-8"))
        lines += ["", f"Data: {stats['pairs']['train']} training and {stats['pairs']['valid']} validation pairs "
                      f"from {len(stats['repositories'])} repositories; languages {stats['languages']['train']}; "
                      f"decontamination against the benchmarks: {stats['decontamination']}."]
    rounds = [round_dir(recipe, n) for n in range(1, recipe.code.rounds + 1)]
    folders = [recipe.stage_dir(s) for s in ("pretrain", "contrastive", "query")]
    for folder in folders + [f for out in rounds for f in (out, out / "requery")]:
        summary = folder / "summary.json"
        if summary.is_file():
            label = folder.relative_to(recipe.run_dir).as_posix()
            lines += ["", f"{label}: {json.dumps(json.loads(summary.read_text(encoding='utf-8')))}"]
    if recipe.export.card:
        lines += ["", recipe.export.card]
    return "\n".join(lines) + "\n"


def _data_file(recipe: Recipe, name: str) -> Path:
    path = recipe.stage_dir("data") / name
    if not path.is_file():
        raise CodesearchError(f"{path} missing: run the data stage first")
    return path


def _tokenizer_file(recipe: Recipe) -> Path:
    path = recipe.stage_dir("tokenizer") / "tokenizer.json"
    if not path.is_file():
        raise CodesearchError(f"{path} missing: run the tokenizer stage first")
    return path
