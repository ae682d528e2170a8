"""The score step: retrieval results + qrels -> metrics.json and upstream's eval_results.tsv."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from uniir_cli import atomic
from uniir_cli.data.benchmark import EVAL_PAIRS, EvalPair, task_name
from uniir_cli.data.ids import hash_dids, unhash_qids
from uniir_cli.data.mbeir import Qrels
from uniir_cli.errors import DataError
from uniir_cli.evaluation.retrieval import read_results, results_file
from uniir_cli.ranking.metrics import Relevance, paper_average, summarize
from uniir_cli.rundir import RunDir

log = logging.getLogger(__name__)


def score_pair(run: RunDir, pair: EvalPair, split: str, pool: str, qrels: Qrels, cutoff: int) -> dict[str, float]:
    """All metrics of one (pair, pool); a query without qrels is an error, as upstream."""
    results = read_results(results_file(run, pair, split, pool))
    qids = unhash_qids(results.qids)
    missing = [q for q in qids if q not in qrels.relevant]
    if missing:
        raise DataError(
            f"{qrels.path}: {len(missing)} query id(s) have no qrels (e.g. {', '.join(missing[:3])}); "
            "the qrels file does not belong to this query set"
        )
    lists = [qrels.relevant[q] for q in qids]
    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum([len(dids) for dids in lists], out=offsets[1:])
    relevance = Relevance(offsets, hash_dids([d for dids in lists for d in dids]))
    return summarize(results.ids, relevance, pair.recall_ks, cutoff=cutoff)


def score(
    run: RunDir,
    searched: list[tuple[EvalPair, str]],
    split: str,
    qrels_of: Callable[[EvalPair], Qrels],
    cutoff: int = 10,
) -> dict[str, Any]:
    """Score every searched (pair, pool); write metrics.json and eval_results.tsv."""
    per_pool: dict[str, dict[str, dict[str, float]]] = {}
    for pair, pool in searched:
        per_pool.setdefault(pool, {})[pair.name] = score_pair(run, pair, split, pool, qrels_of(pair), cutoff)
    pairs = list(dict.fromkeys(pair for pair, _ in searched))
    summary = summarize_pools(split, per_pool, pairs)
    for pool, results in per_pool.items():
        for name, metrics in results.items():
            log.info("%s %s: Recall@%d = %.4f", name, pool, summary["reported_k"][name], metrics["reported"])
    atomic.write_json(run.metrics_json, summary)
    atomic.write_text(run.eval_results_tsv, eval_results_tsv(summary, pairs))
    return summary


def summarize_pools(split: str, per_pool: dict[str, dict[str, dict[str, float]]],
                    pairs: Sequence[EvalPair] = EVAL_PAIRS) -> dict[str, Any]:
    """metrics.json: each pair's metrics plus `reported` (the paper's metric: Recall@5, Recall@10
    for Fashion200K t0/t3 and FashionIQ; a declared dataset's `recall_k`), the k of each pair
    (`reported_k`), and per pool a plain mean of the reported values over the pairs present
    (`complete` once M-BEIR's 16 are in: then it is the paper's Average)."""
    reported_k = {p.name: p.reported_k for p in pairs}
    for results in per_pool.values():
        for name, metrics in results.items():
            metrics["reported"] = metrics[f"Recall@{reported_k[name]}"]
    mbeir = {p.name for p in EVAL_PAIRS}
    return {
        "split": split,
        "pairs": per_pool,
        "reported_k": {name: k for name, k in reported_k.items() if any(name in r for r in per_pool.values())},
        "average": {
            pool: {
                "value": paper_average([m["reported"] for m in results.values()]),
                "pairs": len(results),
                "complete": mbeir <= set(results),
            }
            for pool, results in per_pool.items()
        },
    }


TSV_HEADER = ("TaskID", "Task", "Dataset", "Split", "Metric", "CandPool", "Value", "UnionPool", "UnionValue")


def eval_results_tsv(summary: dict[str, Any], pairs: Sequence[EvalPair] = EVAL_PAIRS) -> str:
    """Upstream's `eval_results_*.tsv`, byte for byte: written by Python's `csv` module (tab
    delimiter, CRLF line ends), values as Python prints the 4-decimal floats (`0.125`,
    `1.0`).

    One row per (local-pool pair, Recall@k), sorted by task id, then the order of `pairs`
    (M-BEIR's 16 in upstream's order, then declared datasets'); the pair's union result sits in the last two columns (`union`, value), or
    both are empty without one. As upstream, union results only fill those columns: a
    global-only run writes the header alone.
    """
    split = summary["split"]
    local = summary["pairs"].get("local", {})
    union = summary["pairs"].get("global", {})
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t")
    writer.writerow(TSV_HEADER)
    for pair in sorted((p for p in pairs if p.name in local), key=lambda p: p.task_id):
        for k in pair.recall_ks:
            metric = f"Recall@{k}"
            union_cells = ["union", union[pair.name][metric]] if pair.name in union else ["", ""]
            writer.writerow(
                [pair.task_id, task_name(pair.task_id), pair.name, split, metric, pair.pool_name(split),
                 local[pair.name][metric], *union_cells]
            )
    return out.getvalue()
