"""How `uniir embed` splits work: every rank gets part of every set, the files do not depend on
the number of processes, a changed cut never mixes with an earlier one, and each distinct
candidate is encoded once."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.launchers import two_ranks
from uniir_cli.app import build_app
from uniir_cli.config import Config
from uniir_cli.data.layout import MBeirLayout
from uniir_cli.data.loaders import RawItem, RawItems
from uniir_cli.errors import RunDirError
from uniir_cli.evaluation.embedding import EmbedSet, shard_plan
from uniir_cli.evaluation.shards import SPLIT_WAYS, ShardPlan, ShardStore
from uniir_cli.models.clip_fusion import ClipScoreFusion
from uniir_cli.rundir import RunDir

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


@pytest.mark.parametrize("count", [1, 7, 1_719, 24_809, 5_600_000])
@pytest.mark.parametrize("world", [1, 2, 3, 8, SPLIT_WAYS])
@pytest.mark.parametrize("batch", [1, 256])
def test_every_rank_gets_a_contiguous_share_of_every_set(count: int, world: int, batch: int) -> None:
    plan = ShardPlan("s", "queries", count, ShardPlan.shard_size_for(count, 65536, batch), "h")
    shares = [plan.shards_of(rank, world) for rank in range(world)]
    assert [s for share in shares for s in share] == list(range(plan.num_shards))  # each shard once, in order
    assert all(share == list(range(share[0], share[-1] + 1)) for share in shares if share)
    if count >= world * batch:
        assert all(shares), "a rank got no part of the set"
    assert plan.num_shards >= min(-(-count // batch), SPLIT_WAYS)
    assert plan.shard_size == (65536 if count >= 65536 * SPLIT_WAYS else max(batch, count // SPLIT_WAYS, 1))


def _write_all(store: ShardStore, plan: ShardPlan, ids: np.ndarray) -> None:
    store.write_plan(plan)
    for shard in range(plan.num_shards):
        rows = plan.shard_range(shard)
        store.write_shard(shard, np.zeros((len(rows), 2), np.float16), ids[rows.start : rows.stop], plan.shard_hash(shard))


def test_a_changed_cut_never_mixes_with_earlier_shards(tmp_path: Path) -> None:
    config = Config()
    config.embed.batch_size = 1
    texts = RawItems(MBeirLayout(tmp_path, check=False), None, [RawItem(str(i), "text", None) for i in range(300)])
    item_set = EmbedSet("q", "queries", texts, np.arange(300, dtype=np.int64), ["inputs"])
    store = ShardStore(tmp_path)
    config.embed.shard_size = 3
    _write_all(store, old := shard_plan(item_set, "model", config), item_set.ids)
    assert store.is_complete() and old.num_shards == 100

    config.embed.shard_size = 65536  # cut into 75 shards of 4 (300 // SPLIT_WAYS) instead of 100 of 3
    new = shard_plan(item_set, "model", config)
    assert (new.num_shards, new.shard_size) == (75, 4) and new.input_hash != old.input_hash
    store.write_plan(new)
    assert not any(store.is_done(s, new.shard_hash(s)) for s in range(new.num_shards))
    assert not store.is_complete()
    with pytest.raises(RunDirError, match="not finished"):
        store.blocks()
    assert max(p.name for p in tmp_path.glob("shard-*")) == "shard-00074.npy"  # the old cut's shards 75.. are gone


def test_each_distinct_candidate_is_encoded_once(synthetic_tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    encoded: list[int] = []
    original = ClipScoreFusion.encode

    def counting_encode(self: ClipScoreFusion, batch: object) -> object:
        encoded.append(len(batch))  # type: ignore[arg-type]
        return original(self, batch)

    monkeypatch.setattr(ClipScoreFusion, "encode", counting_encode)
    run = tmp_path / "run"
    result = CliRunner().invoke(
        build_app(), ["eval", "--preset", "demo", "--data-dir", str(synthetic_tiny), "--run-dir", str(run), "--pool", "both"]
    )
    assert result.exit_code == 0, result.output

    union = synthetic_tiny / "cand_pool/global/mbeir_union_test_cand_pool.jsonl"
    union_dids = {json.loads(line)["did"] for line in union.read_text().splitlines()}
    query_files = sorted((synthetic_tiny / "query/test").glob("*.jsonl"))
    queries = sum(len(path.read_text().splitlines()) for path in query_files)
    assert len(query_files) == 16
    assert sum(encoded) == queries + len(union_dids)
    assert len(ShardStore(RunDir(run).embeddings_dir("candidates_test")).ids()) == len(union_dids)


_WORK = re.compile(r"rank (\d) of 2 embedded (\S+): \d+ of its \d+ shards \((\d+) items\)")


@pytest.mark.slow
def test_two_gloo_ranks_write_the_files_of_one_process(synthetic_tiny: Path, tmp_path: Path) -> None:
    """Batches of 2: each 4-query set is split in two shards, so rank 1 encodes queries too.
    A bad image in rank 1's share is counted in the manifest (skip mode)."""
    data = tmp_path / "data"
    shutil.copytree(synthetic_tiny, data)
    query_file = data / "query/test/mbeir_nights_task4_test.jsonl"
    last = json.loads(query_file.read_text().splitlines()[-1])
    (data / last["query_img_path"]).write_bytes(b"not a jpeg")
    args = ["-v", "embed", "--preset", "demo", "--data-dir", str(data), "--pool", "both",
            "--on-bad-image", "skip", "--set", "embed.batch_size=2"]
    one, two = tmp_path / "one", tmp_path / "two"
    # CPU matmuls round differently with another thread count; accelerate gives each CPU rank
    # one thread, so the one-process reference runs with one thread too.
    subprocess.run([sys.executable, "-m", "uniir_cli", *args, "--run-dir", str(one)], check=True, capture_output=True,
                   env={**ENV, "OMP_NUM_THREADS": "1"})
    result = subprocess.run(
        [*two_ranks("accelerate"), *args, "--run-dir", str(two)],
        env={**ENV, "CUDA_VISIBLE_DEVICES": ""}, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    items = {(int(rank), name): int(n) for rank, name, n in _WORK.findall(result.stderr)}
    query_sets = [p.name for p in (two / "embeddings").iterdir() if p.name != "candidates_test"]
    assert len(query_sets) == 16
    assert all(items[(rank, name)] > 0 for rank in (0, 1) for name in [*query_sets, "candidates_test"]), items

    def files(run: Path) -> dict[str, bytes]:
        return {str(p.relative_to(run)): p.read_bytes() for p in sorted((run / "embeddings").rglob("*")) if p.is_file()}

    expected, got = files(one), files(two)
    assert got.keys() == expected.keys()
    assert [name for name in expected if got[name] != expected[name]] == []
    skipped = RunDir(two).read_manifest()["skipped_images"]
    assert skipped == RunDir(one).read_manifest()["skipped_images"] and skipped["nights_task4_test"] == 1
