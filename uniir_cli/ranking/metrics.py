"""Ranking metrics as pure, vectorised functions (no I/O).

UniIR's "Recall@k" is a hit rate: 1 if any positive is among the top k, else 0, averaged
over queries and rounded to 4 decimals (spec 4.5). True recall (fraction of positives
found), MRR@k and nDCG@k (binary relevance) are reported beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Keys combine a query's row and a hashed candidate id; hashed dids stay below 1e8.
_ROW_STRIDE = np.int64(1 << 32)


@dataclass(frozen=True)
class Relevance:
    """Positives of each query as CSR arrays: row i owns ids[offsets[i]:offsets[i+1]]."""

    offsets: np.ndarray  # int64 [Q+1]
    ids: np.ndarray  # int64 [nnz], hashed dids

    @classmethod
    def from_lists(cls, positives: Sequence[Sequence[int]]) -> Relevance:
        counts = np.fromiter((len(p) for p in positives), dtype=np.int64, count=len(positives))
        offsets = np.zeros(len(positives) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        ids = np.fromiter((d for p in positives for d in p), dtype=np.int64, count=int(offsets[-1]))
        return cls(offsets, ids)

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1


def hit_matrix(ranked: np.ndarray, relevance: Relevance) -> np.ndarray:
    """bool [Q, depth]: whether the candidate at each rank is a positive of its query.

    Padding entries (id < 0, for queries with fewer results than the depth) never hit.
    """
    ranked = np.asarray(ranked, dtype=np.int64)
    if ranked.ndim != 2 or ranked.shape[0] != len(relevance):
        raise ValueError(f"ranked has shape {ranked.shape}, expected ({len(relevance)}, depth)")
    rows = np.repeat(np.arange(len(relevance), dtype=np.int64), relevance.counts)
    positive_keys = np.unique(rows * _ROW_STRIDE + relevance.ids)
    ranked_keys = np.arange(ranked.shape[0], dtype=np.int64)[:, None] * _ROW_STRIDE + ranked
    if not len(positive_keys):
        return np.zeros(ranked.shape, dtype=bool)
    # Binary search into the sorted positive keys: faster than np.isin at M-BEIR scale.
    pos = np.minimum(np.searchsorted(positive_keys, ranked_keys), len(positive_keys) - 1)
    return (positive_keys[pos] == ranked_keys) & (ranked >= 0)


def hit_rate_at(hits: np.ndarray, k: int) -> np.ndarray:
    """Per query: 1.0 if any positive is in the top k (UniIR's Recall@k)."""
    return hits[:, :k].any(axis=1).astype(np.float64)


def recall_at(hits: np.ndarray, counts: np.ndarray, k: int) -> np.ndarray:
    """Per query: fraction of its positives found in the top k (trec_eval recall)."""
    found = hits[:, :k].sum(axis=1)
    return np.divide(found, counts, out=np.zeros(len(counts)), where=counts > 0)


def mrr_at(hits: np.ndarray, k: int) -> np.ndarray:
    """Per query: 1/rank of the first positive within the top k, else 0."""
    top = hits[:, :k]
    first = top.argmax(axis=1)
    return np.where(top.any(axis=1), 1.0 / (first + 1), 0.0)


def ndcg_at(hits: np.ndarray, counts: np.ndarray, k: int) -> np.ndarray:
    """Per query: binary-relevance nDCG@k."""
    top = hits[:, :k].astype(np.float64)
    discounts = 1.0 / np.log2(np.arange(2, top.shape[1] + 2))
    dcg = top @ discounts
    ideal_hits = np.minimum(counts, top.shape[1])
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])[ideal_hits]
    return np.divide(dcg, ideal, out=np.zeros(len(counts)), where=ideal > 0)


def summarize(ranked: np.ndarray, relevance: Relevance, recall_ks: Sequence[int], cutoff: int = 10) -> dict[str, float]:
    """All metrics of one query set, averaged over queries.

    Keys: `Recall@k` (hit rate, UniIR's metric, rounded to 4 decimals as upstream),
    `TrueRecall@k`, `MRR@cutoff`, `nDCG@cutoff`, and `queries`.
    """
    hits = hit_matrix(ranked, relevance)
    counts = relevance.counts
    out: dict[str, float] = {"queries": float(len(relevance))}
    for k in recall_ks:
        out[f"Recall@{k}"] = round(float(hit_rate_at(hits, k).mean()), 4) if len(relevance) else 0.0
    for k in recall_ks:
        out[f"TrueRecall@{k}"] = float(recall_at(hits, counts, k).mean()) if len(relevance) else 0.0
    out[f"MRR@{cutoff}"] = float(mrr_at(hits, cutoff).mean()) if len(relevance) else 0.0
    out[f"nDCG@{cutoff}"] = float(ndcg_at(hits, counts, cutoff).mean()) if len(relevance) else 0.0
    return out


def paper_average(values: Sequence[float]) -> float:
    """The paper's "Average": plain mean over the evaluated pairs' reported metric."""
    return float(np.mean(values)) if len(values) else float("nan")
