"""Inner-product search over L2-normalised vectors: exact (chunked) or through a faiss index.

Upstream casts the stored fp16 embeddings to fp32, L2-normalises them and searches a faiss
`IDMap,Flat` inner-product index, sharded over all GPUs. The exact search here does the same
arithmetic chunk by chunk straight from the fp16 arrays (memory-mapped shards), so a 5.6M x
768 pool never needs its 17 GB fp32 copy. Both break score ties by candidate id (smaller
first), so they return the same top-k.

`index.backend` picks how a pool is searched:

* `torch`: the exact chunked search with torch matmul tiles, on the CPU or one GPU.
* `faiss`: a faiss index of `index.factory`. With faiss-gpu, index types faiss-gpu has (Flat
  and IVF) are sharded over all visible GPUs, as upstream; others (HNSW, PQ, ...) stay on
  the CPU.
* `auto` (default): the exact chunked search for `Flat`, a faiss index for any other factory.
  Exact faiss indexes hold an fp32 copy of the pool (RAM or GPU memory) and take a build
  pass, for the same top-k; approximate factories exist only in faiss. The chunked search
  scores its tiles with faiss's exact kNN kernel on the CPU when faiss is installed (about
  1.4x torch's matmul there) and with torch on a GPU. On a machine with several GPUs,
  `faiss` shards the exact search over all of them; `auto`/`torch` use one.

`index.precision` (torch tiles on a GPU only; the CPU always computes in fp32): "no" keeps
fp32 matmuls, so rankings equal faiss's; "fp16"/"bf16" run the matmul in that precision,
and the scores (and any ranking between candidates closer than it resolves) are then of that
precision.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from uniir_cli.atomic import atomic_path
from uniir_cli.errors import UniirError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

PAD_ID = -1  # fills result rows when a pool has fewer than k candidates
Kernel = Literal["auto", "faiss", "torch"]
FAISS_QUERY_BATCH = 16384  # faiss blocks queries itself; this only bounds the fp32 query tile
# faiss index classes that faiss-gpu can shard over GPUs (its GpuCloner), and the wrappers
# it looks through; anything else raises "not implemented on GPU".
GPU_INDEX_TYPES = frozenset({"IndexFlat", "IndexFlatIP", "IndexFlatL2", "IndexIVFFlat", "IndexIVFScalarQuantizer", "IndexIVFPQ"})
_WRAPPERS = frozenset({"IndexIDMap", "IndexIDMap2", "IndexPreTransform"})


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


def tile_kernel(kernel: Kernel, device: str) -> Literal["faiss", "torch"]:
    """What scores the exact search's tiles: `torch` when asked for (always honoured) or off
    the CPU; `auto` takes faiss's kNN kernel on the CPU when faiss is installed."""
    if kernel == "torch":
        return "torch"
    if kernel == "faiss":
        if device != "cpu" or not faiss_available():
            raise UniirError(f"the faiss tile kernel needs faiss and the CPU (device {device!r}); use kernel 'auto' or 'torch'")
        return "faiss"
    return "faiss" if device == "cpu" and faiss_available() else "torch"


def exact_kernel(backend: str) -> Kernel:
    """The exact search's kernel for an `index.backend` value: an explicit `torch` is kept;
    `auto` and `faiss` (whose own index is used where one is built) let `tile_kernel` pick."""
    return "torch" if backend == "torch" else "auto"


def matmul_dtype(precision: str, device: str) -> torch.dtype:
    """The torch tiles' matmul dtype: `precision` ("no", "fp16", "bf16") on a GPU, fp32 on the CPU."""
    import torch

    if device == "cpu" or precision == "no":
        return torch.float32
    return {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """fp32 copy with unit L2 rows (zero rows stay zero); multiplies by the reciprocal norm,
    as `faiss.normalize_L2` does."""
    out = np.array(x, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", out, out))[:, None]
    out *= np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return out


def _normalize_chunk(chunk: np.ndarray, device: str, dtype: torch.dtype) -> torch.Tensor:
    """Unit rows as a tensor on `device` in `dtype`. On the CPU `normalize_rows` (one fp32
    copy, normalised in place); to a GPU the rows travel as stored (fp16 is half the
    transfer) and are normalised there in fp32."""
    import torch

    if device == "cpu":
        return torch.from_numpy(normalize_rows(chunk))
    x = torch.from_numpy(np.array(chunk)).to(device).float()  # np.array: memory maps are read-only
    norms = x.pow(2).sum(dim=1, keepdim=True).sqrt()
    return (x * torch.where(norms > 0, 1.0 / norms, torch.zeros_like(norms))).to(dtype)


def _query_tiles(queries: np.ndarray, step: int, device: str, dtype: torch.dtype) -> Callable[[int], torch.Tensor]:
    """The normalised query batch starting at a row. On the CPU it is made on demand, so no
    fp32 copy of all queries (0.6 GB for M-BEIR's 190K) sits in RAM; on a GPU once."""
    def make(start: int) -> torch.Tensor:
        return _normalize_chunk(queries[start : start + step], device, dtype)

    if device == "cpu":
        return make
    return {start: make(start) for start in range(0, len(queries), step)}.__getitem__


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


def _tile_topk_torch(queries: torch.Tensor, chunk: torch.Tensor, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import torch

    scores = queries @ chunk.T
    values, index = torch.topk(scores, min(k + 1, scores.shape[1]), dim=1)
    return _finish_topk(
        values.float().cpu().numpy(), index.cpu().numpy(), ids, k, lambda r: scores[r].float().cpu().numpy()
    )


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
    blocks: Iterable[PoolBlock],
    queries: np.ndarray,
    k: int,
    device: str = "cpu",
    chunk_rows: int = 65536,
    query_batch: int = 1024,
    kernel: Kernel = "auto",
    precision: str = "no",
) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine top-k of `queries` over the pool blocks: (scores fp32 [Q,k], ids int64 [Q,k]).

    One pool chunk (x one query batch) at a time, each tile's exact top-k merged into the
    running result: memory stays at one tile plus the caller's arrays, and the blocks are
    iterated once (they may be gathered lazily). `kernel` and `precision`: see the module
    docstring; scores are fp32 (as upstream) unless a GPU `precision` lowers them.
    """
    use_faiss = tile_kernel(kernel, device) == "faiss"
    dtype = matmul_dtype(precision, device)
    step = FAISS_QUERY_BATCH if use_faiss else query_batch
    query_tile = _query_tiles(queries, step, device, dtype)
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_ids = np.full((len(queries), k), PAD_ID, dtype=np.int64)
    for block in blocks:
        for start in range(0, len(block.ids), chunk_rows):
            chunk = _normalize_chunk(block.vectors[start : start + chunk_rows], device, dtype)
            chunk_ids = np.asarray(block.ids[start : start + chunk_rows], dtype=np.int64)
            for q_start in range(0, len(queries), step):
                rows = slice(q_start, q_start + step)
                if use_faiss:
                    scores, ids = _tile_topk_faiss(query_tile(q_start).numpy(), chunk.numpy(), chunk_ids, k)
                else:
                    scores, ids = _tile_topk_torch(query_tile(q_start), chunk, chunk_ids, k)
                best_scores[rows], best_ids[rows] = _merge_topk(
                    np.concatenate([best_scores[rows], scores], axis=1), np.concatenate([best_ids[rows], ids], axis=1), k
                )
    return best_scores, best_ids


def build_faiss_index(blocks: Iterable[PoolBlock], factory: str = "Flat", use_gpu: bool = True) -> object:
    """A faiss inner-product index over the normalised pool, with hashed dids as its ids.

    `factory` is a faiss index-factory string ("Flat" = exact, as upstream; "IVF4096,Flat",
    "HNSW32", "IVF4096,PQ64" for larger pools). With faiss-gpu, types it has are sharded
    over all GPUs (`to_gpus`).
    """
    try:
        import faiss
    except ImportError:
        raise UniirError(
            "faiss is not installed: `pip install 'uniir[cpu]'` (or '[gpu]'), or set index.backend = \"torch\""
        ) from None
    blocks = list(blocks)
    dim = blocks[0].vectors.shape[1]
    try:
        index = faiss.IndexIDMap(faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT))
    except RuntimeError as exc:
        raise UniirError(f"index.factory = {factory!r} is not a valid faiss factory string: {exc}") from None
    if not index.is_trained:
        sample = normalize_rows(np.concatenate([b.vectors[: 200_000] for b in blocks]))
        _check_training_size(index, factory, len(sample))
        log.info("training faiss %s on %d vectors", factory, len(sample))
        try:
            index.train(sample)
        except RuntimeError as exc:
            raise UniirError(f"faiss cannot train index.factory = {factory!r} on this pool's {len(sample):,} vectors "
                             f"({_faiss_reason(exc)}); use a smaller index or \"Flat\" (exact)") from None
    # A Flat index is sharded empty and filled on the GPUs, as upstream; other types are
    # filled on the CPU first (faiss's IVF shards cannot take id-less adds).
    flat = type(_core_index(index)).__name__ in ("IndexFlat", "IndexFlatIP", "IndexFlatL2")
    if use_gpu and flat:
        index = to_gpus(index)
    for block in blocks:
        for start in range(0, len(block.ids), 262144):
            chunk = normalize_rows(block.vectors[start : start + 262144])
            index.add_with_ids(chunk, np.ascontiguousarray(block.ids[start : start + 262144], dtype=np.int64))
    return to_gpus(index) if use_gpu and not flat else index


def _faiss_reason(exc: RuntimeError) -> str:
    """faiss's message without its C++ file and line."""
    text = str(exc)
    return text.split("Error: ", 1)[-1].strip().strip("'").splitlines()[0] if text else type(exc).__name__


def _check_training_size(index: object, factory: str, count: int) -> None:
    """An IVF index needs a training vector per list (faiss asserts deep inside otherwise)."""
    import faiss

    try:
        ivf = faiss.extract_index_ivf(index)
    except (RuntimeError, AttributeError):
        return
    nlist = int(ivf.nlist)
    if count < nlist:
        fitting = max(1, int(count ** 0.5))
        raise UniirError(
            f"index.factory = {factory!r} has {nlist:,} IVF lists but the pool has only {count:,} vectors to train "
            f"them (at least {nlist:,} are needed, {39 * nlist:,} recommended); use e.g. \"IVF{fitting},Flat\" "
            "(about the square root of the pool size) or \"Flat\" (exact)"
        )


def set_search_parameters(index: object, nprobe: int = 0, ef_search: int = 0) -> None:
    """`index.nprobe` / `index.ef_search` on an index that has them (0 leaves faiss's default)."""
    import faiss

    space = faiss.GpuParameterSpace() if _gpu_count() > 0 and _on_gpu(index) else faiss.ParameterSpace()
    for name, value in (("nprobe", nprobe), ("efSearch", ef_search)):
        if value > 0:
            try:
                space.set_index_parameter(index, name, value)
            except RuntimeError:
                log.info("faiss index %s has no %s: ignored", type(_core_index(index)).__name__, name)


def _gpu_count() -> int:
    import faiss

    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def _core_index(index: object) -> object:
    """The index inside faiss's id-map / pre-transform wrappers, as its concrete class."""
    import faiss

    index = faiss.downcast_index(index)
    while type(index).__name__ in _WRAPPERS:
        index = faiss.downcast_index(index.index)  # type: ignore[attr-defined]
    return index


def gpu_supported(index: object) -> bool:
    """Whether faiss-gpu can shard this (CPU) index over GPUs: Flat and IVF (Flat, SQ, PQ)
    indexes; HNSW, PQ, LSH, fast-scan and the rest raise in faiss-gpu."""
    return type(_core_index(index)).__name__ in GPU_INDEX_TYPES


def _on_gpu(index: object) -> bool:
    name = type(_core_index(index)).__name__
    return name.startswith("Gpu") or name in ("IndexShards", "IndexReplicas", "IndexShardsIVF")


def to_gpus(index: object) -> object:
    """The index sharded over all GPUs (as upstream) when faiss-gpu sees any and has its
    type; otherwise the CPU index, with a log line saying why."""
    import faiss

    gpus = _gpu_count()
    if gpus == 0:
        return index
    if not gpu_supported(index):
        log.info("faiss-gpu cannot hold a %s index: searching it on the CPU", type(_core_index(index)).__name__)
        return index
    options = faiss.GpuMultipleClonerOptions()
    options.shard = True
    try:
        return faiss.index_cpu_to_all_gpus(index, co=options)
    except RuntimeError as exc:  # e.g. an IVF-PQ code size faiss-gpu lacks
        log.warning("faiss-gpu refused the index (%s): searching it on the CPU", str(exc).splitlines()[0])
        return index


def save_faiss_index(index: object, path: Path) -> None:
    """Write an index (a GPU one goes through its CPU copy) atomically."""
    import faiss

    cpu_index = faiss.index_gpu_to_cpu(index) if _gpu_count() > 0 and _on_gpu(index) else index
    with atomic_path(path) as tmp:
        faiss.write_index(cpu_index, str(tmp))


def load_faiss_index(path: Path, use_gpu: bool = True) -> object:
    """Read a saved index; moved to (and sharded over) all GPUs when faiss-gpu has its type."""
    import faiss

    index = faiss.read_index(str(path))
    return to_gpus(index) if use_gpu else index


def faiss_search(index: object, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
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
                _, found_scores, found_ids = index.range_search(q[row : row + 1], radius)  # type: ignore[attr-defined]
            except RuntimeError:
                continue  # this index type has no range search: keep faiss's choice
            best = np.lexsort((found_ids, -found_scores))[:k]
            if len(best) == k:  # an approximate index may find fewer: keep faiss's pick then
                scores[row], ids[row] = found_scores[best], found_ids[best]
    return _pad(scores, np.where(ids == none, PAD_ID, ids), k)


def approximate_recall(index: object, blocks: Iterable[PoolBlock], queries: np.ndarray, k: int = 10) -> float:
    """The share of the exact top-k that the approximate index finds, over `queries`: what the
    index trades for its speed (1.0 for an exact one)."""
    _, exact = exact_search(list(blocks), queries, k)
    _, found = faiss_search(index, queries, k)
    hits = total = 0
    for want, got in zip(exact, found):
        want = want[want != PAD_ID]
        hits += len(np.intersect1d(want, got[got != PAD_ID]))
        total += len(want)
    return hits / total if total else 1.0
