"""The record types of the synthetic M-BEIR: sizes, image references, queries and candidates.

`builder.Builder` makes them from scenes, `tree_files` serialises them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from uniir_cli.data import benchmark as bm
from uniir_cli.data.benchmark import (
    Dataset,
)
from uniir_cli.data.synthetic import scenes as sc

log = logging.getLogger(__name__)

HARD_NEGATIVE_RATE = 0.25  # share of train queries that get a neg_cand_list
CROSS_POSITIVE_RATE = 0.3  # share of OVEN/InfoSeek queries with a positive of the other dataset


@dataclass(frozen=True)
class SizeSpec:
    """How much to generate; `test`/`val`/`train` are queries per (dataset, task) pair."""

    name: str
    test: int
    val: int
    train: int
    distractors: int  # hard distractors per positive in eval pools
    entities: int  # OVEN/InfoSeek entities (at most 36)


# ---------------------------------------------------------------------------------------
# In-memory records; ids and paths are assigned once everything exists.

ABSENT: Any = object()  # marks a candidate without a src_content key


@dataclass(eq=False)
class ImageRef:
    """One image file: written once even when several records point at it."""

    scene: sc.Scene
    path: str


@dataclass(eq=False)
class Cand:
    dataset: Dataset
    txt: str | None
    img: ImageRef | None
    src: Any
    did: str = ""

    @property
    def modality(self) -> str:
        return modality(self.txt, self.img)


@dataclass(eq=False)
class Query:
    dataset: Dataset
    task_id: int
    txt: str | None
    img: ImageRef | None
    src: Any
    pos: list[Cand]
    neg: list[Cand] = field(default_factory=list)
    qid: str = ""


def modality(txt: str | None, img: ImageRef | None) -> str:
    if txt is not None and img is not None:
        return bm.IMAGE_TEXT
    return bm.TEXT if txt is not None else bm.IMAGE


def id_key(ident: str) -> tuple[int, int]:
    dataset, n = ident.split(":")
    return int(dataset), int(n)
