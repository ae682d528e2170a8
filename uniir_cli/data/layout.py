"""Where things live in an M-BEIR data root (the Hugging Face `TIGER-Lab/M-BEIR` layout).

File names come from `data/benchmark.py`; this class only joins them to a root, checks that
the root looks like M-BEIR, and resolves the relative image paths stored in records.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING

from uniir_cli.data import benchmark as bm
from uniir_cli.data.catalog import Catalog, discover_pairs, load_catalog
from uniir_cli.data.mbeir import CandidateRecord, QueryRecord, load_image
from uniir_cli.errors import DataError

if TYPE_CHECKING:
    from PIL import Image

GET_DATA_HINT = (
    "download M-BEIR with `uniir download mbeir --data-dir DIR`, "
    "or write a small synthetic one with `uniir demo --data-only --data-dir DIR`"
)


SYNTHETIC_MARKER = "SYNTHETIC.json"  # written by data.synthetic at the root of its trees
PUBLISHED_UNION_TEST_BYTES = 2_000_000_000  # the published union test pool is 2.43 GB


class MBeirLayout:
    """Paths of one M-BEIR data root. `check=True` fails early on a root that is not M-BEIR."""

    # Folders every usable root has; mbeir_images/ is optional until images are needed.
    REQUIRED_DIRS: tuple[str, ...] = ("query", "cand_pool", "qrels", "instructions")
    QUERY_DIRS: tuple[str, ...] = ("train", "union_train", "val", "union_val", "test")
    POOL_DIRS: tuple[str, ...] = ("local", "global")

    def __init__(self, root: str | os.PathLike[str], *, check: bool = True) -> None:
        self.root = Path(root).expanduser()
        if check:
            self.check()

    def __repr__(self) -> str:
        return f"MBeirLayout({str(self.root)!r})"

    def check(self) -> None:
        """Raise a `DataError` naming the first expected folder that is missing."""
        if not self.root.is_dir():
            raise DataError(f"data directory {self.root} does not exist; {GET_DATA_HINT}")
        for name in self.REQUIRED_DIRS:
            if not (self.root / name).is_dir():
                raise DataError(
                    f"{self.root} does not look like an M-BEIR data root: folder {name}/ is missing "
                    f"(expected {', '.join(d + '/' for d in self.REQUIRED_DIRS)}); {GET_DATA_HINT}"
                )

    # -- files ---------------------------------------------------------------------------
    def path(self, relative: str) -> Path:
        return self.root / relative

    def query_file(self, pair: bm.EvalPair, split: str) -> Path:
        return self.root / pair.query_file(split)

    def pool_file(self, pair: bm.EvalPair, split: str) -> Path:
        return self.root / pair.pool_file(split)

    def qrels_file(self, pair: bm.EvalPair, split: str) -> Path:
        return self.root / pair.qrels_file(split)

    def train_query_file(self, dataset: bm.Dataset) -> Path:
        return self.root / bm.train_query_file(dataset)

    def train_qrels_file(self, dataset: bm.Dataset) -> Path:
        return self.root / bm.train_qrels_file(dataset)

    def union_pool_file(self, split: str) -> Path:
        return self.root / bm.union_pool_file(split)

    @property
    def union_train_queries(self) -> Path:
        return self.root / bm.UNION_TRAIN_QUERIES

    @property
    def union_val_queries(self) -> Path:
        return self.root / bm.UNION_VAL_QUERIES

    @property
    def instructions_file(self) -> Path:
        return self.root / bm.INSTRUCTIONS_FILE

    @property
    def images_dir(self) -> Path:
        return self.root / bm.IMAGES_DIR

    def require(self, path: Path, what: str) -> Path:
        """`path` if it is a file, else a `DataError` saying which file is missing."""
        if not path.is_file():
            raise DataError(f"{what} not found: {path}; {GET_DATA_HINT}")
        return path

    @functools.cached_property
    def catalog(self) -> Catalog:
        """M-BEIR's datasets and those the tree declares in datasets.toml."""
        return load_catalog(self.root)

    def discovered_pairs(self, split: str) -> list[bm.EvalPair]:
        """The pairs this tree is evaluated on without --tasks (`catalog.discover_pairs`)."""
        return discover_pairs(self.root, self.catalog, split)

    def pairs_present(self, split: str) -> list[bm.EvalPair]:
        """The pairs of the catalog whose query file exists for `split` (no checks)."""
        return [p for p in self.catalog.possible_pairs() if self.query_file(p, split).is_file()]

    # -- images --------------------------------------------------------------------------
    def resolve(self, relative: str) -> Path:
        """A record's image path (relative to the root, as upstream stores it) -> real path."""
        path = Path(relative)
        return path if path.is_absolute() else self.root / path

    def is_published_mbeir(self) -> bool:
        """Whether this looks like the published M-BEIR (so the paper's numbers compare): not
        the synthetic tree, and a union test pool of the published size (2.43 GB; a small
        tree of one's own, or a partial download, has none that size)."""
        if (self.root / SYNTHETIC_MARKER).is_file():
            return False
        union = self.root / bm.union_pool_file("test")
        return union.is_file() and union.stat().st_size > PUBLISHED_UNION_TEST_BYTES

    def image_path(self, record: QueryRecord | CandidateRecord) -> Path | None:
        relative = record.img_path
        return self.resolve(relative) if relative else None

    def open_image(self, record: QueryRecord | CandidateRecord, *, draft: tuple[int, int] | None = None) -> Image.Image:
        """The record's image as RGB; `DataError` naming the record id when missing or corrupt."""
        if isinstance(record, QueryRecord):
            record_id, modality = record.qid, record.query_modality
        else:
            record_id, modality = record.did, record.modality
        path = self.image_path(record)
        if path is None:
            raise DataError(f"record {record_id} has no image path (modality {modality!r})")
        return load_image(path, record_id, draft=draft)
