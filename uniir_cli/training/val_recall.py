"""Validation during training: Recall@1/5/10 of the val queries over the val pool, and
in-batch accuracy, with the encoding shared by all ranks.

Every rank encodes a contiguous share of the queries and of the pool and all shares are
gathered, so the numbers equal a single process's and no rank idles at a barrier.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from uniir_cli.config import Config
from uniir_cli.data.instructions import prompt_picker
from uniir_cli.data.layout import MBeirLayout
from uniir_cli.models.encode import encode_dataset
from uniir_cli.rundir import RunDir
from uniir_cli.training.metrics_log import append_record

log = logging.getLogger(__name__)


def log_val_recall(accelerator: Any, model: Any, config: Config, layout: MBeirLayout, run: RunDir, step: int) -> dict[str, float] | None:
    """Validate with the current weights (every rank encodes its share); the main process logs."""
    measured = val_metrics(accelerator.unwrap_model(model), config, layout, accelerator)
    if measured is None:
        return None
    result, queries = measured
    if accelerator.is_main_process:
        log.info("step %d validation on %d queries: %s", step, queries, ", ".join(f"{k} {v:.4f}" for k, v in result.items()))
        append_record(run.val_log, {"step": step, "queries": queries, **result})
    if config.train.trackers:
        accelerator.log({f"val/{k}": v for k, v in result.items()}, step=step)
    return result


def val_queries(config: Config, layout: MBeirLayout) -> list[Any]:
    """`data.val_queries`, or `train.val_max_queries` of them (seeded, in file order)."""
    from uniir_cli.data.mbeir import read_queries

    queries = read_queries(layout.path(config.data.val_queries))
    wanted = config.train.val_max_queries
    if 0 < wanted < len(queries):
        keep = sorted(random.Random(f"val:{config.run.seed}").sample(range(len(queries)), wanted))
        queries = [queries[i] for i in keep]
    return queries


def val_metrics(model: Any, config: Config, layout: MBeirLayout, accelerator: Any) -> tuple[dict[str, float], int] | None:
    """(Recall@1/5/10 over `data.val_pool` and in-batch accuracy, number of val queries);
    None when the val files are missing. Each rank encodes a contiguous share of the queries
    and of the pool; every rank gets all vectors, so the result equals one process's."""
    from uniir_cli.data.ids import hash_dids
    from uniir_cli.data.instructions import eval_cand_modalities
    from uniir_cli.data.loaders import CandidateItems, query_items
    from uniir_cli.data.pool_reader import PoolReader
    from uniir_cli.ranking.knn import PoolBlock, exact_search
    from uniir_cli.ranking.metrics import Relevance, summarize

    queries_file, pool_file = layout.path(config.data.val_queries), layout.path(config.data.val_pool)
    if not (queries_file.is_file() and pool_file.is_file()):
        log.warning("validation skipped: %s or %s is missing", queries_file, pool_file)
        return None
    queries = val_queries(config, layout)
    pool = PoolReader.build(pool_file)
    texts = prompt_picker(config, layout).query_texts(queries, eval_cand_modalities(queries, pool, where=str(queries_file)))
    was_training = model.training
    model.eval()
    try:
        query_vectors = _encode_shares(
            accelerator, model, config, len(queries), lambda a, b: query_items(layout, model.processor, queries[a:b], texts[a:b]))
        pool_vectors = _encode_shares(
            accelerator, model, config, len(pool), lambda a, b: CandidateItems(layout, model.processor, [pool], pool.dids[a:b]))
    finally:
        model.train(was_training)
    _, ranked = exact_search([PoolBlock(pool_vectors, pool.dids)], query_vectors, 10)
    relevance = Relevance.from_lists([hash_dids(q.pos_cand_list).tolist() for q in queries])
    metrics = summarize(ranked, relevance, (1, 5, 10))
    result = {k: float(metrics[k]) for k in ("Recall@1", "Recall@5", "Recall@10")}
    t = config.train
    batch = t.batch_size * (accelerator.num_processes if t.gather_embeddings else 1)
    rows, has_positive = _positive_rows(queries, pool)
    result["in_batch_accuracy"] = in_batch_accuracy(query_vectors[has_positive], pool_vectors[rows], pool.dids[rows], batch)
    return result, len(queries)


def _encode_shares(accelerator: Any, model: Any, config: Config, total: int, items: Callable[[int, int], Any]) -> np.ndarray:
    """Embeddings of items [0, total): rank r encodes the contiguous share `items(start, end)`,
    then the shares are all-gathered in rank order (padded to one length, as gather needs)."""
    world, rank = accelerator.num_processes, accelerator.process_index
    bounds = [total * r // world for r in range(world + 1)]
    share, _ = encode_dataset(model, items(bounds[rank], bounds[rank + 1]), config.embed.batch_size, accelerator.device,
                              num_workers=config.embed.num_workers, precision=config.embed.precision)
    if world == 1:
        return share
    longest = max(end - start for start, end in itertools.pairwise(bounds))
    padded = torch.zeros((longest, share.shape[1]), dtype=torch.float32, device=accelerator.device)
    padded[: len(share)] = torch.from_numpy(share).to(accelerator.device)
    gathered = accelerator.gather(padded).cpu().numpy().reshape(world, longest, share.shape[1])
    return np.concatenate([gathered[r, : bounds[r + 1] - bounds[r]] for r in range(world)])


def _positive_rows(queries: list[Any], pool: Any) -> tuple[np.ndarray, np.ndarray]:
    """Pool row of each query's first positive found in the pool, and which queries have one."""
    rows = np.array([next((int(r) for r in pool.positions(q.pos_cand_list) if r >= 0), -1) for q in queries], dtype=np.int64)
    return rows[rows >= 0], rows >= 0


def in_batch_accuracy(queries: np.ndarray, positives: np.ndarray, positive_ids: np.ndarray, batch_size: int) -> float:
    """Fraction of queries whose most similar (cosine) candidate among the positives of their
    batch (consecutive `batch_size` queries; the last batch may be smaller) is their own
    positive, or a copy of it (the same candidate id)."""
    from uniir_cli.ranking.knn import normalize_rows

    if len(queries) == 0:
        return 0.0
    q, p = normalize_rows(queries), normalize_rows(positives)
    hits = 0
    for start in range(0, len(q), batch_size):
        end = start + batch_size
        best = (q[start:end] @ p[start:end].T).argmax(axis=1)
        ids = positive_ids[start:end]
        hits += int((ids[best] == ids).sum())
    return hits / len(q)
