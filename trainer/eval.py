"""Retrieval figures: the model, BM25, and the two fused as the engine fuses them, on four sets.

    valid       held-out validation pairs: each query against every validation code    MRR, R@1/5/10
    valid-docs  the same, each code with its docstring less the summary paragraph the     MRR, R@1/5/10
                query was made from: does the rest of a docstring help or hurt the model?
    cosqa       CoSQA dev: 500 web queries against the 6,267-function corpus           MRR, R@1/5/10
    ojclone     OJClone dev: each of 3,500 C programs queries all the others           MAP@R, MRR

On a clone set the engine ranks by the cosine after subtracting the corpus' mean vector (the
"centered" column, `codesearch.search.clone_center`), and that ranking is what hybrid fuses there.

BM25 is bm25s over `codesearch.lexical.identifier_tokens` (the engine's lexical tokens), the
baseline the targets name. Full text is the engine's own full-text search: a LanceDB table of
`lexical_text` indexed as `codesearch.store.full_text_config` says (BM25 with English stemming and
stop words). Hybrid is `codesearch.search.hybrid_fuse` of the model's and full text's scored
candidates, as many as the engine fetches for 10 results (the top 1000 on a clone set, whose R
reaches 499), the model's weighted by the model folder's `hybrid_weight`. With "valid" among the
sets that weight is calibrated there (held-out training repositories, never the bench): the grid
value with the best validation MRR. An embedder maps (texts, kind, languages) to one [windows, D]
array per text, as `codesearch.model.Encoder.embed_texts` does (code shown through the model's code
view); a text's score is its best window's ("max", as the engine ranks) or its mean vector's ("mean").
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codesearch.errors import CodesearchError
from codesearch.lexical import identifier_tokens, lexical_text
from codesearch.search import candidate_pool, clone_center, hybrid_fuse
from codesearch.store import full_text_config
from trainer.recipe import EVAL_SETS

Embedder = Callable[..., list[np.ndarray]]  # (texts, kind, languages=None) -> one [windows, D] array per text
SETS = EVAL_SETS
RESULTS = 10  # a hybrid query fuses the candidates the engine fetches for this many results
CLONE_DEPTH = 1000  # a clone set fuses each program's top 1000 others; R <= 499 on ojclone
HYBRID_WEIGHTS = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0)  # the grid `calibrate_hybrid_weight` tries
COLUMNS = {"model": "model", "centered": "model, centered", "bm25": "BM25", "fulltext": "full text",
           "hybrid": "hybrid"}  # a result's figures: heading; "centered" on a clone set only
Candidates = tuple[np.ndarray, np.ndarray]  # per query: [Q, depth] doc indices and their scores, best first


# ----------------------------------------------------------------------------- metrics


def mrr_recall(ranks: Sequence[int | None]) -> dict[str, float]:
    """{"mrr", "r@1", "r@5", "r@10"} from the 1-based rank of each query's first relevant item (None: not found)."""
    if not ranks:
        return {"mrr": 0.0, "r@1": 0.0, "r@5": 0.0, "r@10": 0.0}
    found = np.array([r if r is not None else np.inf for r in ranks], dtype=float)
    out = {"mrr": float(np.mean(1.0 / found))}
    for k in (1, 5, 10):
        out[f"r@{k}"] = float(np.mean(found <= k))
    return out


def first_relevant_rank(ranking: Sequence[int], relevant: set[int]) -> int | None:
    return next((pos for pos, item in enumerate(ranking, start=1) if item in relevant), None)


def map_at_r_rankings(rankings: Sequence[Sequence[int]], labels: Sequence) -> float:
    """MAP@R (CodeXGLUE POJ-104): for query i, R = number of other items with its label, and
    AP@R = sum over the top R of precision@j at each hit, divided by R. Rankings exclude the query."""
    labels = np.asarray(labels)
    counts = {label: int(n) for label, n in zip(*np.unique(labels, return_counts=True))}
    aps = []
    for i, ranking in enumerate(rankings):
        r = counts[labels[i]] - 1
        if r == 0:
            continue
        hits = labels[np.asarray(ranking[:r], dtype=int)] == labels[i]  # (R,)
        precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        aps.append(float(precision[hits].sum() / r))
    return float(np.mean(aps)) if aps else 0.0


def map_at_r(scores: np.ndarray, labels: Sequence) -> float:
    """MAP@R from an [N, N] similarity matrix (vectors: pass `v @ v.T`); the diagonal is ignored."""
    return map_at_r_rankings(rank_rows(scores, exclude_self=True), labels)


def rank_rows(scores: np.ndarray, depth: int | None = None, exclude_self: bool = False) -> np.ndarray:
    """Column indices of each row, best score first (ties by index); [Q, depth]. With
    `exclude_self` (square scores) row i never contains i."""
    scores = np.array(scores, dtype=np.float64)
    if exclude_self:
        np.fill_diagonal(scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")
    if exclude_self:
        order = order[:, :-1]  # -inf sorts last
    return order if depth is None else order[:, :depth]


# ----------------------------------------------------------------------------- scoring


def bm25_scores(docs: list[str], queries: list[str]) -> np.ndarray:
    """BM25 (bm25s defaults, k1 1.5, b 0.75) of every query against every doc: [Q, N] float32."""
    import bm25s

    retriever = bm25s.BM25()
    retriever.index([identifier_tokens(d) for d in docs], show_progress=False)
    out = np.zeros((len(queries), len(docs)), dtype=np.float32)
    for i, query in enumerate(queries):
        out[i] = retriever.get_scores(identifier_tokens(query))
    return out


def fulltext_candidates(docs: list[str], queries: list[str], depth: int, exclude_self: bool = False) -> Candidates:
    """The engine's full-text search of each query over `docs`: its top `depth` doc indices and
    scores, best first, -1 and 0 past its last match. With `exclude_self` (queries are the docs)
    query i never finds doc i."""
    import tempfile

    import lancedb
    import pyarrow as pa

    indices = np.full((len(queries), depth), -1, dtype=np.int64)
    scores = np.zeros((len(queries), depth), dtype=np.float64)
    with tempfile.TemporaryDirectory(prefix="codesearch-eval-") as tmp:
        table = lancedb.connect(tmp).create_table(
            "docs", pa.table({"doc": pa.array(range(len(docs)), pa.int64()), "lexical": [lexical_text(d) for d in docs]}))
        table.create_index("lexical", config=full_text_config(), replace=True)
        for q, query in enumerate(queries):
            text = lexical_text(query)
            if not text.strip():
                continue
            rows = (table.search(text, query_type="fts", fts_columns="lexical").select(["doc", "_score"])
                    .limit(depth + int(exclude_self)).to_list())
            found = [(r["doc"], r["_score"]) for r in rows if not (exclude_self and r["doc"] == q)][:depth]
            if found:
                indices[q, : len(found)] = [doc for doc, _ in found]
                scores[q, : len(found)] = [score for _, score in found]
    return indices, scores


def similarity(queries: list[np.ndarray], codes: list[np.ndarray], aggregate: str = "max") -> np.ndarray:
    """[Q, N] scores from per-text window vectors ([w, D] each): best pair of windows, or cosine of mean vectors."""
    if aggregate == "mean":
        q, c = _mean_vectors(queries), _mean_vectors(codes)
        return q @ c.T
    if aggregate != "max":
        raise ValueError(f"aggregate must be max or mean, not {aggregate!r}")
    q_starts = np.cumsum([0] + [len(w) for w in queries[:-1]])
    c_starts = np.cumsum([0] + [len(w) for w in codes[:-1]])
    windows = np.concatenate(queries) @ np.concatenate(codes).T  # (Qw, Nw)
    return np.maximum.reduceat(np.maximum.reduceat(windows, c_starts, axis=1), q_starts, axis=0)  # (Q, N)


def centered_windows(texts: list[np.ndarray]) -> list[np.ndarray]:
    """Each text's window vectors less `codesearch.search.clone_center` of them all, normalised
    again: their cosines are the engine's centered ones (`codesearch.store.centered_cosine`)."""
    flat = np.concatenate(texts)
    center = clone_center(flat.mean(axis=0), len(flat))
    out = []
    for windows in texts:
        w = windows - center
        out.append(w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12))
    return out


def _mean_vectors(texts: list[np.ndarray]) -> np.ndarray:
    v = np.stack([w.mean(axis=0) for w in texts])  # (N, D)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


# ----------------------------------------------------------------------------- embedders


def onnx_embedder(model_dir: Path, threads: int = 0) -> Embedder:
    """The model as shipped: a model folder embedded by the engine's `codesearch.model.Encoder`."""
    from codesearch.model import Encoder, ModelFolder

    encoder = Encoder(ModelFolder.read(model_dir), device="cpu", threads=threads)
    return lambda texts, kind, languages=None: encoder.embed_texts(texts, kind=kind, languages=languages)


def torch_embedder(encoder, tok, *, query_prefix: str, code_prefix: str, max_length: int,
                   batch_size: int = 32, overlap: int = 64, query_encoder=None, code_view: str = "") -> Embedder:
    """A trainer `Encoder` behind the engine's interface: same prefixes, same token windows, code shown
    through `code_view` as the exported folder will; queries through `query_encoder` when there is a
    query tower."""
    import torch

    from codesearch.model import code_as_seen, pad_batch, token_windows
    from trainer.tokenizer import special_ids

    pad = special_ids(tok)["pad"]

    def embed(texts: list[str], kind: str, languages: Sequence[str] | None = None) -> list[np.ndarray]:
        prefix = query_prefix if kind == "query" else code_prefix
        if kind == "code":
            texts = code_as_seen(texts, code_view, languages)
        model = query_encoder if kind == "query" and query_encoder is not None else encoder
        windows = [token_windows(e.ids, max_length, overlap) for e in tok.encode_batch([prefix + t for t in texts])]
        flat = [w or [pad] for ws in windows for w in ws]
        order = sorted(range(len(flat)), key=lambda i: len(flat[i]))
        vectors = np.zeros((len(flat), 0), dtype=np.float32)
        model.eval()
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                ids, mask = pad_batch([flat[i] for i in rows], pad)
                out = model(torch.from_numpy(ids), torch.from_numpy(mask)).float().numpy()  # (B, D)
                if vectors.shape[1] == 0:
                    vectors = np.zeros((len(flat), out.shape[1]), dtype=np.float32)
                vectors[rows] = out
        splits = np.cumsum([len(ws) for ws in windows])[:-1]
        return np.split(vectors, splits)

    return embed


# ----------------------------------------------------------------------------- sets


@dataclass
class EvalSet:
    name: str
    docs: list[str]
    queries: list[str]  # empty for a clone set: every doc queries the others
    relevant: list[set[int]]  # per query, for a retrieval set
    labels: list  # per doc, for a clone set
    languages: list[str] | None = None  # per doc; None: not known

    @property
    def is_clone(self) -> bool:
        return not self.queries


def load_set(name: str, bench_dir: Path | None = None, valid_pairs: list[dict] | None = None,
             max_valid: int = 2000, seed: int = 0) -> EvalSet:
    """One of SETS: "valid" and "valid-docs" from the given pairs, "cosqa" and "ojclone" from the bench folder."""
    if name in ("valid", "valid-docs"):
        pairs = list(valid_pairs or [])
        if not pairs:
            raise CodesearchError("no validation pairs to evaluate on (pairs-valid.jsonl is empty)")
        if max_valid and len(pairs) > max_valid:
            pairs = random.Random(seed).sample(pairs, max_valid)
        docs = ([p["code"] for p in pairs] if name == "valid" else
                [without_summary(p["code_full"]) if p.get("code_full") else p["code"] for p in pairs])
        return EvalSet(name, docs, [p["query"] for p in pairs], [{i} for i in range(len(pairs))], [],
                       [p.get("language", "") for p in pairs])
    if bench_dir is None or not Path(bench_dir).is_dir():
        raise CodesearchError(f"bench folder {bench_dir} not found (set [eval] bench_dir or --bench)")
    bench_dir = Path(bench_dir)
    if name == "cosqa":
        corpus = _read_jsonl(bench_dir / "cosqa" / "corpus.jsonl")
        queries = _read_jsonl(bench_dir / "cosqa" / "queries-dev.jsonl")
        index = {row["id"]: i for i, row in enumerate(corpus)}
        return EvalSet("cosqa", [row["code"] for row in corpus], [q["query"] for q in queries],
                       [{index[r] for r in q["relevant"] if r in index} for q in queries], [], ["python"] * len(corpus))
    if name == "ojclone":
        programs = _read_jsonl(bench_dir / "ojclone" / "programs-dev.jsonl")
        return EvalSet("ojclone", [p["code"] for p in programs], [], [], [p["problem"] for p in programs],
                       ["c"] * len(programs))
    raise CodesearchError(f"unknown eval set {name!r}; valid: {', '.join(SETS)}")


def without_summary(code: str) -> str:
    """Python code whose docstring has lost its first paragraph (where a pair's query comes from) and
    keeps the rest as written; a docstring of one paragraph goes. Other code comes back as it is."""
    from codesearch.chunking import rewrite_docstring, string_literal_parts

    def rest(literal: str) -> str:
        parts = string_literal_parts(literal)
        if parts is None:
            return ""
        prefix, quote, body = parts
        body = body.strip("\n")
        blank = re.search(r"\n[ \t]*\n", body)
        return prefix + quote + body[blank.end():].lstrip() + quote if blank else ""

    return rewrite_docstring(code, rest)


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise CodesearchError(f"bench file {path} not found")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# ----------------------------------------------------------------------------- evaluate


def score_set(s: EvalSet, scores: np.ndarray) -> tuple[dict[str, float], Candidates]:
    """Metrics of one [Q, N] score matrix, and each query's candidates for fusion."""
    rankings = rank_rows(scores, exclude_self=s.is_clone)
    top = rankings[:, : CLONE_DEPTH if s.is_clone else candidate_pool(RESULTS)]
    return ranked_metrics(s, rankings), (top, np.take_along_axis(np.asarray(scores), top, axis=1))


def ranked_metrics(s: EvalSet, ranked: Sequence[Sequence[int]]) -> dict[str, float]:
    """Metrics of one ranked list of doc indices per query (a list may stop short: what it lacks is not found)."""
    if s.is_clone:
        labels = np.asarray(s.labels)
        ranks = [first_relevant_rank(r, set(np.flatnonzero(labels == labels[i])) - {i}) for i, r in enumerate(ranked)]
        return {"map@r": map_at_r_rankings(ranked, s.labels), "mrr": mrr_recall(ranks)["mrr"]}
    return mrr_recall([first_relevant_rank(r, rel) for r, rel in zip(ranked, s.relevant)])


def candidate_metrics(s: EvalSet, candidates: Candidates) -> dict[str, float]:
    """Metrics of one retriever's candidates alone (the -1 padding left out)."""
    return ranked_metrics(s, [row[row >= 0].tolist() for row in candidates[0]])


def fused_metrics(s: EvalSet, model: Candidates, lexical: Candidates, weight: float = 1.0) -> dict[str, float]:
    """Metrics of the engine's fusion of the model's and a lexical retriever's candidates, the model
    weighted `weight`."""
    fused = []
    for mi, ms, li, ls in zip(*model, *lexical):
        matched = li >= 0  # -1 pads a full-text list that ran out of matches: it holds them all
        vector, fulltext = list(zip(mi.tolist(), ms.tolist())), list(zip(li[matched].tolist(), ls[matched].tolist()))
        fused.append([item for item, _ in hybrid_fuse(vector, fulltext, weight, complete=not matched.all())])
    return ranked_metrics(s, fused)


def calibrate_hybrid_weight(s: EvalSet, model: Candidates, lexical: Candidates) -> float:
    """The model's fusion weight with the best MRR on `s` (the validation set), ties to the larger."""
    mrr = {w: fused_metrics(s, model, lexical, w)["mrr"] for w in HYBRID_WEIGHTS}
    return max(HYBRID_WEIGHTS, key=lambda w: (round(mrr[w], 6), w))


def evaluate(embedder: Embedder | None, sets: Sequence[str], bench_dir: Path | None, *,
             valid_pairs: list[dict] | None = None, aggregate: str = "max", max_valid: int = 2000,
             hybrid_weight: float | None = None, log: Callable[[str], None] = lambda msg: None) -> dict:
    """{set: {"queries", "docs", "model", "bm25", "hybrid"}, "hybrid_weight": w}; model, hybrid and
    the weight are absent without an embedder. `hybrid_weight` None: calibrated on "valid" when it
    is among the sets (evaluated first), else 1.0."""
    results: dict = {}
    if embedder is not None and hybrid_weight is None and "valid" not in sets:
        hybrid_weight = 1.0
    for name in sorted(sets, key=lambda n: n != "valid"):
        s = load_set(name, bench_dir, valid_pairs, max_valid)
        queries = s.docs if s.is_clone else s.queries
        log(f"eval {name}: {len(queries)} queries, {len(s.docs)} docs")
        bm25_metrics, _ = score_set(s, bm25_scores(s.docs, queries))
        fulltext = fulltext_candidates(s.docs, queries, CLONE_DEPTH if s.is_clone else candidate_pool(RESULTS),
                                       exclude_self=s.is_clone)
        result = {"queries": len(queries), "docs": len(s.docs), "bm25": bm25_metrics,
                  "fulltext": candidate_metrics(s, fulltext)}
        if embedder is not None:
            code_vectors = embedder(s.docs, "code", s.languages)
            query_vectors = code_vectors if s.is_clone else embedder(s.queries, "query")
            result["model"], model_candidates = score_set(s, similarity(query_vectors, code_vectors, aggregate))
            if s.is_clone:  # the engine's clone query: the cosine after subtracting the corpus' mean vector
                centered = centered_windows(code_vectors)
                result["centered"], model_candidates = score_set(s, similarity(centered, centered, aggregate))
            if hybrid_weight is None:  # name == "valid"
                hybrid_weight = calibrate_hybrid_weight(s, model_candidates, fulltext)
                log(f"eval: hybrid weight {hybrid_weight} (best validation MRR of {HYBRID_WEIGHTS})")
            result["hybrid"] = fused_metrics(s, model_candidates, fulltext, hybrid_weight)
        results[name] = result
    if embedder is not None:
        results["hybrid_weight"] = hybrid_weight
    return results


def print_report(results: dict, title: str = "retrieval") -> None:
    """A rich table on stdout: one row per set and metric, columns model, BM25, full text, hybrid."""
    from rich.console import Console
    from rich.table import Table

    weight = results.get("hybrid_weight")
    table = Table(title=title if weight is None else f"{title} (hybrid: model weight {weight})")
    for column in ("set", "metric", *COLUMNS.values()):
        table.add_column(column, justify="left" if column in ("set", "metric") else "right")
    for name, result in results.items():
        if not isinstance(result, dict):
            continue
        for metric in result["bm25"]:
            cells = [f"{result[k][metric]:.3f}" if k in result else "-" for k in COLUMNS]
            table.add_row(f"{name} ({result['queries']}q/{result['docs']}d)", metric, *cells)
    Console().print(table)
