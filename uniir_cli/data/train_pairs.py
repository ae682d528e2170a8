"""Training samples: (query with instruction, one positive, optional hard negatives).

As upstream, every epoch draws a random positive per query (and a random instruction); here
the draws depend only on (seed, epoch, sample index), so a resumed or re-sharded run sees
exactly the samples of an uninterrupted one. Hard negatives (`hard_neg_num`) are drawn the
same way: the query's `neg_cand_list` shuffled, topped up with random candidates of the
positive's dataset when the list is empty or too short. Random image transforms (BLIP's crop, flip and
RandomAugment draw from the global torch and Python RNGs) are seeded the same way, so they
do not depend on the number of DataLoader workers or on where a run was resumed.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from uniir_cli.data.benchmark import DID_BASE
from uniir_cli.data.ids import dataset_of, hash_dids, unhash_did
from uniir_cli.data.instructions import PromptPicker, QueryText, candidate_text
from uniir_cli.data.layout import MBeirLayout
from uniir_cli.data.mbeir import CandidateRecord, QueryRecord, load_image
from uniir_cli.data.pool_reader import PoolReader
from uniir_cli.errors import DataError


def _rng(*parts: object) -> random.Random:
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "little"))


@contextmanager
def seeded_global_rngs(seed: int) -> Iterator[None]:
    """Seed torch's (CPU) and Python's global RNGs for one sample, restoring both afterwards.

    Only the CPU generator: `torch.manual_seed` also seeds every accelerator backend, which
    costs about 2 ms a call without CUDA (it records a stack trace per backend) and, with
    CUDA, reseeded the GPU generators once per sample."""
    state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        random.seed(seed)
        try:
            yield
        finally:
            random.setstate(state)


def upsampled_union(per_dataset: dict[str, list[QueryRecord]], targets: dict[str, int], seed: int) -> list[QueryRecord]:
    """Concatenate per-dataset train queries, up-sampling a dataset with a target size by
    sampling with replacement until it has that many queries, then shuffle once (upstream
    built `mbeir_union_up_train.jsonl` so: WebQA 100K, EDIS/NIGHTS/FashionIQ/CIRR 50K)."""
    rng = random.Random(f"upsample:{seed}")
    union: list[QueryRecord] = []
    for slug, queries in per_dataset.items():
        extra = max(0, targets.get(slug, 0) - len(queries))
        union.extend(queries)
        union.extend(rng.choice(queries) for _ in range(extra))
    rng.shuffle(union)
    return union


class TrainPairs(Dataset):
    """Processed (query, positive, negatives) triples for one epoch at a time (`set_epoch`)."""

    def __init__(
        self,
        layout: MBeirLayout,
        processor: Any,
        queries: Sequence[QueryRecord],
        pool: PoolReader,
        picker: PromptPicker,
        *,
        seed: int,
        hard_neg_num: int = 0,
    ) -> None:
        self.layout = layout
        self.processor = processor
        self.queries = list(queries)
        self.pool = pool
        self.picker = picker
        self.seed = seed
        self.hard_neg_num = hard_neg_num
        self.epoch = 0
        self._dataset_rows: dict[int, tuple[int, int]] = {}
        self._check_positives()

    def _check_positives(self) -> None:
        """Every listed positive must be in the training pool (upstream asserts this); errors
        name the query's `file:line`, which the reader keeps (`QueryRecord.where`)."""
        for query in self.queries:
            if not query.pos_cand_list:
                raise DataError(f"{query.where or 'training queries'}: query {query.qid} has no positive candidate "
                                "(pos_cand_list is empty); give it one or drop the line")
        flat = [d for q in self.queries for d in q.pos_cand_list]
        present = self.pool.contains(hash_dids(flat))
        if not present.all():
            missing = flat[int(np.argmin(present))]
            owner = next(q for q in self.queries if missing in q.pos_cand_list)
            raise DataError(
                f"{owner.where or 'training queries'}: positive {missing} of query {owner.qid} is not in the training "
                f"pool {self.pool.path}; use the pool that belongs to these queries (data.train_pool)"
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.queries)

    def _item(self, text: str | None, image_path: str | None, record_id: str, query: QueryText | None = None) -> dict[str, Any]:
        image = load_image(self.layout.resolve(image_path), record_id) if image_path else None
        return self.processor.process(text or None, image, query)

    def _candidate(self, record: CandidateRecord) -> dict[str, Any]:
        return self._item(candidate_text(record.txt), record.img_path, record.did)

    def sample_ids(self, index: int) -> tuple[str, list[str]]:
        """(positive did, hard negative dids) of sample `index` in this epoch."""
        query = self.queries[index]
        positive = _rng(self.seed, self.epoch, index).choice(query.pos_cand_list)
        return positive, self.negatives(query, positive, index)

    def negatives(self, query: QueryRecord, positive: str, index: int) -> list[str]:
        """`hard_neg_num` negatives: the query's neg_cand_list shuffled (seeded by seed, epoch
        and index), topped up with random candidates of the positive's dataset."""
        if self.hard_neg_num <= 0:
            return []
        rng = _rng(self.seed, self.epoch, index, "negatives")
        listed = list(query.neg_cand_list)
        rng.shuffle(listed)
        picked = listed[: self.hard_neg_num]
        if len(picked) < self.hard_neg_num:
            picked += self._random_negatives(query, dataset_of(positive), self.hard_neg_num - len(picked), set(picked), rng)
        return picked

    def _random_negatives(self, query: QueryRecord, dataset_id: int, count: int, taken: set[str], rng: random.Random) -> list[str]:
        """`count` random candidates of `dataset_id` in the pool, never a positive of `query`;
        distinct (and not in `taken`) while the dataset has enough candidates."""
        low, high = self._rows_of(dataset_id)
        excluded = set(query.pos_cand_list) | taken
        in_range = self.pool.positions(sorted(excluded))
        available = (high - low) - int(((in_range >= low) & (in_range < high)).sum())
        if available <= 0:
            raise DataError(
                f"{self.pool.path}: dataset {dataset_id} has no candidate besides the positives and listed negatives of "
                f"query {query.qid}, so it has no random hard negative; lower train.hard_neg_num or use a larger pool"
            )
        picked: list[str] = []
        while len(picked) < count:
            did = unhash_did(int(self.pool.dids[rng.randrange(low, high)]))
            if did in excluded:
                continue
            picked.append(did)
            if available > count:  # enough candidates: keep the negatives distinct
                excluded.add(did)
        return picked

    def _rows_of(self, dataset_id: int) -> tuple[int, int]:
        """Rows [low, high) of one dataset's candidates in the pool's sorted hashed dids."""
        if dataset_id not in self._dataset_rows:
            bounds = np.searchsorted(self.pool.dids, [dataset_id * DID_BASE, (dataset_id + 1) * DID_BASE])
            self._dataset_rows[dataset_id] = (int(bounds[0]), int(bounds[1]))
        return self._dataset_rows[dataset_id]

    def __getitem__(self, index: int) -> dict[str, Any]:
        query = self.queries[index]
        positive_did, negatives = self.sample_ids(index)
        positive = self.pool[positive_did]
        key = (query.dataset_id, query.query_modality, positive.modality)
        prompt = self.picker.pick(key, f"{self.epoch}:{index}") if self.picker.enabled else None
        text = QueryText(query.query_txt, prompt)
        with seeded_global_rngs(_rng(self.seed, self.epoch, index, "transforms").getrandbits(63)):
            return {
                "query": self._item(text.joined, query.query_img_path, query.qid, text),
                "positive": self._candidate(positive),
                "positive_did": positive.did,
                "negatives": [self._candidate(self.pool[d]) for d in negatives],
            }


def collate_triples(processor: Any) -> Any:
    """Batch of samples -> (queries, positives, negatives or None) EncoderBatches; the
    positives carry their hashed candidate ids as `tensors["did"]`."""

    def collate(samples: list[dict[str, Any]]) -> tuple[Any, Any, Any]:
        import torch

        negatives = [n for s in samples for n in s["negatives"]]
        positives = processor.collate([s["positive"] for s in samples])
        if all("positive_did" in s for s in samples):
            # hashed ids: losses that treat equal candidates as positives (BLIP) need them
            positives.tensors["did"] = torch.from_numpy(hash_dids([s["positive_did"] for s in samples]))
        return (
            processor.collate([s["query"] for s in samples]),
            positives,
            processor.collate(negatives) if negatives else None,
        )

    return collate
