"""Exact torch search vs faiss vs a brute-force oracle; ties broken by id."""

from __future__ import annotations

import numpy as np
import pytest

from uniir_cli.indexing import PAD_ID, PoolBlock, build_faiss_index, exact_search, faiss_search, normalize_rows


def _brute_force(pool: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = normalize_rows(queries) @ normalize_rows(pool).T
    order = np.lexsort((np.broadcast_to(ids, scores.shape), -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, 1), ids[order]


@pytest.fixture(params=["faiss kernel", "torch kernel"], autouse=True)
def kernel(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run every test with both tile kernels of the exact search (faiss is used when installed)."""
    if request.param == "faiss kernel":
        pytest.importorskip("faiss")
    else:
        monkeypatch.setattr("uniir_cli.indexing.faiss_available", lambda: False)
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


def test_exact_search_matches_brute_force(random_pool) -> None:
    pool, ids, queries = random_pool
    expected_scores, expected_ids = _brute_force(pool, ids, queries, 10)
    blocks = [PoolBlock(pool[:1234], ids[:1234]), PoolBlock(pool[1234:], ids[1234:])]
    scores, got_ids = exact_search(blocks, queries, 10, chunk_rows=500, query_batch=7)
    np.testing.assert_array_equal(got_ids, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, rtol=0, atol=1e-5)


def test_ties_are_broken_by_smallest_id_across_chunks(tied_pool) -> None:
    pool, ids, queries = tied_pool
    blocks = [PoolBlock(pool[:700], ids[:700]), PoolBlock(pool[700:], ids[700:])]
    scores, got_ids = exact_search(blocks, queries, 10, chunk_rows=97, query_batch=3)
    dims = pool.astype(np.float32).argmax(axis=1)
    for q in range(8):
        np.testing.assert_array_equal(got_ids[q], np.sort(ids[dims == q])[:10])
        assert (scores[q] == 1.0).all()


@pytest.mark.parametrize("fixture", ["random_pool", "tied_pool"])
def test_faiss_and_torch_backends_agree(fixture: str, request: pytest.FixtureRequest) -> None:
    pytest.importorskip("faiss")
    pool, ids, queries = request.getfixturevalue(fixture)
    index = build_faiss_index([PoolBlock(pool, ids)], "Flat", use_gpu=False)
    faiss_scores, faiss_ids = faiss_search(index, queries, 10)
    torch_scores, torch_ids = exact_search([PoolBlock(pool, ids)], queries, 10)
    np.testing.assert_array_equal(faiss_ids, torch_ids)
    np.testing.assert_allclose(faiss_scores, torch_scores, atol=1e-5)


def test_pool_smaller_than_k_is_padded() -> None:
    pool = np.eye(3, dtype=np.float16)
    ids = np.array([30, 10, 20], dtype=np.int64)
    scores, got = exact_search([PoolBlock(pool, ids)], np.array([[1.0, 0.5, 0.0]], dtype=np.float32), 5)
    assert got.tolist() == [[30, 10, 20, PAD_ID, PAD_ID]]
    assert np.isneginf(scores[0, 3:]).all()


def test_approximate_factory_and_bad_factory() -> None:
    pytest.importorskip("faiss")
    from uniir_cli.errors import UniirError

    rng = np.random.default_rng(1)
    pool = rng.standard_normal((2000, 16)).astype(np.float16)
    ids = np.arange(2000, dtype=np.int64)
    index = build_faiss_index([PoolBlock(pool, ids)], "HNSW16", use_gpu=False)
    _, got = faiss_search(index, pool[:20].astype(np.float32), 1)
    assert (got[:, 0] == ids[:20]).mean() >= 0.9
    with pytest.raises(UniirError, match="not a valid faiss factory"):
        build_faiss_index([PoolBlock(pool, ids)], "NoSuchIndex", use_gpu=False)
