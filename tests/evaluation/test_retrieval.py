"""Retrieval's memory layout: local pools gathered block by block, queries stacked once, the
configured backend honoured."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from uniir_cli.config import Config
from uniir_cli.errors import RunDirError
from uniir_cli.evaluation.retrieval import LocalPool, make_searcher, stacked_queries
from uniir_cli.evaluation.shards import ShardPlan, ShardStore
from uniir_cli.ranking.knn import PoolBlock, exact_search


@pytest.fixture()
def union() -> list[PoolBlock]:
    """Three union blocks (as embedding shards are), 90 candidates with sorted hashed dids."""
    rng = np.random.default_rng(0)
    ids = np.sort(rng.choice(np.arange(10_000_000, 10_001_000), 90, replace=False)).astype(np.int64)
    vectors = rng.standard_normal((90, 16)).astype(np.float16)
    return [PoolBlock(vectors[i : i + 30], ids[i : i + 30]) for i in (0, 30, 60)]


def _copy_of(union: list[PoolBlock], wanted: np.ndarray) -> PoolBlock:
    """The pool's rows copied out one by one, in `wanted`'s order: the plain reference."""
    by_id = {int(i): v for b in union for i, v in zip(b.ids, b.vectors)}
    return PoolBlock(np.stack([by_id[int(i)] for i in wanted]), wanted.astype(np.int64))


def test_local_pool_holds_exactly_its_rows(union: list[PoolBlock]) -> None:
    wanted = np.concatenate([union[0].ids[::3], union[1].ids, union[2].ids[5:7]])[::-1]  # any order
    local = LocalPool(union, wanted, "local pool of x")
    blocks = list(local)
    assert len(local) == len(wanted)
    assert sorted(np.concatenate([b.ids for b in blocks]).tolist()) == sorted(wanted.tolist())
    assert blocks[1] is union[1]  # a block wholly inside the pool is passed through, not copied
    reference = _copy_of(union, wanted)
    rows = {int(i): v for b in blocks for i, v in zip(b.ids, b.vectors)}
    for did, vector in zip(reference.ids, reference.vectors):
        np.testing.assert_array_equal(rows[int(did)], vector)
    # iterable more than once (a faiss build reads it twice)
    assert [len(b.ids) for b in local] == [len(b.ids) for b in blocks]


def test_local_pool_search_equals_search_of_its_copy(union: list[PoolBlock]) -> None:
    wanted = np.concatenate([b.ids[1::2] for b in union])
    queries = np.random.default_rng(1).standard_normal((7, 16)).astype(np.float32)
    lazy = exact_search(LocalPool(union, wanted, "x"), queries, 10, chunk_rows=8)
    copied = exact_search([_copy_of(union, wanted)], queries, 10)
    np.testing.assert_array_equal(lazy[1], copied[1])
    np.testing.assert_array_equal(lazy[0], copied[0])


def test_local_pool_names_missing_candidates(union: list[PoolBlock]) -> None:
    wanted = np.array([union[0].ids[0], 20_000_123], dtype=np.int64)
    with pytest.raises(RunDirError, match=r"local pool of x: 1 candidate\(s\) .*2:123.*uniir embed --force"):
        LocalPool(union, wanted, "local pool of x")


def test_stacked_queries_fill_one_array_in_set_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    stores, expected = [], []
    for name, count in (("a", 5), ("b", 0), ("c", 9)):
        store = ShardStore(tmp_path / name)
        plan = ShardPlan(name, "queries", count, 4, "h")
        store.write_plan(plan)
        vectors = rng.standard_normal((count, 8)).astype(np.float16)
        for shard in range(plan.num_shards):
            rows = plan.shard_range(shard)
            store.write_shard(shard, vectors[rows.start : rows.stop], np.arange(rows.start, rows.stop), "h")
        stores.append(store)
        expected.append(vectors)
    stacked, bounds = stacked_queries(stores)
    assert stacked.dtype == np.float16 and bounds.tolist() == [0, 5, 5, 14]
    np.testing.assert_array_equal(stacked, np.concatenate(expected))


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_configured_exact_backend_is_used_on_cpu(union: list[PoolBlock], backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`index.backend = "torch"` runs torch tiles even with faiss installed (it used to be ignored)."""
    faiss_tiles = []
    from uniir_cli.ranking import knn

    real = knn._tile_topk_faiss
    monkeypatch.setattr(knn, "_tile_topk_faiss", lambda *a: faiss_tiles.append(1) or real(*a))
    config = Config()
    config.index.backend = backend
    queries = np.random.default_rng(3).standard_normal((4, 16)).astype(np.float32)
    _, ids = make_searcher(union, config, "cpu")(queries, 5)
    _, expected = exact_search(union, queries, 5, kernel="torch")
    np.testing.assert_array_equal(ids, expected)
    assert bool(faiss_tiles) == (backend == "auto" and knn.faiss_available())


def test_index_precision_is_a_validated_setting() -> None:
    from uniir_cli.config_toml import resolve_config
    from uniir_cli.errors import ConfigError

    assert resolve_config(None, ['index.precision="bf16"']).config.index.precision == "bf16"
    with pytest.raises(ConfigError, match=r"index.precision = 'fp32': expected 'no' \| 'fp16' \| 'bf16'"):
        resolve_config(None, ['index.precision="fp32"'])
