"""On-disk format of an embedded set: fixed-size shards of fp16 vectors plus int64 ids.

```
embeddings/<set>/set.json            plan: count, shard size, input hash, each shard's hash
embeddings/<set>/shard-00000.npy     fp16 [n, d]
embeddings/<set>/shard-00000.ids.npy int64 [n] (hashed qids or dids, as upstream)
embeddings/<set>/shard-00000.done    marker, written last: the shard's hash, item and skipped-image counts
```

A shard counts only once its marker exists and carries the shard's current hash (the set's
input hash and the size and modification time of every image the shard reads), so a killed
run resumes by redoing exactly the shards without a valid marker, and a changed image file
redoes just its shard. The cut of a set into
shards depends on the set and the batch size (`ShardPlan.shard_size_for`), never on the number of processes, so the
same files come out of any launch; callers put the shard size into the input hash, so a
changed cut never mixes with shards of an earlier one.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from uniir_cli import atomic
from uniir_cli.errors import RunDirError
from uniir_cli.ranking.knn import PoolBlock

# Every set is cut into this many shards when it has items enough (a shard holds at least
# one encoder batch), whatever the configured shard size: up to this many processes then
# all get a share of every set (a 20,000-query set is not left to rank 0), while the cut
# stays independent of the launch.
SPLIT_WAYS = 64


@dataclass(frozen=True)
class ShardPlan:
    name: str
    kind: str  # "queries" | "candidates"
    count: int
    shard_size: int
    input_hash: str
    shard_hashes: tuple[str, ...] = ()  # per shard: input hash + its images; empty in older plans

    @staticmethod
    def shard_size_for(count: int, max_shard_size: int, batch_size: int) -> int:
        """At most `max_shard_size` items per shard, and `SPLIT_WAYS` shards or more, unless a
        shard would then hold less than one batch (batches never cross shards: smaller ones
        would waste the accelerator)."""
        return max(1, min(max_shard_size, max(batch_size, count // SPLIT_WAYS)))

    @property
    def num_shards(self) -> int:
        return max(1, -(-self.count // self.shard_size))

    def shard_range(self, shard: int) -> range:
        start = shard * self.shard_size
        return range(start, min(start + self.shard_size, self.count))

    def shard_hash(self, shard: int) -> str:
        return self.shard_hashes[shard] if self.shard_hashes else self.input_hash

    def shards_of(self, rank: int, world: int) -> list[int]:
        """The shards one process encodes: a contiguous run, the runs of all processes
        differing by at most one shard, so every process works once there are `world` shards."""
        return list(range(rank * self.num_shards // world, (rank + 1) * self.num_shards // world))


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
        """Also removes what a killed earlier write of the plan left behind, and the shards of
        an earlier plan beyond this one's last (those within it fail the hash check)."""
        for stale in self.directory.glob(f".{self.plan_file.stem}.*"):
            stale.unlink(missing_ok=True)
        for path in self.directory.glob("shard-*"):
            number = re.fullmatch(r"shard-(\d+)\..*", path.name)
            if number and int(number.group(1)) >= plan.num_shards:
                path.unlink(missing_ok=True)
        atomic.write_json(self.plan_file, asdict(plan))

    def read_plan(self) -> ShardPlan:
        if not self.plan_file.is_file():
            raise RunDirError(f"{self.directory} has no embeddings yet; run `uniir embed` first")
        raw = json.loads(self.plan_file.read_text())
        return ShardPlan(**{**raw, "shard_hashes": tuple(raw.get("shard_hashes", ()))})

    # ------------------------------------------------------------------ shards
    def _marker(self, shard: int) -> dict[str, Any]:
        """The shard's done marker, empty when there is none (or a damaged one)."""
        try:
            marker = json.loads(self.done_file(shard).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return marker if isinstance(marker, dict) else {}

    def is_done(self, shard: int, input_hash: str) -> bool:
        return self._marker(shard).get("input_hash") == input_hash

    def write_shard(self, shard: int, vectors: np.ndarray, ids: np.ndarray, input_hash: str, skipped: int = 0) -> None:
        """Vectors and ids first (atomically), the marker last, with the number of images the
        shard was encoded without (`on_bad_image = "skip"`), so counts survive resumption.

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
        atomic.write_json(self.done_file(shard), {"input_hash": input_hash, "count": len(ids), "skipped": int(skipped)})

    def is_complete(self) -> bool:
        try:
            plan = self.read_plan()
        except RunDirError:
            return False
        return all(self.is_done(s, plan.shard_hash(s)) for s in range(plan.num_shards))

    def _complete_plan(self) -> ShardPlan:
        """The plan, once every one of its shards is finished."""
        plan = self.read_plan()
        missing = [s for s in range(plan.num_shards) if not self.is_done(s, plan.shard_hash(s))]
        if missing:
            raise RunDirError(
                f"{self.directory}: {len(missing)} of {plan.num_shards} shards are not finished "
                "(an interrupted embed?); run `uniir embed` again to complete them"
            )
        return plan

    def skipped_images(self) -> int:
        """Images left out over all shards, whichever process or earlier run encoded them."""
        plan = self._complete_plan()
        return sum(int(self._marker(s).get("skipped", 0)) for s in range(plan.num_shards))

    def blocks(self) -> list[PoolBlock]:
        """All shards as memory-mapped blocks (no copy of the fp16 vectors)."""
        plan = self._complete_plan()
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
