"""The embed step: encode query sets and the candidate pool into fp16 shard files.

One process or many (Accelerate / torchrun: GPUs, or gloo CPU ranks). Every set is cut
into fixed-size shards; each rank encodes its share and writes its own shard files, so no
pool is ever gathered onto one rank. A shard is finished once its marker exists, so a
killed run resumes by redoing only unfinished shards, and the result is byte-identical to
an uninterrupted run (instruction choices depend only on (seed, qid), not on the split).

Each distinct candidate is embedded once: the candidate set is the union of the local pools
(all 16 when the global pool is evaluated, whose union it is), deduplicated by id; local
pools are later taken from it by id, and query sets serve both pools.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from uniir_cli.config import Config
from uniir_cli.data.benchmark import EVAL_PAIRS, EvalPair
from uniir_cli.data.ids import hash_qids
from uniir_cli.data.instructions import PromptPicker, eval_cand_modalities, read_instructions
from uniir_cli.data.layout import MBeirLayout
from uniir_cli.data.loaders import CandidateItems, ItemDataset, collate_items, query_items
from uniir_cli.data.mbeir import read_queries
from uniir_cli.data.pool_index import PoolIndex
from uniir_cli.retrieval import candidate_set_name, pools_of, query_set_name
from uniir_cli.rundir import file_fingerprint, hash_inputs
from uniir_cli.shards import ShardPlan, ShardStore

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (set name, items done, items total)


@dataclass
class EmbedSet:
    name: str
    kind: str  # queries | candidates
    dataset: ItemDataset
    ids: np.ndarray  # int64 hashed ids, in item order
    inputs: list[Any]  # what the embeddings depend on besides the model


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """fp16/bf16 autocast on GPU (upstream ran fp16); CPU always computes in fp32."""
    if device.type != "cuda" or precision == "no":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.float16 if precision == "fp16" else torch.bfloat16)


def eval_pairs(config: Config) -> list[EvalPair]:
    names = config.data.tasks
    return [p for p in EVAL_PAIRS if not names or p.name in names]


def candidate_pairs(config: Config) -> list[EvalPair]:
    """Pairs whose local pools make up the candidate set: all 16 for the global pool."""
    return list(EVAL_PAIRS) if "global" in pools_of(config.retrieve.pool) else eval_pairs(config)


def prompt_picker(config: Config, layout: MBeirLayout) -> PromptPicker:
    """The instruction chooser of `data.instruction_mode` (reads the tsv unless mode is none)."""
    mode = config.data.instruction_mode
    instructions = None
    if mode != "none":
        instructions = read_instructions(layout.require(layout.path(config.data.instructions), "instructions tsv"))
    return PromptPicker(instructions, mode, seed=config.run.seed)


def plan_sets(config: Config, layout: MBeirLayout, processor: Any, pool_indexes: Callable[[EvalPair], PoolIndex]) -> list[EmbedSet]:
    """The query sets of the evaluated pairs and the one candidate set, ready to encode."""
    split, on_bad, mode = config.data.split, config.embed.on_bad_image, config.data.instruction_mode
    picker = prompt_picker(config, layout)
    sets = []
    for pair in eval_pairs(config):
        query_file = layout.require(layout.query_file(pair, split), f"query file of {pair.name}")
        queries = read_queries(query_file)
        modalities = eval_cand_modalities(queries, pool_indexes(pair), where=str(query_file))
        texts = picker.query_texts(queries, modalities)
        sets.append(
            EmbedSet(
                query_set_name(pair, split), "queries",
                query_items(layout, processor, queries, texts, on_bad),
                hash_qids([q.qid for q in queries]),
                [file_fingerprint(query_file), mode, config.run.seed, on_bad],
            )
        )
    pools = [pool_indexes(pair) for pair in candidate_pairs(config)]
    dids = np.unique(np.concatenate([p.dids for p in pools]))
    sets.append(
        EmbedSet(
            candidate_set_name(split), "candidates",
            CandidateItems(layout, processor, pools, dids, on_bad),
            dids,
            [[file_fingerprint(p.path) for p in pools], on_bad],
        )
    )
    return sets


def encode_dataset(
    model: Any,
    dataset: Any,
    batch_size: int,
    device: torch.device,
    *,
    num_workers: int = 0,
    precision: str = "no",
    on_batch: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, int]:
    """fp32 embeddings of every item of `dataset` in order (EMPTY items -> zero vector) and
    the number of images skipped. Images are decoded and preprocessed in DataLoader workers."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate_items(getattr(dataset, "dataset", dataset).processor),
        pin_memory=device.type == "cuda",
    )
    out = np.zeros((len(dataset), model.embedding_dim), dtype=np.float32)
    skipped = done = 0
    with torch.inference_mode(), _autocast(device, precision):
        for batch, _, present, batch_skipped in loader:
            rows = np.arange(done, done + len(present))
            skipped += batch_skipped
            if batch is not None:
                out[rows[present]] = model.encode(batch.to(device, non_blocking=True)).float().cpu().numpy()
            done += len(present)
            if on_batch:
                on_batch(len(present))
    return out, skipped


def embed_sets(
    sets: list[EmbedSet],
    model: Any,
    model_identity: Any,
    embeddings_dir: Callable[[str], Path],
    config: Config,
    rank: int = 0,
    world: int = 1,
    device: torch.device | None = None,
    progress: Progress | None = None,
    force: bool = False,
) -> dict[str, int]:
    """Encode this rank's shards of every set; returns skipped-image counts per set.

    Rank 0 writes each set's plan; every rank writes its own shards and markers. Callers
    synchronise ranks afterwards.
    """
    device = device or torch.device("cpu")
    model = model.to(device).eval()
    skipped: dict[str, int] = {}
    for item_set in sets:
        store = ShardStore(embeddings_dir(item_set.name))
        shard_size = config.embed.shard_size
        digest = hash_inputs(model_identity, item_set.inputs, shard_size, config.embed.precision, "v1")
        plan = ShardPlan(item_set.name, item_set.kind, len(item_set.ids), shard_size, digest)
        if rank == 0:
            store.write_plan(plan)
        mine = plan.shards_of(rank, world)
        todo = [s for s in mine if force or not store.is_done(s, digest)]
        total = sum(len(plan.shard_range(s)) for s in mine)
        done_items = total - sum(len(plan.shard_range(s)) for s in todo)
        if progress:
            progress(item_set.name, done_items, total)
        for shard in todo:
            rows = plan.shard_range(shard)

            def on_batch(n: int) -> None:
                nonlocal done_items
                done_items += n
                if progress:
                    progress(item_set.name, done_items, total)

            vectors, count = encode_dataset(
                model, Subset(item_set.dataset, rows), config.embed.batch_size, device,
                num_workers=config.embed.num_workers, precision=config.embed.precision, on_batch=on_batch,
            )
            store.write_shard(shard, vectors.astype(np.float16), item_set.ids[rows.start : rows.stop], digest)
            skipped[item_set.name] = skipped.get(item_set.name, 0) + count
        log.info("embedded %s: %d items (%d shards on this rank)", item_set.name, total, len(todo))
    return skipped
