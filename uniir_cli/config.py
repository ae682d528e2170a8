"""Typed config schema.

Defaults live in the dataclasses below and only there; `uniir_cli.config_toml` layers
presets, `--set` overrides and flags over them and validates the result. A preset restates a
default only on purpose (an upstream recipe value, the identity of a model), and then says so
in its first line ("# Pinned on purpose: ..."); tests/test_config.py enforces this.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from uniir_cli.data.benchmark import (
    INSTRUCTIONS_FILE,
    UNION_TRAIN_QUERIES,
    UNION_VAL_QUERIES,
    union_pool_file,
)

Precision = Literal["no", "fp16", "bf16"]


@dataclass
class RunConfig:
    seed: int = 2023


@dataclass
class DataConfig:
    """Which files to read, relative to the data root (`--data-dir`)."""

    train_queries: str = UNION_TRAIN_QUERIES
    # Instead of train_queries: these datasets' own train files (query/train/), each
    # up-sampled with replacement to `upsample[slug]` queries, then shuffled once, as
    # upstream built its union file.
    train_datasets: list[str] = field(default_factory=list)
    upsample: dict[str, int] = field(default_factory=dict)
    train_pool: str = union_pool_file("train")
    # Instead of M-BEIR alone: a weighted mixture of training sources, each a table
    # {format = "nli-csv" | "llava-pretrain" | "conversations" | "mbeir", path, weight = 1.0,
    # images = "<folder of its images>", instruction = ""} (see uniir_cli/data/pair_sources.py).
    train_sources: list[dict[str, Any]] = field(default_factory=list)
    val_queries: str = UNION_VAL_QUERIES
    val_pool: str = union_pool_file("val")
    instructions: str = INSTRUCTIONS_FILE
    # random (seeded, as upstream) | first | index=N | none
    instruction_mode: str = "random"
    split: Literal["val", "test"] = "test"
    # Evaluation pairs by name (e.g. "mscoco_task0"); empty = all 16.
    tasks: list[str] = field(default_factory=list)


@dataclass
class ModelConfig:
    name: str = "clip_sf"
    size: str = "large"
    # Initial weights: "openai" (open_clip / Hugging Face cache) or "" for random init.
    pretrained: str = "openai"
    # Extra keyword arguments for the model class; it validates them.
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    batch_size: int = 105  # per device
    epochs: int = 20
    max_steps: int = 0  # > 0 stops early
    lr: float = 1e-5
    # Learning rate per parameter-name substring (CLIP-FF: {t5 = 5e-4}).
    param_group_lr: dict[str, float] = field(default_factory=dict)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-6
    weight_decay: float = 0.2
    warmup_steps: int = 0
    max_grad_norm: float = 0.0  # 0 = no clipping, as upstream
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = False
    # GradCache: embed each batch in chunks of this many samples and back-propagate through
    # cached embedding gradients (the full batch's gradients in a chunk's memory); 0 = off.
    grad_cache_chunk: int = 0
    mixed_precision: Precision = "fp16"
    gather_embeddings: bool = True
    # Hard negatives per query (0 = in-batch negatives only, as upstream). Each epoch draws
    # them from the query's own neg_cand_list, shuffled with a seed of (run.seed, epoch,
    # sample); when the list is empty or shorter, the rest are random candidates (seeded
    # alike, never a positive) of the positive's dataset in data.train_pool.
    hard_neg_num: int = 0
    in_batch_neg_num: int = 0
    # Where the hard negatives go: "own" = each query against its own H (+ in_batch_neg_num
    # other positives), UniIR's CLIP/BLIP loss; "shared" = every (gathered) hard negative a further
    # column of the one InfoNCE matrix, as E5-V and the UniIR fork's MLLM loss.
    hard_negatives: Literal["own", "shared"] = "own"
    # Average the per-query losses over "all" queries, or over "image-samples" only: those whose
    # query, positive and hard negatives all have an image (the fork's MLLM loss; a plain mean
    # for a batch with none).
    loss_average: Literal["all", "image-samples"] = "all"
    num_workers: int = 4
    save_every_steps: int = 0  # 0 = at each epoch end only
    keep_checkpoints: int = 3  # newest complete checkpoints kept; 0 = keep all
    # Validate every N optimizer steps (0 = never): Recall@1/5/10 of data.val_queries over
    # data.val_pool and in-batch accuracy (each query against the positives of its batch of
    # the global train batch size), in metrics/val.jsonl and the trackers.
    eval_every_steps: int = 0
    # Validate on this many val queries (a sample seeded by run.seed, the same at every
    # validation); 0 = all of them.
    val_max_queries: int = 0
    log_every_steps: int = 50
    trackers: list[str] = field(default_factory=list)  # e.g. ["tensorboard"], ["wandb"]


@dataclass
class EmbedConfig:
    batch_size: int = 256
    num_workers: int = 4
    precision: Precision = "fp16"  # autocast on GPU; CPU always runs fp32
    on_bad_image: Literal["error", "skip"] = "error"
    # Most items per shard file (a set is cut into >= 64 shards of >= one batch): the unit of resumption
    # and of work split between processes.
    shard_size: int = 65536


@dataclass
class IndexConfig:
    # auto: exact chunked search for "Flat", faiss for other factories; torch: exact chunked
    # search with torch tiles; faiss: a faiss index (sharded over all GPUs with faiss-gpu).
    backend: Literal["auto", "faiss", "torch"] = "auto"
    # faiss index factory string over L2-normalised vectors; "Flat" = exact, as upstream.
    factory: str = "Flat"
    # Matmul precision of the torch search on a GPU ("no" = fp32, rankings equal faiss's);
    # fp16/bf16 scores carry that precision. The CPU always searches in fp32.
    precision: Precision = "no"
    # Search-time settings of approximate faiss indexes (0 = faiss's default): IVF lists
    # probed per query, and HNSW's candidate list size. More finds more, slower.
    nprobe: int = 0
    ef_search: int = 0


@dataclass
class RetrieveConfig:
    pool: Literal["local", "global", "both"] = "local"
    rag: bool = False


@dataclass
class ScoreConfig:
    # Cut-offs of the ranking metrics besides UniIR's Recall@k (MRR@k, nDCG@k).
    rank_cutoff: int = 10


# The range of every numeric setting, checked when a config is resolved (a test keeps this
# complete): key -> (lowest, highest (excluded), whether the lowest itself is allowed); None =
# unbounded.
# Dict-valued settings are checked per value, list-valued ones per item.
NUMERIC_RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    "run.seed": (0, None, True),
    "data.upsample": (1, None, True),
    "train.batch_size": (1, None, True),
    "train.epochs": (1, None, True),
    "train.max_steps": (0, None, True),
    "train.lr": (0, None, False),
    "train.param_group_lr": (0, None, False),
    "train.betas": (0, 1, True),
    "train.eps": (0, None, False),
    "train.weight_decay": (0, None, True),
    "train.warmup_steps": (0, None, True),
    "train.max_grad_norm": (0, None, True),
    "train.gradient_accumulation_steps": (1, None, True),
    "train.grad_cache_chunk": (0, None, True),
    "train.hard_neg_num": (0, None, True),
    "train.in_batch_neg_num": (0, None, True),
    "train.num_workers": (0, None, True),
    "train.save_every_steps": (0, None, True),
    "train.keep_checkpoints": (0, None, True),
    "train.eval_every_steps": (0, None, True),
    "train.val_max_queries": (0, None, True),
    "train.log_every_steps": (1, None, True),
    "embed.batch_size": (1, None, True),
    "embed.num_workers": (0, None, True),
    "embed.shard_size": (1, None, True),
    "index.nprobe": (0, None, True),
    "index.ef_search": (0, None, True),
    "score.rank_cutoff": (1, None, True),
}


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    retrieve: RetrieveConfig = field(default_factory=RetrieveConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def section(self, name: str) -> dict[str, Any]:
        return dataclasses.asdict(getattr(self, name))
