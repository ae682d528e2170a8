"""Top-k retrieval of every query set from its local pool and from the global (union) pool.

Queries and candidates are searched exactly as upstream: fp16 embeddings -> fp32 ->
L2-normalised -> inner product, no filtering of any kind. Local pools are taken out of the
embedded candidates by id; the global pool is all of them. Results go to a binary `.npz`
(for scoring) and an upstream-format run file `qid Q0 did rank score run_id task_id`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uniir_cli import atomic
from uniir_cli.config import Config
from uniir_cli.data.benchmark import EvalPair
from uniir_cli.data.eval_sets import (
    candidate_set_name,
    global_pool_name,
    pools_of,
    query_set_name,
)
from uniir_cli.data.ids import unhash_dids, unhash_qids
from uniir_cli.errors import RunDirError
from uniir_cli.evaluation.shards import ShardStore
from uniir_cli.ranking.knn import (
    PAD_ID,
    PoolBlock,
    build_faiss_index,
    exact_kernel,
    exact_search,
    faiss_search,
    load_faiss_index,
    set_search_parameters,
)
from uniir_cli.rundir import RunDir

log = logging.getLogger(__name__)

def run_id(pair: EvalPair, pool: str, split: str) -> str:
    """Upstream's run id, e.g. `mbeir_cirr_task7_union_pool_test_k10`."""
    kind = "union" if pool == "global" else "single"
    return f"mbeir_{pair.name}_{kind}_pool_{split}_k{pair.depth}"


def results_file(run: RunDir, pair: EvalPair, split: str, pool: str) -> Path:
    return run.results_file(query_set_name(pair, split), pool)


@dataclass(frozen=True)
class Results:
    qids: np.ndarray  # int64 [Q], hashed
    ids: np.ndarray  # int64 [Q, depth], hashed dids, PAD_ID-padded
    scores: np.ndarray  # float32 [Q, depth]


def read_results(path: Path) -> Results:
    if not path.is_file():
        raise RunDirError(f"{path} is missing; run `uniir retrieve` first")
    with np.load(path) as saved:
        return Results(saved["qids"], saved["ids"], saved["scores"])


def write_results(run: RunDir, pair: EvalPair, split: str, pool: str, results: Results) -> None:
    """The `.npz` for scoring, and the upstream run file for other tools."""
    with atomic.atomic_path(results_file(run, pair, split, pool)) as tmp:
        np.savez(tmp, qids=results.qids, ids=results.ids, scores=results.scores)
    rid = run_id(pair, pool, split)
    qids = unhash_qids(results.qids)
    with atomic.atomic_path(run.run_file(query_set_name(pair, split), pool)) as tmp, open(tmp, "w") as out:
        for qid, row_ids, row_scores in zip(qids, results.ids, results.scores):
            valid = row_ids != PAD_ID
            dids = unhash_dids(row_ids[valid])
            out.writelines(
                f"{qid} Q0 {did} {rank} {score:.6f} {rid} {pair.task_id}\n"
                for rank, (did, score) in enumerate(zip(dids, row_scores[valid].tolist()), start=1)
            )


Searcher = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def uses_faiss_index(config: Config) -> bool:
    """`auto` is the exact chunked search for `Flat` (upstream's exact index, without an fp32
    copy of the pool) and a faiss index for any other factory string (see `indexing`)."""
    backend = config.index.backend
    return backend == "faiss" or (backend == "auto" and config.index.factory != "Flat")


def make_searcher(blocks: Iterable[PoolBlock], config: Config, device: str, saved: Path | None = None) -> Searcher:
    """A search function over one pool with the configured backend; a faiss index written by
    the index step (`saved`) is loaded instead of built."""
    if not uses_faiss_index(config):
        if config.index.factory != "Flat":
            raise RunDirError(
                f"index.factory = {config.index.factory!r} needs faiss; set index.backend = \"faiss\" or \"auto\""
            )
        kernel = exact_kernel(config.index.backend)
        return lambda queries, k: exact_search(
            blocks, queries, k, device=device, kernel=kernel, precision=config.index.precision
        )
    use_gpu = device.startswith("cuda")
    if saved is not None and saved.is_file():
        index = load_faiss_index(saved, use_gpu)
    else:
        index = build_faiss_index(blocks, config.index.factory, use_gpu=use_gpu)
    set_search_parameters(index, config.index.nprobe, config.index.ef_search)
    return lambda queries, k: faiss_search(index, queries, k)


class LocalPool:
    """A local pool's rows out of the union's blocks, gathered one block at a time when
    iterated: no copy of the whole pool (1.6 GB for EDIS) beside the memory-mapped union.

    Blocks wholly inside the pool are passed through as they are. Order differs from the
    pool file's, which the searches do not depend on (ties are broken by id).
    """

    def __init__(self, blocks: list[PoolBlock], wanted_ids: np.ndarray, source: str) -> None:
        wanted = np.unique(np.asarray(wanted_ids, dtype=np.int64))
        self.blocks = blocks
        self.masks = [_members(block.ids, wanted) for block in blocks]
        found = sum(int(mask.sum()) for mask in self.masks)
        if found != len(wanted):
            present = np.concatenate([b.ids[m] for b, m in zip(blocks, self.masks)]) if blocks else wanted[:0]
            missing = np.setdiff1d(wanted, present)
            raise RunDirError(
                f"{source}: {len(missing)} candidate(s) are not among the embedded candidates "
                f"(e.g. {', '.join(unhash_dids(missing[:5]))}); re-run `uniir embed --force`"
            )

    def __len__(self) -> int:
        return sum(int(mask.sum()) for mask in self.masks)

    def __iter__(self) -> Iterator[PoolBlock]:
        for block, mask in zip(self.blocks, self.masks):
            if mask.all():
                yield block
            elif mask.any():
                yield PoolBlock(block.vectors[mask], block.ids[mask])


def _members(ids: np.ndarray, sorted_wanted: np.ndarray) -> np.ndarray:
    """bool mask of `ids` found in `sorted_wanted` (a binary search: the union has 5.6M ids)."""
    if not len(sorted_wanted):
        return np.zeros(len(ids), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_wanted, ids), len(sorted_wanted) - 1)
    return sorted_wanted[pos] == ids


def stacked_queries(stores: list[ShardStore]) -> tuple[np.ndarray, np.ndarray]:
    """All query sets' fp16 vectors in one array, filled shard by shard (no second copy), and
    the row bounds of each set."""
    blocks = [store.blocks() for store in stores]
    counts = [sum(len(b.ids) for b in set_blocks) for set_blocks in blocks]
    bounds = np.cumsum([0, *counts])
    dim = next((b.vectors.shape[1] for set_blocks in blocks for b in set_blocks), 0)
    out = np.empty((int(bounds[-1]), dim), dtype=np.float16)
    row = 0
    for block in (b for set_blocks in blocks for b in set_blocks):
        out[row : row + len(block.ids)] = block.vectors
        row += len(block.ids)
    return out, bounds


def retrieve(
    run: RunDir,
    config: Config,
    pairs: list[EvalPair],
    split: str,
    local_pool_ids: Callable[[EvalPair], np.ndarray],
    device: str = "cpu",
) -> list[tuple[EvalPair, str]]:
    """Search every (pair, pool) and write its results; returns what was searched.

    `local_pool_ids(pair)` gives the hashed dids of the pair's local pool. All query sets
    go through the global pool together, in one pass over its 5.6M vectors. Beside the
    memory-mapped pool, memory holds the fp16 queries, one normalised tile of each, and the
    results; local pools are gathered block by block (`LocalPool`).
    """
    candidates = ShardStore(run.embeddings_dir(candidate_set_name(split))).blocks()
    stores = {pair.name: ShardStore(run.embeddings_dir(query_set_name(pair, split))) for pair in pairs}
    done: list[tuple[EvalPair, str]] = []
    for pool in pools_of(config.retrieve.pool):
        if pool == "global":
            queries, bounds = stacked_queries([stores[p.name] for p in pairs])
            depth = max(p.depth for p in pairs)
            saved = run.faiss_index_file(global_pool_name(split))
            scores, ids = make_searcher(candidates, config, device, saved)(queries, depth)
            del queries
            found = {p.name: (scores[a:b, : p.depth], ids[a:b, : p.depth]) for p, a, b in zip(pairs, bounds, bounds[1:])}
        for pair in pairs:
            store = stores[pair.name]
            if pool == "local":
                local = LocalPool(candidates, local_pool_ids(pair), f"local pool of {pair.name}")
                saved = run.faiss_index_file(pair.pool_name(split))
                scores, ids = make_searcher(local, config, device, saved)(store.vectors(), pair.depth)
            else:
                scores, ids = found[pair.name]
            write_results(run, pair, split, pool, Results(store.ids(), ids, scores.astype(np.float32)))
            short = int((ids[:, -1] == PAD_ID).sum()) if ids.size else 0
            if short and uses_faiss_index(config) and config.index.factory != "Flat":
                log.warning("%s, %s pool: %d of %d queries got fewer than %d candidates from the approximate index "
                            "(the rest of their rows is padded with id -1 and left out of the run file); "
                            "raise index.nprobe / index.ef_search", pair.name, pool, short, len(ids), pair.depth)
            log.info("retrieved %s from the %s pool: depth %d", pair.name, pool, pair.depth)
            done.append((pair, pool))
    return done
