"""Which evaluation pairs a config covers, and the names of their sets and pools.

Set names are folder names under a run's `embeddings/`, pool names those under `index/`;
the embed, index, retrieve, score and UniRAG steps and interactive search all go by them.
"""

from __future__ import annotations

from uniir_cli.config import Config
from uniir_cli.data.benchmark import EvalPair
from uniir_cli.data.layout import MBeirLayout

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


def eval_pairs(config: Config, layout: MBeirLayout) -> list[EvalPair]:
    """The pairs of `data.tasks` in catalog order (M-BEIR's, then declared datasets'), or,
    without tasks, the pairs found in the tree (`catalog.discover_pairs`)."""
    split = config.data.split
    if not config.data.tasks:
        return layout.discovered_pairs(split)
    known = [p.name for p in layout.pairs_present(split)]
    named = {layout.catalog.pair_named(name, known=known) for name in config.data.tasks}
    return [p for p in layout.catalog.possible_pairs() if p in named]


def candidate_pairs(config: Config, layout: MBeirLayout) -> list[EvalPair]:
    """Pairs whose local pools make up the candidate set: every pair whose query file the tree
    holds for the global pool (M-BEIR's 16 on the published benchmark), else the evaluated ones."""
    if "global" in pools_of(config.retrieve.pool):
        return layout.pairs_present(config.data.split)
    return eval_pairs(config, layout)
