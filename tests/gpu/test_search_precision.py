"""Exact search on a GPU: fp32 equals the CPU (and faiss) ranking; fp16/bf16 stay close; a
saved faiss index is moved to the GPUs only when faiss-gpu has its type."""

from __future__ import annotations

import numpy as np
import pytest

from uniir_cli.ranking.knn import (
    PoolBlock,
    build_faiss_index,
    exact_search,
    faiss_search,
    load_faiss_index,
    save_faiss_index,
)

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def pool() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((70_000, 64)).astype(np.float16)  # two chunks of 65536 rows
    ids = rng.permutation(10_000_000)[:70_000].astype(np.int64)
    return vectors, ids, rng.standard_normal((300, 64)).astype(np.float32)


def test_fp32_gpu_search_equals_cpu(pool) -> None:
    vectors, ids, queries = pool
    blocks = [PoolBlock(vectors, ids)]
    cpu_scores, cpu_ids = exact_search(blocks, queries, 10, kernel="torch")
    gpu_scores, gpu_ids = exact_search(blocks, queries, 10, device="cuda")
    assert (gpu_ids == cpu_ids).mean() >= 0.999  # fp32 summation order may flip a near-tie
    np.testing.assert_allclose(gpu_scores, cpu_scores, atol=1e-5)


@pytest.mark.parametrize(("precision", "atol"), [("fp16", 2e-3), ("bf16", 2e-2)])
def test_low_precision_gpu_search_is_close(pool, precision: str, atol: float) -> None:
    vectors, ids, queries = pool
    reference_scores, reference_ids = exact_search([PoolBlock(vectors, ids)], queries, 10, device="cuda")
    scores, got = exact_search([PoolBlock(vectors, ids)], queries, 10, device="cuda", precision=precision)
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, reference_scores, atol=atol)
    assert (got[:, 0] == reference_ids[:, 0]).mean() >= 0.9


@pytest.mark.parametrize("factory", ["Flat", "HNSW16"])
def test_saved_index_loads_on_gpu_or_stays_on_cpu(pool, factory: str, tmp_path) -> None:
    faiss = pytest.importorskip("faiss")
    vectors, ids, _ = pool
    blocks = [PoolBlock(vectors[:5000], ids[:5000])]
    save_faiss_index(build_faiss_index(blocks, factory), tmp_path / "i.index")
    index = load_faiss_index(tmp_path / "i.index")  # HNSW used to raise here with faiss-gpu
    _, got = faiss_search(index, vectors[:20].astype(np.float32), 1)
    assert (got[:, 0] == ids[:20]).mean() >= 0.9
    if factory == "Flat" and hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0:
        inner = faiss.downcast_index(faiss.downcast_index(index).index)
        assert type(inner).__name__ in ("GpuIndexFlat", "IndexShards")
