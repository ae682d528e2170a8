"""The paper's Average and upstream's eval_results.tsv, on known per-pair numbers."""

from __future__ import annotations

import csv
import io

import pytest

from uniir_cli.data.benchmark import EVAL_PAIRS
from uniir_cli.evaluation.scoring import eval_results_tsv, summarize_pools

# Paper Table 6, zero-shot CLIP (ViT-L) column, in the 16 pairs' order: Recall@5, except
# Recall@10 for Fashion200K t0/t3 and FashionIQ. Their mean, 32.4875, is printed 32.5.
ZS_CLIP = [43.3, 61.1, 6.6, 36.2, 43.3, 45.1, 41.3, 79.0, 7.7, 26.1, 24.2, 20.5, 7.0, 13.2, 38.8, 26.4]
TEN_ROWS = {"fashion200k_task0", "fashion200k_task3", "fashioniq_task7"}


def _metrics(reported: float, ten: bool) -> dict[str, float]:
    """A pair's Recall@k with the reported k holding `reported` and decoys elsewhere."""
    if ten:
        return {"Recall@10": reported, "Recall@20": 0.9, "Recall@50": 0.95}
    return {"Recall@1": 0.01, "Recall@5": reported, "Recall@10": 0.99}


def test_paper_average_uses_the_reported_k_and_a_plain_mean() -> None:
    pairs = {p.name: _metrics(v / 100, p.name in TEN_ROWS) for p, v in zip(EVAL_PAIRS, ZS_CLIP)}
    summary = summarize_pools("test", {"global": pairs})
    average = summary["average"]["global"]
    assert average == {"value": pytest.approx(0.324875, abs=1e-12), "pairs": 16, "complete": True}
    assert round(100 * average["value"], 1) == 32.5
    assert summary["pairs"]["global"]["fashioniq_task7"]["reported"] == 0.07
    assert summary["pairs"]["global"]["mscoco_task0"]["reported"] == 0.611


def test_partial_average_is_marked_incomplete() -> None:
    summary = summarize_pools("test", {"local": {"mscoco_task0": _metrics(0.5, False), "fashioniq_task7": _metrics(0.25, True)}})
    assert summary["average"]["local"] == {"value": 0.375, "pairs": 2, "complete": False}


def _summary(pools: dict[str, list[str]]) -> dict:
    values = {"Recall@1": 0.125, "Recall@5": 0.5, "Recall@10": 1.0, "Recall@20": 0.0, "Recall@50": 0.4255}
    per_pool = {pool: {name: dict(values) for name in names} for pool, names in pools.items()}
    return summarize_pools("test", per_pool)


def test_tsv_matches_upstream_bytes() -> None:
    """Upstream writes with csv.writer(delimiter='\\t'): CRLF, floats printed by Python."""
    text = eval_results_tsv(_summary({"local": ["fashioniq_task7", "mscoco_task0"], "global": ["mscoco_task0"]}))
    assert text == (
        "TaskID\tTask\tDataset\tSplit\tMetric\tCandPool\tValue\tUnionPool\tUnionValue\r\n"
        "0\ttext -> image\tmscoco_task0\ttest\tRecall@1\tmscoco_task0_test\t0.125\tunion\t0.125\r\n"
        "0\ttext -> image\tmscoco_task0\ttest\tRecall@5\tmscoco_task0_test\t0.5\tunion\t0.5\r\n"
        "0\ttext -> image\tmscoco_task0\ttest\tRecall@10\tmscoco_task0_test\t1.0\tunion\t1.0\r\n"
        "7\timage,text -> image\tfashioniq_task7\ttest\tRecall@10\tfashioniq_task7\t1.0\t\t\r\n"
        "7\timage,text -> image\tfashioniq_task7\ttest\tRecall@20\tfashioniq_task7\t0.0\t\t\r\n"
        "7\timage,text -> image\tfashioniq_task7\ttest\tRecall@50\tfashioniq_task7\t0.4255\t\t\r\n"
    )


def test_tsv_of_all_pairs_is_sorted_by_task_then_upstream_order() -> None:
    names = [p.name for p in EVAL_PAIRS]
    rows = list(csv.reader(io.StringIO(eval_results_tsv(_summary({"local": names, "global": names}))), delimiter="\t"))
    assert len(rows) == 1 + 16 * 3
    datasets = list(dict.fromkeys(row[2] for row in rows[1:]))
    assert datasets == [p.name for p in sorted(EVAL_PAIRS, key=lambda p: p.task_id)] == names
    assert {row[7] for row in rows[1:]} == {"union"}


def test_global_only_run_writes_the_header_alone() -> None:
    """As upstream: union results only fill the last columns of local-pool rows."""
    text = eval_results_tsv(_summary({"global": [p.name for p in EVAL_PAIRS]}))
    assert text == "TaskID\tTask\tDataset\tSplit\tMetric\tCandPool\tValue\tUnionPool\tUnionValue\r\n"
