"""The embed step: encode query sets and the candidate pool into fp16 shard files.

One process or many (Accelerate / torchrun: GPUs, or gloo CPU ranks). Every set is cut
into shards (`shards.SPLIT_WAYS` of them or more, each at least one batch, so every rank
gets part of every sizeable query set and pool); each rank encodes a contiguous run of
shards and writes its own shard files, so no pool is ever gathered onto one rank. The cut
and the batches (which never cross a shard) depend on the set and the batch size, not on
the number of processes. A shard is finished once
its marker exists, so a killed run resumes by redoing only unfinished shards, and the
result is byte-identical to an uninterrupted run (instruction choices depend only on
(seed, qid), not on the split).

Batches are not sorted or bucketed by text length: every processor pads text to a fixed
length (CLIP to 77 tokens, BLIP to 100), so the model's cost per item does not depend on
the text, and keeping item order keeps the batches, hence the bytes, the same everywhere.

Each distinct candidate is embedded once: the candidate set is the union of the pools the
caller passes (the evaluated local pools, or for the global pool the union pool file or all
16 local pools), deduplicated by id; local pools are later taken from it by id, and query
sets serve both pools.
"""

from __future__ import annotations

import itertools
import logging
import operator
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uniir_cli.config import Config
from uniir_cli.data.benchmark import EvalPair
from uniir_cli.data.eval_sets import (
    candidate_set_name,
    query_set_name,
)
from uniir_cli.data.ids import hash_qids
from uniir_cli.data.instructions import eval_cand_modalities, prompt_picker
from uniir_cli.data.layout import MBeirLayout
from uniir_cli.data.loaders import CandidateItems, ItemDataset, query_items
from uniir_cli.data.mbeir import read_queries
from uniir_cli.data.pool_reader import PoolReader
from uniir_cli.errors import DataError
from uniir_cli.evaluation.shards import ShardPlan, ShardStore
from uniir_cli.models.encode import consecutive_batches, encode_batches, length_grouped_batches
from uniir_cli.rundir import file_fingerprint, hash_inputs

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (set name, items done, items total)


@dataclass
class EmbedSet:
    name: str
    kind: str  # queries | candidates
    dataset: ItemDataset
    ids: np.ndarray  # int64 hashed ids, in item order
    inputs: list[Any]  # what the embeddings depend on besides the model


def plan_sets(
    config: Config, layout: MBeirLayout, pairs: list[EvalPair], processor: Any, pool_readers: Callable[[EvalPair], PoolReader],
    candidate_pools: list[PoolReader],
) -> list[EmbedSet]:
    """The query sets of the evaluated pairs and the one candidate set (the ids of
    `candidate_pools`, deduplicated), ready to encode."""
    split, on_bad, mode = config.data.split, config.embed.on_bad_image, config.data.instruction_mode
    picker = prompt_picker(config, layout)
    sets = []
    for pair in pairs:
        query_file = layout.require(layout.query_file(pair, split), f"query file of {pair.name}")
        queries = read_queries(query_file)
        if not queries:
            raise DataError(f"{query_file}: no queries; {pair.name} would score 0 and drag the average down: "
                            f"fill the file, or leave the pair out with --tasks")
        modalities = eval_cand_modalities(queries, pool_readers(pair), where=str(query_file))
        texts = picker.query_texts(queries, modalities)
        sets.append(
            EmbedSet(
                query_set_name(pair, split), "queries",
                query_items(layout, processor, queries, texts, on_bad),
                hash_qids([q.qid for q in queries]),
                [file_fingerprint(query_file), mode, config.run.seed, on_bad],
            )
        )
    dids = np.unique(np.concatenate([p.dids for p in candidate_pools]))
    sets.append(
        EmbedSet(
            candidate_set_name(split), "candidates",
            CandidateItems(layout, processor, candidate_pools, dids, on_bad),
            dids,
            [[file_fingerprint(p.path) for p in candidate_pools], on_bad],
        )
    )
    return sets


def shard_plan(item_set: EmbedSet, model_identity: Any, config: Config) -> ShardPlan:
    """The set's cut into shards; the hash covers what the vectors depend on, the cut included
    (so shards of an earlier cut, or of an older format, never count as done), and each shard's
    hash the size and modification time of the images it reads (one `stat` per image)."""
    size = ShardPlan.shard_size_for(len(item_set.ids), config.embed.shard_size, config.embed.batch_size)
    digest = hash_inputs(model_identity, item_set.inputs, size, config.embed.precision, "v2")
    plan = ShardPlan(item_set.name, item_set.kind, len(item_set.ids), size, digest)
    dataset = item_set.dataset
    shard_hashes = tuple(
        hash_inputs(digest, image_fingerprints(dataset.layout, dataset.image_paths(plan.shard_range(s))))
        for s in range(plan.num_shards)
    )
    return ShardPlan(item_set.name, item_set.kind, len(item_set.ids), size, digest, shard_hashes)


def image_fingerprints(layout: MBeirLayout, paths: Iterable[str | None]) -> list[Any]:
    """(size, mtime) of each image (None for an item without one, "missing" for a missing
    file): what a shard's vectors depend on besides the records."""
    out: list[Any] = []
    for path in paths:
        if not path:
            out.append(None)
            continue
        try:
            stat = os.stat(layout.resolve(path))
        except OSError:
            out.append("missing")
            continue
        out.append((stat.st_size, stat.st_mtime_ns))
    return out


def embed_sets(
    sets: list[EmbedSet],
    plans: list[ShardPlan],
    model: Any,
    embeddings_dir: Callable[[str], Path],
    config: Config,
    rank: int = 0,
    world: int = 1,
    device: torch.device | None = None,
    progress: Progress | None = None,
    force: bool = False,
) -> None:
    """Encode this rank's unfinished shards of every set (`plans`: `shard_plan` of each).

    Rank 0 writes each set's plan; every rank writes its own shards and markers. Callers
    synchronise ranks afterwards.
    """
    device = device or torch.device("cpu")
    model = model.to(device).eval()
    for item_set, plan in zip(sets, plans, strict=True):
        store = ShardStore(embeddings_dir(item_set.name))
        if rank == 0:
            store.write_plan(plan)
        mine = plan.shards_of(rank, world)
        todo = [s for s in mine if force or not store.is_done(s, plan.shard_hash(s))]
        total = sum(len(plan.shard_range(s)) for s in mine)
        done_before = total - sum(len(plan.shard_range(s)) for s in todo)
        if progress:
            progress(item_set.name, done_before, total)
        for done in _encode_shards(item_set, plan, todo, store, model, device, config):
            if progress:
                progress(item_set.name, done_before + done, total)
        log.info("rank %d of %d embedded %s: %d of its %d shards (%d items) encoded now",
                 rank, world, item_set.name, len(todo), len(mine), total - done_before)


def _encode_shards(
    item_set: EmbedSet, plan: ShardPlan, shards: list[int], store: ShardStore, model: Any, device: torch.device, config: Config
) -> Iterator[int]:
    """Encode and write `shards` through one DataLoader, yielding the items done after each
    batch. Batches never cross a shard boundary, so a shard's bytes do not depend on which
    process or which run encoded it. Processors that pad to the longest item get batches
    grouped by length within each shard; the vectors go back to item order before writing."""
    grouped = getattr(model.processor, "pads_to_longest", False)
    owners, batches = [], []
    for shard in shards:
        rows = plan.shard_range(shard)
        if not rows:  # an empty set: one empty shard
            store.write_shard(shard, np.zeros((0, model.embedding_dim), np.float16), item_set.ids[:0], plan.shard_hash(shard))
        size = config.embed.batch_size
        for batch in length_grouped_batches(item_set.dataset, rows, size) if grouped else consecutive_batches(rows, size):
            owners.append(shard)
            batches.append(batch)
    encoded = encode_batches(
        model, item_set.dataset, batches, device, num_workers=config.embed.num_workers, precision=config.embed.precision
    )
    done = 0
    batch_rows = iter(batches)
    for shard, group in itertools.groupby(zip(owners, encoded, strict=True), key=operator.itemgetter(0)):
        rows = plan.shard_range(shard)
        vectors_of_shard = np.zeros((len(rows), model.embedding_dim), np.float16)
        skipped = 0
        for _, (vectors, count) in group:
            vectors_of_shard[np.asarray(next(batch_rows)) - rows.start] = vectors
            skipped += count
            done += len(vectors)
            yield done
        store.write_shard(shard, vectors_of_shard, item_set.ids[rows.start : rows.stop], plan.shard_hash(shard), skipped)
