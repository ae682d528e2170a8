"""Training samples: (query with instruction, one positive, optional hard negatives).

As upstream, every epoch draws a random positive per query (and a random instruction); here
the draws depend only on (seed, epoch, sample index), so a resumed or re-sharded run sees
exactly the samples of an uninterrupted one. Random image transforms (BLIP's crop, flip and
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

from uniir_cli.data.ids import hash_dids, unhash_did
from uniir_cli.data.instructions import PromptPicker, candidate_text, query_text
from uniir_cli.data.layout import MBeirLayout
from uniir_cli.data.mbeir import CandidateRecord, QueryRecord, load_image
from uniir_cli.data.pool_index import PoolIndex
from uniir_cli.errors import DataError


def _rng(*parts: object) -> random.Random:
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "little"))


@contextmanager
def seeded_global_rngs(seed: int) -> Iterator[None]:
    """Seed torch's and Python's global RNGs for one sample, restoring both afterwards."""
    state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
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
        pool: PoolIndex,
        picker: PromptPicker,
        *,
        seed: int,
        hard_neg_num: int = 0,
        source: str = "train queries",
    ) -> None:
        self.layout = layout
        self.processor = processor
        self.queries = list(queries)
        self.pool = pool
        self.picker = picker
        self.seed = seed
        self.hard_neg_num = hard_neg_num
        self.epoch = 0
        self._check_positives(source)

    def _check_positives(self, source: str) -> None:
        """Every listed positive must be in the training pool (upstream asserts this)."""
        for query in self.queries:
            if not query.pos_cand_list:
                raise DataError(f"{source}: query {query.qid} has no positive candidate (pos_cand_list is empty)")
        flat = [d for q in self.queries for d in q.pos_cand_list]
        present = self.pool.contains(hash_dids(flat))
        if not present.all():
            missing = flat[int(np.argmin(present))]
            owner = next(q.qid for q in self.queries if missing in q.pos_cand_list)
            raise DataError(
                f"{source}: positive {missing} of query {owner} is not in the training pool {self.pool.path}; "
                "use the pool that belongs to these queries (data.train_pool)"
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.queries)

    def _item(self, text: str | None, image_path: str | None, record_id: str) -> dict[str, Any]:
        image = load_image(self.layout.resolve(image_path), record_id) if image_path else None
        return self.processor.process(text or None, image)

    def _candidate(self, record: CandidateRecord) -> dict[str, Any]:
        return self._item(candidate_text(record.txt), record.img_path, record.did)

    def negatives(self, query: QueryRecord, rng: random.Random) -> list[str]:
        """`hard_neg_num` negatives: the query's own list (cycled), else random pool candidates."""
        if self.hard_neg_num <= 0:
            return []
        listed = list(query.neg_cand_list)
        if listed:
            return [listed[i % len(listed)] for i in range(self.hard_neg_num)]
        positives = set(query.pos_cand_list)
        picked: list[str] = []
        while len(picked) < self.hard_neg_num:
            did = unhash_did(int(self.pool.dids[rng.randrange(len(self.pool))]))
            if did not in positives:
                picked.append(did)
        return picked

    def __getitem__(self, index: int) -> dict[str, Any]:
        query = self.queries[index]
        rng = _rng(self.seed, self.epoch, index)
        positive = self.pool[rng.choice(query.pos_cand_list)]
        key = (query.dataset_id, query.query_modality, positive.modality)
        prompt = self.picker.pick(key, f"{self.epoch}:{index}") if self.picker.enabled else None
        negatives = self.negatives(query, rng)
        with seeded_global_rngs(rng.getrandbits(63)):
            return {
                "query": self._item(query_text(query.query_txt, prompt), query.query_img_path, query.qid),
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
