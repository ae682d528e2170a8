"""What `uniir download mbeir` checks and lists at the end: the `validate` checks, the images
the selected records point to, and which M-BEIR files are present.

The image check is existence only (a stat per referenced file, no decoding), restricted to the
selected datasets and splits, so it stays fast after a 169 GB download; `uniir validate
--images` decodes them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uniir_cli.data import benchmark as bm
from uniir_cli.data.layout import MBeirLayout
from uniir_cli.data.mbeir import (
    CandidateRecord,
    QueryRecord,
    iter_candidates,
    iter_queries,
)
from uniir_cli.download.files import METADATA_DIRS
from uniir_cli.download.selection import Selection, image_folder
from uniir_cli.errors import DataError, UniirError

log = logging.getLogger(__name__)

_EXAMPLES = 5


def metadata_present(data_dir: Path) -> bool:
    """Whether --data-dir has the metadata folders (query, cand_pool, qrels, instructions)."""
    return all((Path(data_dir) / d).is_dir() for d in METADATA_DIRS)


def run_validation(data_dir: Path, splits: Sequence[str]) -> tuple[Any | None, str | None]:
    """The `uniir validate` checks in quick mode: (report, None), or (None, why they did not run)."""
    if not metadata_present(data_dir):
        return None, f"validation skipped: {data_dir} has no M-BEIR metadata (download it with --what metadata)"
    from uniir_cli.data.tree_check import validate_data

    try:
        return validate_data(data_dir, splits=splits, quick=True), None
    except UniirError as exc:
        return None, f"validation could not run: {exc}"


@dataclass
class ImageCheck:
    """Referenced images of the selected records: how many were looked for, which are missing."""

    files: int = 0  # metadata files read
    checked: int = 0  # image references looked up (an image may be named by a query and a candidate)
    missing_paths: set[Path] = field(default_factory=set)
    examples: list[str] = field(default_factory=list)  # "path (record id in file)", one per missing file

    @property
    def missing(self) -> int:
        """Missing image files (each counted once)."""
        return len(self.missing_paths)


def _record_files(layout: MBeirLayout, selection: Selection) -> Iterator[tuple[Path, bool, frozenset[int] | None]]:
    """(file, is a pool, dataset ids to keep or None for all) for the selected datasets and splits."""
    slugs = set(selection.datasets or (d.slug for d in bm.DATASETS))
    seen: set[Path] = set()
    for split in selection.splits:
        if split == "train":
            for d in bm.DATASETS:
                if d.slug in slugs:
                    yield layout.train_query_file(d), False, None
            ids = frozenset(bm.DATASET_BY_SLUG[s].id for s in slugs) if selection.datasets else None
            yield layout.union_pool_file("train"), True, ids  # train candidates live in the union pool only
            continue
        for pair in bm.EVAL_PAIRS:
            if pair.dataset.slug not in slugs:
                continue
            yield layout.query_file(pair, split), False, None
            pool = layout.pool_file(pair, split)
            if pool not in seen:  # val and test share the local pools
                seen.add(pool)
                yield pool, True, None


def check_images(data_dir: Path, selection: Selection) -> ImageCheck:
    """Check that every image the selected datasets' query and pool records name exists."""
    layout = MBeirLayout(data_dir, check=False)
    result = ImageCheck()

    def skip_bad_line(error: DataError) -> None:
        log.debug("image check: %s", error)  # malformed lines are the validation's to report

    for path, is_pool, ids in _record_files(layout, selection):
        if not path.is_file():
            continue
        result.files += 1
        records: Iterator[QueryRecord | CandidateRecord] = (
            iter_candidates(path, on_error=skip_bad_line) if is_pool else iter_queries(path, on_error=skip_bad_line)
        )
        for record in records:
            if ids is not None and isinstance(record, CandidateRecord) and record.dataset_id not in ids:
                continue
            image = layout.image_path(record)
            if image is None:
                continue
            result.checked += 1
            if image not in result.missing_paths and not os.path.isfile(image):
                result.missing_paths.add(image)
                if len(result.examples) < _EXAMPLES:
                    record_id = record.qid if isinstance(record, QueryRecord) else record.did
                    result.examples.append(f"{image} ({record_id} in {path.relative_to(layout.root)})")
    return result


# ---------------------------------------------------------------------------------------
# What is present


@dataclass(frozen=True)
class DatasetPresence:
    slug: str
    name: str
    test_pairs: tuple[int, int]  # (pairs with query, pool and qrels files, pairs)
    val_pairs: tuple[int, int]
    train: bool
    images: bool


def inventory(data_dir: Path) -> tuple[list[DatasetPresence], dict[str, bool]]:
    """Which M-BEIR files exist under `data_dir`, per dataset and for the shared files."""
    root = Path(data_dir)

    def pairs(slug: str, split: str) -> tuple[int, int]:
        own = [p for p in bm.EVAL_PAIRS if p.dataset.slug == slug]
        full = [p for p in own if all((root / f).is_file() for f in (p.query_file(split), p.pool_file(split), p.qrels_file(split)))]
        return len(full), len(own)

    rows = [
        DatasetPresence(
            d.slug, d.name, pairs(d.slug, "test"), pairs(d.slug, "val"),
            (root / bm.train_query_file(d)).is_file(), (root / bm.IMAGES_DIR / image_folder(d.slug)).is_dir(),
        )
        for d in bm.DATASETS
    ]
    shared = {
        bm.INSTRUCTIONS_FILE: (root / bm.INSTRUCTIONS_FILE).is_file(),
        bm.UNION_TRAIN_QUERIES: (root / bm.UNION_TRAIN_QUERIES).is_file(),
        **{bm.union_pool_file(s): (root / bm.union_pool_file(s)).is_file() for s in bm.SPLITS},
    }
    return rows, shared
