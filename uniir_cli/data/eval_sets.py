"""Which evaluation pairs a config covers, and the names of their sets and pools.

Set names are folder names under a run's `embeddings/`, pool names those under `index/`;
the embed, index, retrieve, score and UniRAG steps and interactive search all go by them.
"""

from __future__ import annotations

from uniir_cli.config import Config
from uniir_cli.data.benchmark import EVAL_PAIRS, EvalPair

POOLS = ("local", "global")


def pools_of(setting: str) -> tuple[str, ...]:
    """`retrieve.pool` -> the pools to search."""
    return POOLS if setting == "both" else (setting,)


def query_set_name(pair: EvalPair, split: str) -> str:
    return f"{pair.name}_{split}"


def candidate_set_name(split: str) -> str:
    return f"candidates_{split}"


def global_pool_name(split: str) -> str:
    return f"global_{split}"


def eval_pairs(config: Config) -> list[EvalPair]:
    """The pairs of `data.tasks` (all 16 when empty), in benchmark order."""
    names = config.data.tasks
    return [p for p in EVAL_PAIRS if not names or p.name in names]


def candidate_pairs(config: Config) -> list[EvalPair]:
    """Pairs whose local pools make up the candidate set: all 16 for the global pool."""
    return list(EVAL_PAIRS) if "global" in pools_of(config.retrieve.pool) else eval_pairs(config)
