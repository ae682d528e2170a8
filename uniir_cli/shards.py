"""On-disk format of an embedded set: fixed-size shards of fp16 vectors plus int64 ids.

```
embeddings/<set>/set.json            plan: count, shard size, dim, input hash
embeddings/<set>/shard-00000.npy     fp16 [n, d]
embeddings/<set>/shard-00000.ids.npy int64 [n] (hashed qids or dids, as upstream)
embeddings/<set>/shard-00000.done    marker, written last, holding the plan's input hash
```

A shard counts only once its marker exists and carries the current input hash, so a killed
run resumes by redoing exactly the shards without a valid marker.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from uniir_cli import atomic
from uniir_cli.errors import RunDirError
from uniir_cli.indexing import PoolBlock


@dataclass(frozen=True)
class ShardPlan:
    name: str
    kind: str  # "queries" | "candidates"
    count: int
    shard_size: int
    input_hash: str

    @property
    def num_shards(self) -> int:
        return max(1, -(-self.count // self.shard_size))

    def shard_range(self, shard: int) -> range:
        start = shard * self.shard_size
        return range(start, min(start + self.shard_size, self.count))

    def shards_of(self, rank: int, world: int) -> list[int]:
        """The shards one process encodes: an equal share of contiguous blocks of shards."""
        per_rank = -(-self.num_shards // world)
        return list(range(rank * per_rank, min((rank + 1) * per_rank, self.num_shards)))


class ShardStore:
    """Reads and writes the shards of one embedded set."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @property
    def plan_file(self) -> Path:
        return self.directory / "set.json"

    def _stem(self, shard: int) -> Path:
        return self.directory / f"shard-{shard:05d}"

    def vectors_file(self, shard: int) -> Path:
        return self._stem(shard).with_suffix(".npy")

    def ids_file(self, shard: int) -> Path:
        return self._stem(shard).with_suffix(".ids.npy")

    def done_file(self, shard: int) -> Path:
        return self._stem(shard).with_suffix(".done")

    # ------------------------------------------------------------------ plan
    def write_plan(self, plan: ShardPlan) -> None:
        """Also removes what a killed earlier write of the plan left behind."""
        for stale in self.directory.glob(f".{self.plan_file.stem}.*"):
            stale.unlink(missing_ok=True)
        atomic.write_json(self.plan_file, asdict(plan))

    def read_plan(self) -> ShardPlan:
        if not self.plan_file.is_file():
            raise RunDirError(f"{self.directory} has no embeddings yet; run `uniir embed` first")
        return ShardPlan(**json.loads(self.plan_file.read_text()))

    # ------------------------------------------------------------------ shards
    def is_done(self, shard: int, input_hash: str) -> bool:
        marker = self.done_file(shard)
        if not marker.is_file():
            return False
        try:
            return json.loads(marker.read_text()).get("input_hash") == input_hash
        except json.JSONDecodeError:
            return False

    def write_shard(self, shard: int, vectors: np.ndarray, ids: np.ndarray, input_hash: str) -> None:
        """Vectors and ids first (atomically), the marker last.

        Temporary files that a killed earlier attempt at this shard left behind are removed.
        """
        if len(vectors) != len(ids):
            raise AssertionError("vectors and ids differ in length")
        for stale in self.directory.glob(f".{self._stem(shard).name}.*"):
            stale.unlink(missing_ok=True)
        with atomic.atomic_path(self.vectors_file(shard)) as tmp:
            np.save(tmp, np.ascontiguousarray(vectors, dtype=np.float16))
        with atomic.atomic_path(self.ids_file(shard)) as tmp:
            np.save(tmp, np.ascontiguousarray(ids, dtype=np.int64))
        atomic.write_json(self.done_file(shard), {"input_hash": input_hash, "count": len(ids)})

    def is_complete(self) -> bool:
        try:
            plan = self.read_plan()
        except RunDirError:
            return False
        return all(self.is_done(s, plan.input_hash) for s in range(plan.num_shards))

    def blocks(self) -> list[PoolBlock]:
        """All shards as memory-mapped blocks (no copy of the fp16 vectors)."""
        plan = self.read_plan()
        missing = [s for s in range(plan.num_shards) if not self.is_done(s, plan.input_hash)]
        if missing:
            raise RunDirError(
                f"{self.directory}: {len(missing)} of {plan.num_shards} shards are not finished "
                "(an interrupted embed?); run `uniir embed` again to complete them"
            )
        return [
            PoolBlock(np.load(self.vectors_file(s), mmap_mode="r"), np.load(self.ids_file(s)))
            for s in range(plan.num_shards)
            if plan.shard_range(s)
        ]

    def ids(self) -> np.ndarray:
        blocks = self.blocks()
        return np.concatenate([b.ids for b in blocks]) if blocks else np.zeros(0, dtype=np.int64)

    def vectors(self) -> np.ndarray:
        """All vectors in one fp16 array (for query sets; pools are searched block by block)."""
        blocks = self.blocks()
        return np.concatenate([np.asarray(b.vectors) for b in blocks]) if blocks else np.zeros((0, 0), np.float16)


def subset_block(blocks: list[PoolBlock], wanted_ids: np.ndarray, source: str) -> PoolBlock:
    """The rows of `blocks` whose ids are `wanted_ids`, in that order (a local pool out of the union)."""
    all_ids = np.concatenate([b.ids for b in blocks])
    order = np.argsort(all_ids, kind="stable")
    sorted_ids = all_ids[order]
    pos = np.searchsorted(sorted_ids, wanted_ids)
    pos = np.minimum(pos, len(sorted_ids) - 1)
    found = sorted_ids[pos] == wanted_ids
    if not found.all():
        from uniir_cli.data.ids import unhash_dids

        missing = unhash_dids(wanted_ids[~found][:5])
        raise RunDirError(
            f"{source}: {int((~found).sum())} candidate(s) are not among the embedded candidates "
            f"(e.g. {', '.join(missing)}); re-run `uniir embed --force`"
        )
    rows = order[pos]
    starts = np.cumsum([0] + [len(b.ids) for b in blocks])
    vectors = np.empty((len(rows), blocks[0].vectors.shape[1]), dtype=np.float16)
    for i, block in enumerate(blocks):
        mask = (rows >= starts[i]) & (rows < starts[i + 1])
        if mask.any():
            vectors[mask] = block.vectors[rows[mask] - starts[i]]
    return PoolBlock(vectors, wanted_ids.astype(np.int64))
