"""A training recipe: one TOML file that drives every stage, read into plain dataclasses.

    name = "tiny"                       # run_dir defaults to runs/<name>
    [data]        sources, languages, filters, dedupe, split       -> DataConfig
    [tokenizer]   base (a Hugging Face model folder) or vocab_size -> TokenizerConfig
    [pretrain]    steps, batch, lr, ... and BaseConfig fields      -> PretrainConfig + BaseConfig
    [contrastive] ContrastiveConfig and EncoderConfig fields       -> ContrastiveConfig + EncoderConfig
    [query]       the query tower (max_steps 0: none)              -> TowerConfig
    [code]        the code tower tuned against it (0: none)        -> TowerConfig
    [eval]        sets, bench_dir                                  -> EvalConfig
    [export]      model_id, max_length, quantize, out_dir          -> ExportConfig

Unknown keys are errors that list the valid ones. Strings that name paths may use {stdlib},
{purelib} (this Python's standard library and site-packages) and {recipe_dir}; relative paths are
relative to the current directory. A given `tokenizer.base` means no pretraining: the base model's
tokenizer and weights are used; `tokenizer.from_model` likewise starts from an exported model folder.
"""

from __future__ import annotations

import dataclasses
import sysconfig
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codesearch.errors import CodesearchError
from codesearch.model import CODE_VIEWS
from trainer.fetch import parse_pin

EVAL_SETS = ("valid", "valid-docs", "cosqa", "ojclone")  # what trainer.eval measures


@dataclass
class DataConfig:
    # Each source is a glob string (every match is one repository, named by its basename), or a table
    # {glob, exclude = [basename patterns]} or {path, repo, version?, optional?} (one repository), or a
    # pinned package the data stage downloads: {pypi = "name==version", sdist?}, {npm = "name@version"} or
    # {deb = "name=version", archive?, include = [globs inside it: one repository each], exclude?}.
    sources: list = field(default_factory=list)
    languages: list = field(default_factory=list)  # empty: every language the chunker knows
    ignore: list = field(default_factory=list)  # gitignore-style patterns for the walk, e.g. "tests/"
    max_file_bytes: int = 1_000_000
    min_query_words: int = 3  # "Return the value." passes, "Helper." does not
    max_query_chars: int = 400
    min_code_lines: int = 3  # non-blank lines, docstring removed: drops one-line getters
    max_code_chars: int = 6000  # ~1.5k tokens; longer code would be cut at code_max_length anyway
    near_dup_threshold: float = 0.85  # Jaccard of identifier 3-gram sets; a one-token edit of a 10-line function is ~0.9
    decontaminate: bool = True  # drop pairs whose code is in the bench (eval.bench_dir)
    decontaminate_threshold: float = 0.8
    valid_fraction: float = 0.1  # of pairs, in whole repositories
    valid_repos: list = field(default_factory=list)  # these repositories are the validation split (fraction unused)
    hard_negatives: str = "bm25"  # "bm25" or "none"
    seed: int = 0


@dataclass
class TokenizerConfig:
    base: str = ""  # a Hugging Face causal LM folder: its tokenizer and weights; pretraining is skipped
    # An exported codesearch model folder (e.g. the shipped one), or a trained Encoder folder (a run's
    # contrastive/final): its tokenizer, and its weights as the contrastive stage's start
    # (trainer.reload); no BPE and no pretraining. The recipe's shape fields must describe it.
    from_model: str = ""
    vocab_size: int = 16384  # BPE trained on the training corpus when there is no base
    max_chars: int = 100_000_000  # of corpus text fed to the BPE trainer


@dataclass
class PretrainConfig:
    steps: int = 2000
    batch_size: int = 16
    seq_length: int = 256  # tokens per packed sequence
    lr: float = 1e-3  # small models tolerate nanoGPT's "baby" rate
    min_lr: float = 1e-4  # cosine decays to this
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    checkpoint_every: int = 200
    log_every: int = 10
    seed: int = 0
    precision: str = "auto"  # matrix products in bf16 where the hardware has them (trainer.model.uses_bf16)


@dataclass
class EvalConfig:
    sets: list = field(default_factory=lambda: ["valid", "valid-docs", "cosqa", "ojclone"])
    bench_dir: str = "../shared/bench"
    aggregate: str = "max"  # long code's windows: "max" score over windows (as the engine) or "mean" vector
    batch_size: int = 32  # torch encoder only
    max_valid: int = 2000  # validation pairs ranked against each other (0: all)


@dataclass
class ExportConfig:
    model_id: str = ""  # default: the recipe name
    max_length: int = 512
    quantize: str = "none"  # "none" | "int8" | "fp16"
    out_dir: str = ""  # default: <run_dir>/model
    card: str = ""  # extra text for MODEL_CARD.md
    # How the engine shows code to the model (codesearch.model.CODE_VIEWS). "docstring-line": a Python
    # docstring as one line of plain text; a model trained on (first docstring sentence, code) pairs
    # otherwise reads a quoted docstring as the query itself (BENCHMARKS.md).
    code_view: str = "docstring-line"


SECTIONS = ("data", "tokenizer", "pretrain", "contrastive", "query", "code", "eval", "export")
TOP_LEVEL = ("name", "run_dir") + SECTIONS


@dataclass
class Recipe:
    name: str
    run_dir: Path
    data: DataConfig
    tokenizer: TokenizerConfig
    pretrain: PretrainConfig
    model: Any  # trainer.model.BaseConfig, from [pretrain]
    contrastive: Any  # trainer.contrastive.ContrastiveConfig, from [contrastive]
    encoder: Any  # trainer.model.EncoderConfig, from [contrastive]
    query: Any  # trainer.towers.TowerConfig, from [query]
    code: Any  # trainer.towers.TowerConfig, from [code]
    eval: EvalConfig
    export: ExportConfig
    source: str = ""  # where it was read from, for messages

    @property
    def base_path(self) -> Path | None:
        return Path(self.tokenizer.base) if self.tokenizer.base else None

    @property
    def from_model(self) -> Path | None:
        return Path(self.tokenizer.from_model) if self.tokenizer.from_model else None

    @property
    def bench_dir(self) -> Path:
        return Path(self.eval.bench_dir)

    def stage_dir(self, stage: str) -> Path:
        return self.run_dir / stage

    @property
    def export_dir(self) -> Path:
        return Path(self.export.out_dir) if self.export.out_dir else self.run_dir / "model"

    @classmethod
    def load(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> "Recipe":
        """Read a recipe file; `overrides` maps dotted keys ("data.sources", "run_dir") to values."""
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CodesearchError(f"recipe {path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CodesearchError(f"recipe {path}: cannot read: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise CodesearchError(f"recipe {path}: bad TOML: {exc}") from None
        for dotted, value in (overrides or {}).items():
            *sections, key = dotted.split(".")
            table = raw
            for section in sections:
                table = table.setdefault(section, {})
            table[key] = value
        return cls.from_dict(raw, source=str(path), recipe_dir=path.resolve().parent)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, source: str = "<dict>", recipe_dir: Path | None = None) -> "Recipe":
        from trainer.contrastive import ContrastiveConfig
        from trainer.model import PRECISIONS, BaseConfig, EncoderConfig
        from trainer.towers import TowerConfig

        where = f"recipe {source}"
        _check_keys(raw, TOP_LEVEL, where)
        for section in SECTIONS:
            if not isinstance(raw.get(section, {}), dict):
                raise CodesearchError(f"{where}: [{section}] must be a table")
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            raise CodesearchError(f"{where}: `name` (a string) is required")
        places = {
            "stdlib": sysconfig.get_paths()["stdlib"],
            "purelib": sysconfig.get_paths()["purelib"],
            "recipe_dir": str(recipe_dir or Path.cwd()),
        }

        def expand(text: str) -> str:
            try:
                return text.format(**places)
            except (KeyError, IndexError, ValueError) as exc:
                raise CodesearchError(f"{where}: bad placeholder in {text!r} (known: {', '.join(places)})") from exc

        pretrain, model = _split(raw.get("pretrain", {}), (PretrainConfig, BaseConfig), f"{where} [pretrain]")
        contrastive, encoder = _split(
            raw.get("contrastive", {}), (ContrastiveConfig, EncoderConfig), f"{where} [contrastive]"
        )
        contrastive.lora_targets = tuple(contrastive.lora_targets)
        query = _build(TowerConfig, raw.get("query", {}), f"{where} [query]")
        code = _build(TowerConfig, raw.get("code", {}), f"{where} [code]")
        if query.requery_steps or query.rounds != 1:
            raise CodesearchError(f"{where}: [query] requery_steps and rounds: the turns of the two towers are [code]'s")
        if code.rounds < 1 or (code.rounds > 1 and code.requery_steps <= 0):
            raise CodesearchError(f"{where}: [code] rounds must be 1, or more with requery_steps > 0 (the towers take turns)")
        if code.max_steps > 0 and query.max_steps <= 0:
            raise CodesearchError(f"{where}: [code] tunes the code tower against the query tower: "
                                  "it needs [query] max_steps > 0")
        for section, stage in (("pretrain", pretrain), ("contrastive", contrastive), ("query", query), ("code", code)):
            if stage.precision not in PRECISIONS:
                raise CodesearchError(f"{where}: [{section}] precision must be {', '.join(PRECISIONS)}")
        data = _build(DataConfig, raw.get("data", {}), f"{where} [data]")
        if not data.sources:
            raise CodesearchError(f"{where}: [data] sources is required (globs or {{path, repo}} tables)")
        data.sources = [_expand_source(s, expand, f"{where} [data] sources") for s in data.sources]
        if data.hard_negatives not in ("bm25", "none"):
            raise CodesearchError(f"{where}: [data] hard_negatives must be \"bm25\" or \"none\"")
        tokenizer = _build(TokenizerConfig, raw.get("tokenizer", {}), f"{where} [tokenizer]")
        tokenizer.base = expand(tokenizer.base)
        tokenizer.from_model = expand(tokenizer.from_model)
        if tokenizer.base and tokenizer.from_model:
            raise CodesearchError(f"{where}: [tokenizer] base and from_model are two starts: give one")
        evaluation = _build(EvalConfig, raw.get("eval", {}), f"{where} [eval]")
        evaluation.bench_dir = expand(evaluation.bench_dir)
        unknown_sets = set(evaluation.sets) - set(EVAL_SETS)
        if unknown_sets:
            raise CodesearchError(f"{where}: [eval] unknown sets {sorted(unknown_sets)}; valid: {', '.join(EVAL_SETS)}")
        export = _build(ExportConfig, raw.get("export", {}), f"{where} [export]")
        export.out_dir = expand(export.out_dir)
        if export.quantize not in ("none", "int8", "fp16"):
            raise CodesearchError(f"{where}: [export] quantize must be none, int8 or fp16")
        if export.code_view not in CODE_VIEWS:
            views = ", ".join(repr(v) for v in CODE_VIEWS)
            raise CodesearchError(f"{where}: [export] code_view must be one of {views}")
        run_dir = raw.get("run_dir") or f"runs/{name}"
        return cls(
            name=name,
            run_dir=Path(expand(str(run_dir))),
            data=data,
            tokenizer=tokenizer,
            pretrain=pretrain,
            model=model,
            contrastive=contrastive,
            encoder=encoder,
            query=query,
            code=code,
            eval=evaluation,
            export=export,
            source=source,
        )


def _check_keys(table: dict, valid: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(table) - set(valid))
    if unknown:
        raise CodesearchError(f"{where}: unknown key {', '.join(map(repr, unknown))}; valid keys: {', '.join(valid)}")


def _build(kind: type, table: dict, where: str) -> Any:
    """An instance of dataclass `kind` from a TOML table, checking names and value types."""
    fields = {f.name: f for f in dataclasses.fields(kind)}
    _check_keys(table, tuple(fields), where)
    defaults = kind()
    for key, value in table.items():
        expected = type(getattr(defaults, key))
        ok = isinstance(value, expected) or (expected is float and isinstance(value, int)) or (
            expected is tuple and isinstance(value, list)
        )
        if not ok or (expected is not bool and isinstance(value, bool)):
            raise CodesearchError(f"{where}: {key} must be of type {expected.__name__}, not {value!r}")
    return kind(**{k: float(v) if type(getattr(defaults, k)) is float else v for k, v in table.items()})


def _split(table: dict, kinds: tuple[type, ...], where: str) -> list[Any]:
    """One section shared by several dataclasses (their field names are disjoint): one instance each."""
    owner = {f.name: kind for kind in kinds for f in dataclasses.fields(kind)}
    _check_keys(table, tuple(owner), where)
    return [_build(kind, {k: v for k, v in table.items() if owner[k] is kind}, where) for kind in kinds]


def _expand_source(source: Any, expand, where: str) -> dict:
    """A source as a dict: {"glob", "exclude"}, {"path", "repo", "version", "optional"},
    {"kind" (pypi, npm), "spec", "repo", "version", "sdist", "optional"} or the same for a deb with
    "archive", "include" (globs inside the package: each match is a repository "<repo>-<name>") and
    "exclude" (names)."""
    if isinstance(source, str):
        source = {"glob": source}
    if not isinstance(source, dict):
        raise CodesearchError(f"{where}: each source is a glob string or a table, not {source!r}")
    if "deb" in source:
        _check_keys(source, ("deb", "archive", "include", "exclude", "repo", "optional"), where)
        name, version = parse_pin("deb", str(source["deb"]))
        include = source.get("include", [])
        return {
            "kind": "deb",
            "spec": str(source["deb"]).strip(),
            "repo": str(source.get("repo") or name),
            "version": version,
            "sdist": False,
            "archive": str(source.get("archive", "")),
            "include": [include] if isinstance(include, str) else [str(i) for i in include],
            "exclude": [str(x) for x in source.get("exclude", [])],
            "optional": bool(source.get("optional", False)),
        }
    for kind in ("pypi", "npm"):
        if kind in source:
            _check_keys(source, (kind, "repo", "optional") + (("sdist",) if kind == "pypi" else ()), where)
            name, version = parse_pin(kind, str(source[kind]))
            return {
                "kind": kind,
                "spec": str(source[kind]).strip(),
                "repo": str(source.get("repo") or name),
                "version": version,
                "sdist": bool(source.get("sdist", False)),
                "optional": bool(source.get("optional", False)),
            }
    if "glob" in source:
        _check_keys(source, ("glob", "exclude", "optional"), where)
        return {
            "glob": expand(source["glob"]),
            "exclude": list(source.get("exclude", [])),
            "optional": bool(source.get("optional", False)),
        }
    _check_keys(source, ("path", "repo", "version", "optional"), where)
    if "path" not in source:
        raise CodesearchError(f"{where}: a source table needs `glob`, `path`, `pypi`, `npm` or `deb`")
    path = expand(source["path"])
    return {
        "path": path,
        "repo": str(source.get("repo") or Path(path).name),
        "version": str(source.get("version", "")),
        "optional": bool(source.get("optional", False)),
    }
