"""Inner-product search over L2-normalised vectors: exact (torch, chunked) or faiss.

Upstream casts the stored fp16 embeddings to fp32, L2-normalises them and searches a faiss
`IDMap,Flat` inner-product index. The exact backend here does the same arithmetic chunk by
chunk straight from the fp16 arrays, so a 5.6M x 768 pool never needs its 17 GB fp32 copy.
Both backends break score ties by candidate id (smaller first), so they return the same
top-k.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from uniir_cli.atomic import atomic_path
from uniir_cli.errors import UniirError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

PAD_ID = -1  # fills result rows when a pool has fewer than k candidates


@dataclass(frozen=True)
class PoolBlock:
    """A contiguous block of a pool: fp16/fp32 vectors (possibly memory-mapped) and their ids."""

    vectors: np.ndarray  # [n, d], not normalised
    ids: np.ndarray  # int64 [n]


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """fp32 copy with unit L2 rows (zero rows stay zero); multiplies by the reciprocal norm,
    as `faiss.normalize_L2` does."""
    out = np.array(x, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", out, out))[:, None]
    out *= np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return out


def _normalize_chunk(chunk: np.ndarray, device: str) -> "torch.Tensor":
    """`normalize_rows` on the device (fp16 rows travel, fp32 arithmetic happens there)."""
    import torch

    # A writable copy (memory-mapped shards are read-only): fp32 on the CPU in one pass,
    # fp16 to a GPU (half the transfer) and converted there.
    host = np.array(chunk, dtype=np.float32 if device == "cpu" else np.float16)
    x = torch.from_numpy(host).to(device).float()
    norms = x.pow(2).sum(dim=1, keepdim=True).sqrt()
    return x * torch.where(norms > 0, 1.0 / norms, torch.zeros_like(norms))


def _merge_topk(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best k per row of small candidate lists (scores, ids [Q, m]) by (-score, id)."""
    order = np.lexsort((ids, -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


def _finish_topk(
    values: np.ndarray, index: np.ndarray, ids: np.ndarray, k: int, row_scores: Callable[[int], np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k (ties by smaller id) from the k+1 best (values, index) of each row.

    A tie crosses the k-th place exactly when the (k+1)-th best equals the k-th; only those
    rows are redone from their full scores (`row_scores(row)`).
    """
    kk = min(k, len(ids))
    tied = np.nonzero(values[:, kk] == values[:, kk - 1])[0] if values.shape[1] > kk else []
    top_scores = values[:, :kk].copy()
    top_ids = ids[index[:, :kk]]
    for row in tied:
        scores = row_scores(int(row))
        # the recomputed scores may round differently from the search's (faiss vs numpy):
        # lower the bar so that at least kk candidates stay
        bar = min(top_scores[row, -1], np.partition(scores, len(scores) - kk)[len(scores) - kk])
        keep = np.nonzero(scores >= bar)[0]
        best = np.lexsort((ids[keep], -scores[keep]))[:kk]
        top_scores[row], top_ids[row] = scores[keep[best]], ids[keep[best]]
    return _merge_topk(top_scores, top_ids, kk)


def _tile_topk_torch(queries: "torch.Tensor", chunk: "torch.Tensor", ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import torch

    scores = queries @ chunk.T
    values, index = torch.topk(scores, min(k + 1, scores.shape[1]), dim=1)
    return _finish_topk(values.cpu().numpy(), index.cpu().numpy(), ids, k, lambda r: scores[r].cpu().numpy())


def _tile_topk_faiss(queries: np.ndarray, chunk: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The same with faiss's exact kNN kernel (faster than torch's matmul on CPUs)."""
    import faiss

    values, index = faiss.knn(queries, chunk, min(k + 1, len(chunk)), metric=faiss.METRIC_INNER_PRODUCT)
    return _finish_topk(values, index, ids, k, lambda r: chunk @ queries[r])


def _pad(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    missing = k - scores.shape[1]
    if missing <= 0:
        return scores[:, :k], ids[:, :k].astype(np.int64)
    return (
        np.pad(scores, ((0, 0), (0, missing)), constant_values=-np.inf),
        np.pad(ids.astype(np.int64), ((0, 0), (0, missing)), constant_values=PAD_ID),
    )


def exact_search(
    blocks: Sequence[PoolBlock],
    queries: np.ndarray,
    k: int,
    device: str = "cpu",
    chunk_rows: int = 65536,
    query_batch: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine top-k of `queries` over the pool blocks: (scores fp32 [Q,k], ids int64 [Q,k]).

    Scores are fp32 (as upstream), computed one pool chunk (x query batch) at a time, so
    memory stays at one tile plus the pool's own fp16 arrays; each tile's exact top-k is
    merged into the running result. On CPU with faiss installed, faiss's exact kNN kernel
    scores the tiles (about 1.4x torch's matmul here); on GPU, torch does.
    """
    import torch

    use_faiss = device == "cpu" and faiss_available()
    q_all = normalize_rows(queries)
    # faiss blocks the queries itself; torch tiles bound the score matrix's memory.
    step = max(1, len(q_all)) if use_faiss else query_batch
    q_device = torch.from_numpy(q_all).to(device)
    best_scores = np.full((len(q_all), 0), -np.inf, dtype=np.float32)
    best_ids = np.full((len(q_all), 0), PAD_ID, dtype=np.int64)
    for block in blocks:
        for start in range(0, len(block.ids), chunk_rows):
            chunk = _normalize_chunk(block.vectors[start : start + chunk_rows], device)
            chunk_ids = np.asarray(block.ids[start : start + chunk_rows], dtype=np.int64)
            parts = []
            for q_start in range(0, len(q_all), step):
                if use_faiss:
                    parts.append(_tile_topk_faiss(q_all[q_start : q_start + step], chunk.numpy(), chunk_ids, k))
                else:
                    parts.append(_tile_topk_torch(q_device[q_start : q_start + step], chunk, chunk_ids, k))
            if not parts:
                continue
            best_scores, best_ids = _merge_topk(
                np.concatenate([best_scores, np.concatenate([p[0] for p in parts])], axis=1),
                np.concatenate([best_ids, np.concatenate([p[1] for p in parts])], axis=1),
                k,
            )
    return _pad(best_scores, best_ids, k)


def build_faiss_index(blocks: Sequence[PoolBlock], factory: str = "Flat", use_gpu: bool = True) -> "object":
    """A faiss inner-product index over the normalised pool, with hashed dids as its ids.

    `factory` is a faiss index-factory string ("Flat" = exact, as upstream; "IVF4096,Flat",
    "HNSW32", "IVF4096,PQ64" for larger pools). On machines with faiss-gpu the index is
    sharded over all GPUs.
    """
    try:
        import faiss
    except ImportError:
        raise UniirError(
            "faiss is not installed: `pip install 'uniir[cpu]'` (or '[gpu]'), or set index.backend = \"torch\""
        ) from None
    dim = blocks[0].vectors.shape[1]
    try:
        index = faiss.IndexIDMap(faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT))
    except RuntimeError as exc:
        raise UniirError(f"index.factory = {factory!r} is not a valid faiss factory string: {exc}") from None
    if not index.is_trained:
        sample = normalize_rows(np.concatenate([b.vectors[: 200_000] for b in blocks]))
        log.info("training faiss %s on %d vectors", factory, len(sample))
        index.train(sample)
    if use_gpu and hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0 and factory == "Flat":
        index = _to_all_gpus(index)
    for block in blocks:
        for start in range(0, len(block.ids), 262144):
            chunk = normalize_rows(block.vectors[start : start + 262144])
            index.add_with_ids(chunk, np.ascontiguousarray(block.ids[start : start + 262144], dtype=np.int64))
    return index


def _to_all_gpus(index: "object") -> "object":
    import faiss

    options = faiss.GpuMultipleClonerOptions()
    options.shard = True
    return faiss.index_cpu_to_all_gpus(index, co=options)


def save_faiss_index(index: "object", path: Path) -> None:
    """Write an index (a GPU one goes through its CPU copy) atomically."""
    import faiss

    on_gpu = hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0
    cpu_index = faiss.index_gpu_to_cpu(index) if on_gpu else index
    with atomic_path(path) as tmp:
        faiss.write_index(cpu_index, str(tmp))


def load_faiss_index(path: Path, use_gpu: bool = True) -> "object":
    """Read a saved index; moved to (and sharded over) all GPUs when faiss-gpu sees any."""
    import faiss

    index = faiss.read_index(str(path))
    if use_gpu and hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0:
        index = _to_all_gpus(index)
    return index


def faiss_search(index: "object", queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Search a faiss index; rows are ordered by (-score, id) so ties match the exact backend.

    A few extra results settle ties at the k-th score by id; a row whose tie runs past that
    window is redone with a range search (exact indexes; approximate ones keep faiss's pick).
    """
    q = normalize_rows(queries)
    total = index.ntotal  # type: ignore[attr-defined]
    depth = min(k + 16, total)
    raw_scores, raw_ids = index.search(q, depth)  # type: ignore[attr-defined]
    none = np.iinfo(np.int64).max
    raw_scores = np.where(raw_ids >= 0, raw_scores, -np.inf).astype(np.float32)
    raw_ids = np.where(raw_ids >= 0, raw_ids, none)
    scores, ids = _merge_topk(raw_scores, raw_ids, k)
    if depth < total and k <= depth:
        window_min = raw_scores.min(axis=1)
        for row in np.nonzero(window_min == scores[:, k - 1])[0]:
            radius = float(np.nextafter(scores[row, k - 1], -np.inf))
            try:
                lims, found_scores, found_ids = index.range_search(q[row : row + 1], radius)  # type: ignore[attr-defined]
            except RuntimeError:
                continue  # this index type has no range search: keep faiss's choice
            best = np.lexsort((found_ids, -found_scores))[:k]
            scores[row], ids[row] = found_scores[best], found_ids[best]
    return _pad(scores, np.where(ids == none, PAD_ID, ids), k)
