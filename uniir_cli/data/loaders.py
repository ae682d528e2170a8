"""torch Datasets that turn M-BEIR records into model inputs inside DataLoader workers.

Each item is `(text or None, image or None)` with UniIR's text normalisation (and, for
queries, the instruction) already applied; images are decoded and preprocessed in the
worker by the model's `Processor`. A missing or corrupt image is an error naming the record,
or, with `on_bad_image="skip"`, the item is encoded without it (as upstream pads) and
counted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from uniir_cli.data.ids import unhash_did
from uniir_cli.data.instructions import candidate_text
from uniir_cli.data.layout import MBeirLayout
from uniir_cli.data.mbeir import CandidateRecord, QueryRecord, load_image
from uniir_cli.data.pool_index import PoolIndex
from uniir_cli.errors import DataError

log = logging.getLogger(__name__)

EMPTY = None  # an item left with neither text nor image: encoded as the zero vector


@dataclass
class RawItem:
    record_id: str
    text: str | None  # normalised; "" counts as no text
    image_path: str | None  # relative to the data root


class ItemDataset(Dataset):
    """Raw items -> processed model inputs (`processor.process`), image decoding included."""

    def __init__(self, layout: MBeirLayout, processor: Any, on_bad_image: str = "error") -> None:
        self.layout = layout
        self.processor = processor
        self.on_bad_image = on_bad_image

    def raw(self, index: int) -> RawItem:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[int, dict[str, Any] | None, bool]:
        """(index, processed item or EMPTY, whether its image was skipped)."""
        item = self.raw(index)
        image = None
        skipped = False
        if item.image_path:
            try:
                image = load_image(self.layout.resolve(item.image_path), item.record_id)
            except DataError:
                if self.on_bad_image != "skip":
                    raise
                skipped = True
        text = item.text or None
        if text is None and image is None:
            return index, EMPTY, skipped
        return index, self.processor.process(text, image), skipped


class RawItems(ItemDataset):
    """A list of raw items (queries with their instruction-formatted texts, or ad-hoc queries)."""

    def __init__(self, layout: MBeirLayout, processor: Any, items: Sequence[RawItem], on_bad_image: str = "error") -> None:
        super().__init__(layout, processor, on_bad_image)
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def raw(self, index: int) -> RawItem:
        return self.items[index]


def query_items(layout: MBeirLayout, processor: Any, queries: Sequence[QueryRecord], texts: Sequence[str], on_bad_image: str = "error") -> RawItems:
    """Queries with their (already chosen) instruction-formatted texts."""
    items = [RawItem(q.qid, t, q.query_img_path) for q, t in zip(queries, texts, strict=True)]
    return RawItems(layout, processor, items, on_bad_image)


class CandidateItems(ItemDataset):
    """Candidates read lazily from one or more pool files, in the order of `dids` (hashed)."""

    def __init__(self, layout: MBeirLayout, processor: Any, pools: Sequence[PoolIndex], dids: np.ndarray, on_bad_image: str = "error") -> None:
        super().__init__(layout, processor, on_bad_image)
        self.pools = list(pools)
        self.dids = dids
        # Which pool file holds each candidate: the first pool that has it.
        self.source = np.full(len(dids), -1, dtype=np.int16)
        for i, pool in enumerate(self.pools):
            unassigned = self.source < 0
            self.source[unassigned & pool.contains(dids)] = i
        if (self.source < 0).any():
            missing = unhash_did(int(dids[np.argmax(self.source < 0)]))
            raise DataError(f"candidate {missing} is in none of the pool files")

    def __len__(self) -> int:
        return len(self.dids)

    def record(self, index: int) -> CandidateRecord:
        return self.pools[int(self.source[index])][unhash_did(int(self.dids[index]))]

    def raw(self, index: int) -> RawItem:
        record = self.record(index)
        return RawItem(record.did, candidate_text(record.txt), record.img_path)


def collate_items(processor: Any) -> Any:
    """A `collate_fn` keeping the positions of EMPTY items, which the encoder fills with zeros."""

    def collate(batch: list[tuple[int, dict[str, Any] | None, bool]]) -> tuple[Any, np.ndarray, np.ndarray, int]:
        indices = np.array([i for i, _, _ in batch], dtype=np.int64)
        present = np.array([item is not EMPTY for _, item, _ in batch], dtype=bool)
        skipped = sum(s for _, _, s in batch)
        encoded = processor.collate([item for _, item, _ in batch if item is not EMPTY]) if present.any() else None
        return encoded, indices, present, skipped

    return collate
