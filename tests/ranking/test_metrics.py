"""Metrics against hand-computed values and a per-query reference loop."""

from __future__ import annotations

import math

import numpy as np

from uniir_cli.ranking.metrics import (
    Relevance,
    hit_matrix,
    mrr_at,
    ndcg_at,
    recall_at,
    summarize,
)


def test_hand_computed_example() -> None:
    ranked = np.array([[5, 1, 9], [7, 8, 2], [3, -1, -1]])
    rel = Relevance.from_lists([[1], [2, 8], [4]])
    hits = hit_matrix(ranked, rel)
    assert hits.tolist() == [[False, True, False], [False, True, True], [False, False, False]]
    out = summarize(ranked, rel, recall_ks=(1, 2, 3), cutoff=3)
    assert out["Recall@1"] == 0.0
    assert out["Recall@2"] == round(2 / 3, 4)
    assert out["TrueRecall@2"] == (1 + 0.5 + 0) / 3
    assert out["TrueRecall@3"] == (1 + 1 + 0) / 3
    assert out["MRR@3"] == (0.5 + 0.5 + 0) / 3
    ndcg_q1 = (1 / math.log2(3)) / 1.0
    ndcg_q2 = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert math.isclose(out["nDCG@3"], (ndcg_q1 + ndcg_q2) / 3)
    assert out["queries"] == 3


def test_against_reference_loop() -> None:
    rng = np.random.default_rng(0)
    queries, depth = 400, 50
    ranked = rng.integers(0, 300, size=(queries, depth))
    positives = [sorted(set(rng.integers(0, 300, size=rng.integers(1, 6)).tolist())) for _ in range(queries)]
    rel = Relevance.from_lists(positives)
    hits = hit_matrix(ranked, rel)
    counts = rel.counts
    for k in (1, 5, 10, 50):
        expected_hit = [float(any(d in p for d in r[:k])) for r, p in zip(ranked.tolist(), positives)]
        expected_recall = [sum(d in p for d in r[:k]) / len(p) for r, p in zip(ranked.tolist(), positives)]
        assert summarize(ranked, rel, (k,))[f"Recall@{k}"] == round(float(np.mean(expected_hit)), 4)
        np.testing.assert_allclose(recall_at(hits, counts, k), expected_recall)
    first = [next((i + 1 for i, d in enumerate(r[:10]) if d in p), None) for r, p in zip(ranked.tolist(), positives)]
    np.testing.assert_allclose(mrr_at(hits, 10), [1 / f if f else 0.0 for f in first])
    assert ((ndcg_at(hits, counts, 10) >= 0) & (ndcg_at(hits, counts, 10) <= 1)).all()
