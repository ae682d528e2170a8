"""Which M-BEIR files a download wants (`uniir download mbeir --splits/--datasets`).

`Selection` is the one place that turns splits and datasets into file patterns, the image
folders to extract and the files a complete download has.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from uniir_cli.data import benchmark as bm
from uniir_cli.errors import ConfigError


def image_folder(slug: str) -> str:
    """The folder under ``mbeir_images/`` holding a dataset's images (InfoSeek shares OVEN's)."""
    return "oven_images" if slug == "infoseek" else f"{slug}_images"


@dataclass(frozen=True)
class Selection:
    """Splits and datasets to fetch; the union (global) files come only without `datasets`."""

    splits: tuple[str, ...] = bm.SPLITS
    datasets: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, splits: Iterable[str] | None, datasets: Iterable[str] | None) -> Selection:
        """Validate names (comma-separated values allowed), keeping the canonical order."""
        split_set = _split_csv(splits)
        if split_set:
            bad = sorted(split_set - set(bm.SPLITS))
            if bad:
                raise ConfigError(f"unknown split(s) {', '.join(bad)}: choose from {', '.join(bm.SPLITS)}")
        data_set = _split_csv(datasets)
        if data_set:
            bad = sorted(data_set - set(bm.DATASET_BY_SLUG))
            if bad:
                raise ConfigError(f"unknown dataset(s) {', '.join(bad)}: choose from {', '.join(d.slug for d in bm.DATASETS)}")
        return cls(
            tuple(s for s in bm.SPLITS if s in split_set) if split_set else bm.SPLITS,
            tuple(d.slug for d in bm.DATASETS if d.slug in data_set) if data_set else None,
        )

    def patterns(self) -> list[str]:
        """Glob patterns (fnmatch, as huggingface_hub's allow_patterns) of the metadata files."""
        slugs = self.datasets or ("*",)
        patterns = ["instructions/*"]
        for split in self.splits:
            for slug in slugs:
                stem = "*" if slug == "*" else f"mbeir_{slug}_*"
                patterns.append(f"query/{split}/{stem}.jsonl")
                patterns.append(f"qrels/{split}/{stem}.txt")
                if split != "train":  # local pools serve the val and test pairs
                    patterns.append(f"cand_pool/local/{stem}.jsonl")
            if self.datasets is None:
                patterns.append(f"query/union_{split}/*.jsonl")
                patterns.append(f"cand_pool/global/mbeir_union_{split}_cand_pool.jsonl")
        return patterns

    def wants(self, relative: str) -> bool:
        return any(fnmatch.fnmatchcase(relative, p) for p in self.patterns())

    def image_folders(self) -> frozenset[str] | None:
        return frozenset(image_folder(s) for s in self.datasets) if self.datasets else None

    def expected_files(self) -> list[str]:
        """Files a complete download of this selection has (for the 'missing' note)."""
        wanted = set(self.datasets or [d.slug for d in bm.DATASETS])
        files = [bm.INSTRUCTIONS_FILE]
        for split in self.splits:
            if split == "train":
                for d in bm.DATASETS:
                    if d.slug in wanted:
                        files += [bm.train_query_file(d), bm.train_qrels_file(d)]
                continue
            for pair in bm.EVAL_PAIRS:
                if pair.dataset.slug in wanted:
                    files += [pair.query_file(split), pair.qrels_file(split)]
                    if split == "test":
                        files.append(pair.pool_file(split))
        if self.datasets is None and "test" in self.splits:
            files.append(bm.union_pool_file("test"))
        if self.datasets is None and "train" in self.splits:
            files += [bm.UNION_TRAIN_QUERIES, bm.union_pool_file("train")]
        return sorted(set(files))


def _split_csv(values: Iterable[str] | None) -> set[str]:
    return {v.strip() for value in values or () for v in value.split(",") if v.strip()}
