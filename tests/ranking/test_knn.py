"""Exact search (both tile kernels) vs faiss vs a brute-force oracle; ties broken by id;
which backend, precision and GPU placement are chosen."""

from __future__ import annotations

import numpy as np
import pytest

from uniir_cli.errors import UniirError
from uniir_cli.ranking.knn import (
    PAD_ID,
    PoolBlock,
    build_faiss_index,
    exact_search,
    faiss_available,
    faiss_search,
    gpu_supported,
    load_faiss_index,
    matmul_dtype,
    normalize_rows,
    save_faiss_index,
    tile_kernel,
    to_gpus,
)


def _brute_force(pool: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = normalize_rows(queries) @ normalize_rows(pool).T
    order = np.lexsort((np.broadcast_to(ids, scores.shape), -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, 1), ids[order]


@pytest.fixture(params=["faiss", "torch"])
def kernel(request: pytest.FixtureRequest) -> str:
    """Both tile kernels of the exact search."""
    if request.param == "faiss":
        pytest.importorskip("faiss")
    return request.param


@pytest.fixture()
def random_pool() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    pool = rng.standard_normal((3000, 32)).astype(np.float16)
    ids = rng.permutation(10_000_000)[:3000].astype(np.int64) + 90_000_000
    queries = rng.standard_normal((50, 32)).astype(np.float32)
    return pool, ids, queries


@pytest.fixture()
def tied_pool() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-hot vectors: every score is exactly 0 or 1 whatever the summation order, so ties are exact."""
    rng = np.random.default_rng(1)
    dims = rng.integers(0, 8, size=2000)
    pool = np.eye(8, dtype=np.float16)[dims] * rng.integers(1, 4, size=(2000, 1)).astype(np.float16)
    ids = rng.permutation(2000).astype(np.int64) * 7 + 11
    queries = np.eye(8, dtype=np.float32)
    return pool, ids, queries


def test_exact_search_matches_brute_force(random_pool, kernel: str) -> None:
    pool, ids, queries = random_pool
    expected_scores, expected_ids = _brute_force(pool, ids, queries, 10)
    blocks = [PoolBlock(pool[:1234], ids[:1234]), PoolBlock(pool[1234:], ids[1234:])]
    scores, got_ids = exact_search(blocks, queries, 10, chunk_rows=500, query_batch=7, kernel=kernel)
    np.testing.assert_array_equal(got_ids, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, rtol=0, atol=1e-5)


def test_ties_are_broken_by_smallest_id_across_chunks(tied_pool, kernel: str) -> None:
    pool, ids, queries = tied_pool
    blocks = [PoolBlock(pool[:700], ids[:700]), PoolBlock(pool[700:], ids[700:])]
    scores, got_ids = exact_search(blocks, queries, 10, chunk_rows=97, query_batch=3, kernel=kernel)
    dims = pool.astype(np.float32).argmax(axis=1)
    for q in range(8):
        np.testing.assert_array_equal(got_ids[q], np.sort(ids[dims == q])[:10])
        assert (scores[q] == 1.0).all()


@pytest.mark.parametrize("fixture", ["random_pool", "tied_pool"])
def test_faiss_and_torch_backends_agree(fixture: str, request: pytest.FixtureRequest, kernel: str) -> None:
    pytest.importorskip("faiss")
    pool, ids, queries = request.getfixturevalue(fixture)
    index = build_faiss_index([PoolBlock(pool, ids)], "Flat", use_gpu=False)
    faiss_scores, faiss_ids = faiss_search(index, queries, 10)
    torch_scores, torch_ids = exact_search([PoolBlock(pool, ids)], queries, 10, kernel=kernel)
    np.testing.assert_array_equal(faiss_ids, torch_ids)
    np.testing.assert_allclose(faiss_scores, torch_scores, atol=1e-5)


def test_pool_smaller_than_k_is_padded(kernel: str) -> None:
    pool = np.eye(3, dtype=np.float16)
    ids = np.array([30, 10, 20], dtype=np.int64)
    scores, got = exact_search([PoolBlock(pool, ids)], np.array([[1.0, 0.5, 0.0]], dtype=np.float32), 5, kernel=kernel)
    assert got.tolist() == [[30, 10, 20, PAD_ID, PAD_ID]]
    assert np.isneginf(scores[0, 3:]).all()


def test_approximate_factory_and_bad_factory() -> None:
    pytest.importorskip("faiss")
    rng = np.random.default_rng(1)
    pool = rng.standard_normal((2000, 16)).astype(np.float16)
    ids = np.arange(2000, dtype=np.int64)
    index = build_faiss_index([PoolBlock(pool, ids)], "HNSW16", use_gpu=False)
    _, got = faiss_search(index, pool[:20].astype(np.float32), 1)
    assert (got[:, 0] == ids[:20]).mean() >= 0.9
    with pytest.raises(UniirError, match="not a valid faiss factory"):
        build_faiss_index([PoolBlock(pool, ids)], "NoSuchIndex", use_gpu=False)


def test_explicit_kernel_is_honoured_and_auto_prefers_faiss_on_cpu() -> None:
    assert tile_kernel("torch", "cpu") == "torch"  # even with faiss installed
    assert tile_kernel("torch", "cuda") == "torch"
    assert tile_kernel("auto", "cuda") == "torch"
    assert tile_kernel("auto", "cpu") == ("faiss" if faiss_available() else "torch")
    with pytest.raises(UniirError, match="faiss tile kernel"):
        tile_kernel("faiss", "cuda")


def test_torch_kernel_never_calls_faiss(random_pool, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("the faiss kernel ran although kernel='torch'")

    monkeypatch.setattr("uniir_cli.ranking.knn._tile_topk_faiss", refuse)
    pool, ids, queries = random_pool
    _, got = exact_search([PoolBlock(pool, ids)], queries, 10, kernel="torch")
    np.testing.assert_array_equal(got, _brute_force(pool, ids, queries, 10)[1])


def test_precision_applies_to_gpu_matmuls_only() -> None:
    import torch

    assert matmul_dtype("fp16", "cpu") == torch.float32
    assert matmul_dtype("bf16", "cpu") == torch.float32
    assert matmul_dtype("no", "cuda") == torch.float32
    assert matmul_dtype("fp16", "cuda") == torch.float16
    assert matmul_dtype("bf16", "cuda:1") == torch.bfloat16


def test_exact_search_takes_lazy_blocks_and_no_queries(random_pool) -> None:
    pool, ids, queries = random_pool
    lazy = (PoolBlock(pool[i : i + 1000], ids[i : i + 1000]) for i in range(0, len(ids), 1000))
    _, got = exact_search(lazy, queries, 10, kernel="torch", chunk_rows=300)
    np.testing.assert_array_equal(got, _brute_force(pool, ids, queries, 10)[1])
    scores, got = exact_search([PoolBlock(pool, ids)], queries[:0], 10)
    assert scores.shape == got.shape == (0, 10)


# faiss-gpu's cloner has Flat and IVF (Flat, SQ, PQ) indexes, also behind an id map or a
# pre-transform; it raises for the rest.
GPU_FACTORIES = {
    "Flat": True, "IVF16,Flat": True, "IVF16,SQ8": True, "IVF16,PQ8": True, "PCA16,IVF16,Flat": True,
    "IVF16_HNSW8,Flat": True, "HNSW16": False, "HNSW16,Flat": False, "PQ8": False, "IVF16,PQ8x4fs": False,
    "SQfp16": False, "IVF16,Flat,RFlat": False,
}


@pytest.mark.parametrize(("factory", "movable"), GPU_FACTORIES.items())
def test_only_index_types_faiss_gpu_has_are_moved(factory: str, movable: bool, tmp_path) -> None:
    faiss = pytest.importorskip("faiss")
    index = faiss.IndexIDMap(faiss.index_factory(32, factory, faiss.METRIC_INNER_PRODUCT))
    assert gpu_supported(index) is movable
    # the decision survives a save and load (load_faiss_index applies it to saved indexes)
    faiss.write_index(index, str(tmp_path / "i.index"))
    assert gpu_supported(faiss.read_index(str(tmp_path / "i.index"))) is movable


def test_without_gpus_indexes_stay_on_the_cpu(tmp_path) -> None:
    faiss = pytest.importorskip("faiss")
    if hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0:
        pytest.skip("faiss sees a GPU")
    rng = np.random.default_rng(2)
    pool, ids = rng.standard_normal((500, 16)).astype(np.float16), np.arange(500, dtype=np.int64) * 3
    index = build_faiss_index([PoolBlock(pool, ids)], "HNSW16")
    assert to_gpus(index) is index
    save_faiss_index(index, tmp_path / "hnsw.index")
    loaded = load_faiss_index(tmp_path / "hnsw.index")
    _, got = faiss_search(loaded, pool[:5].astype(np.float32), 1)
    assert got[:, 0].tolist() == ids[:5].tolist()
