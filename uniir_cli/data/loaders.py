"""torch Datasets that turn M-BEIR records into model inputs inside DataLoader workers.

Each item is `(text or None, image or None)` with UniIR's text normalisation (and, for
queries, the instruction) already applied; images are decoded and preprocessed in the
worker by the model's `Processor`. A missing or corrupt image is an error naming the record,
or, with `on_bad_image="skip"`, the item is encoded without it (as upstream pads) and
counted. A `UniirError` met in a worker travels to the main process inside the batch and is
raised there, so the user sees its one line rather than torch's worker traceback around it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from uniir_cli.data.ids import unhash_did
from uniir_cli.data.instructions import QueryText, candidate_text
from uniir_cli.data.layout import MBeirLayout
from uniir_cli.data.mbeir import CandidateRecord, QueryRecord, load_image
from uniir_cli.data.pool_reader import PoolReader
from uniir_cli.errors import DataError, UniirError

log = logging.getLogger(__name__)

EMPTY = None  # an item left with neither text nor image: encoded as the zero vector


@dataclass
class RawItem:
    record_id: str
    text: str | None  # normalised (a query's with its instruction); "" counts as no text
    image_path: str | None  # relative to the data root
    query: QueryText | None = None  # a query's text and instruction apart (None: a candidate)


class ItemDataset(Dataset):
    """Raw items -> processed model inputs (`processor.process`), image decoding included."""

    def __init__(self, layout: MBeirLayout, processor: Any, on_bad_image: str = "error") -> None:
        self.layout = layout
        self.processor = processor
        self.on_bad_image = on_bad_image

    def raw(self, index: int) -> RawItem:
        raise NotImplementedError

    def image_paths(self, rows: Iterable[int]) -> list[str | None]:
        """The image path (relative to the data root) of each item in `rows`."""
        return [self.raw(i).image_path for i in rows]

    def __getitem__(self, index: int) -> tuple[dict[str, Any] | UniirError | None, bool]:
        """(processed item, EMPTY or the user error it raised; whether its image was skipped)."""
        try:
            return self._load(index)
        except UniirError as exc:
            return exc, False

    def _load(self, index: int) -> tuple[dict[str, Any] | None, bool]:
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
            return EMPTY, skipped
        return self.processor.process(text, image, item.query), skipped


class RawItems(ItemDataset):
    """A list of raw items (queries with their instruction-formatted texts, or ad-hoc queries)."""

    def __init__(self, layout: MBeirLayout, processor: Any, items: Sequence[RawItem], on_bad_image: str = "error") -> None:
        super().__init__(layout, processor, on_bad_image)
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def raw(self, index: int) -> RawItem:
        return self.items[index]


def query_items(
    layout: MBeirLayout, processor: Any, queries: Sequence[QueryRecord], texts: Sequence[QueryText], on_bad_image: str = "error"
) -> RawItems:
    """Queries with their (already chosen) instructions."""
    items = [RawItem(q.qid, t.joined, q.query_img_path, t) for q, t in zip(queries, texts, strict=True)]
    return RawItems(layout, processor, items, on_bad_image)


class CandidateItems(ItemDataset):
    """Candidates read lazily from one or more pool files, in the order of `dids` (hashed)."""

    def __init__(self, layout: MBeirLayout, processor: Any, pools: Sequence[PoolReader], dids: np.ndarray, on_bad_image: str = "error") -> None:
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


@dataclass
class ItemBatch:
    """One DataLoader batch: model inputs of the items with content, which rows those are
    (EMPTY rows are encoded as zero vectors), images skipped, and the first user error a
    worker met (the main process raises it via `check`)."""

    inputs: Any  # the processor's EncoderBatch, None when no item has content
    present: np.ndarray  # [B] bool
    skipped: int
    error: UniirError | None = None

    def __len__(self) -> int:
        return len(self.present)

    def check(self) -> ItemBatch:
        if self.error is not None:
            raise self.error
        return self

    def pin_memory(self) -> ItemBatch:
        """Called by `DataLoader(pin_memory=True)` for custom batch types."""
        return dataclasses.replace(self, inputs=self.inputs.pin_memory() if self.inputs is not None else None)


def collate_items(processor: Any) -> Any:
    """A `collate_fn` building an `ItemBatch` (runs in the worker, as `processor.collate`)."""

    def collate(batch: list[tuple[Any, bool]]) -> ItemBatch:
        items = [item for item, _ in batch]
        present = np.array([item is not EMPTY for item in items], dtype=bool)
        skipped = sum(s for _, s in batch)
        errors = [item for item in items if isinstance(item, UniirError)]
        if errors:
            return ItemBatch(None, present, skipped, errors[0])
        encoded = processor.collate([item for item in items if item is not EMPTY]) if present.any() else None
        return ItemBatch(encoded, present, skipped)

    return collate
