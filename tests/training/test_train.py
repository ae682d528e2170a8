"""`uniir train`: checkpoints, exact resume after a kill, validation, eval of the trained run
with no other flag, hard negatives, 2 gloo ranks (accelerate launch and torchrun)."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from tests.launchers import LAUNCHERS, two_ranks
from uniir_cli.app import build_app
from uniir_cli.data.ids import dataset_of
from uniir_cli.data.layout import MBeirLayout
from uniir_cli.rundir import RunDir
from uniir_cli.training.loop import build_dataset

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def _train_args(data: Path, run: Path, *extra: str) -> list[str]:
    return [
        "train", "--preset", "demo", "--data-dir", str(data), "--run-dir", str(run),
        "--set", "train.epochs=2", "--set", "train.batch_size=16", "--set", "train.save_every_steps=4", *extra,
    ]


def _losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (run / "metrics/train.jsonl").read_text().splitlines())]


def _validations(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics/val.jsonl").read_text().splitlines()]


def _final_weights(run: Path) -> dict:
    return load_file(str(RunDir(run).latest_checkpoint() / "model.safetensors"))


def _tensorboard_tags(run: Path) -> set[str]:
    """Scalar tags in the run's tensorboard event files (TFRecord framing: length, crc, event, crc)."""
    from tensorboardX.proto.event_pb2 import Event

    tags: set[str] = set()
    for path in run.rglob("events.out.tfevents.*"):
        data, offset = path.read_bytes(), 0
        while offset + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            tags |= {value.tag for value in Event.FromString(data[offset + 12 : offset + 12 + length]).summary.value}
            offset += 12 + length + 4
    return tags


def test_killed_training_resumes_to_the_same_losses_and_weights(synthetic_tiny: Path, tmp_path: Path) -> None:
    """The resumed process starts with 1 torch thread (as on a busier machine) and computes
    with the 2 the run had, so float sums, losses and weights are the same."""
    cli = [sys.executable, "-m", "uniir_cli"]
    uninterrupted, resumed = tmp_path / "a", tmp_path / "b"
    two_threads = {**ENV, "OMP_NUM_THREADS": "2"}
    subprocess.run(cli + _train_args(synthetic_tiny, uninterrupted), check=True, env=two_threads, capture_output=True)

    process = subprocess.Popen(cli + _train_args(synthetic_tiny, resumed), env=two_threads,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = resumed / "checkpoints/00000008/model.json"
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    steps_at_kill = len(_losses(resumed))
    total = len(_losses(uninterrupted))
    assert 8 <= steps_at_kill < total, "the run was not interrupted mid-way"

    result = subprocess.run(cli + _train_args(synthetic_tiny, resumed, "--resume"), check=False,
                            env={**ENV, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads((RunDir(resumed).latest_checkpoint() / "trainer_state.json").read_text())["torch_threads"] == 2
    assert _losses(resumed) == _losses(uninterrupted)
    a, b = _final_weights(uninterrupted), _final_weights(resumed)
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_checkpoints_and_eval_of_the_trained_run(synthetic_tiny: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    app = build_app()
    run = tmp_path / "run"
    result = runner.invoke(
        app, _train_args(synthetic_tiny, run, "--set", "train.keep_checkpoints=2", "--set", "train.eval_every_steps=5",
                         "--set", "train.val_max_queries=20", "--set", 'train.trackers=["tensorboard"]')
    )
    assert result.exit_code == 0, result.output
    checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert len(checkpoints) == 2 and checkpoints[-1] == f"{len(_losses(run)):08d}"
    final = run / "checkpoints" / checkpoints[-1]
    assert {"model.json", "model.safetensors", "trainer_state.json", "resume"} <= {p.name for p in final.iterdir()}
    losses = [loss for _, loss in _losses(run)]
    assert losses[-1] < losses[0]
    validation = _validations(run)
    assert [v["step"] for v in validation] == list(range(5, len(losses) + 1, 5))
    assert all(v["queries"] == 20 for v in validation)
    assert all(0.0 <= v["Recall@1"] <= v["Recall@5"] <= v["Recall@10"] <= 1.0 for v in validation)
    assert all(0.0 <= v["in_batch_accuracy"] <= 1.0 for v in validation)
    assert validation[-1]["in_batch_accuracy"] > 1 / 16  # above chance among 16 positives
    assert {"val/Recall_1", "val/in_batch_accuracy", "loss"} <= _tensorboard_tags(run)  # tensorboard turns @ into _

    again = runner.invoke(app, _train_args(synthetic_tiny, run))
    assert again.exit_code == 2 and "--resume" in again.output

    result = runner.invoke(app, ["eval", "--run-dir", str(run)])  # nothing else: the run knows its data and weights
    assert result.exit_code == 0, result.output
    assert RunDir(run).read_manifest()["checkpoint"] == str(final.resolve())
    assert (run / "metrics/metrics.json").is_file()


def test_hard_negatives_train_and_change_across_epochs(synthetic_tiny: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = CliRunner().invoke(build_app(), [
        "train", "--preset", "demo", "--data-dir", str(synthetic_tiny), "--run-dir", str(run), "--set", "train.epochs=2",
        "--set", "train.batch_size=32", "--set", "train.hard_neg_num=1",
    ])
    assert result.exit_code == 0, result.output
    assert len(_losses(run)) == 2 * (208 // 32)
    # The run's own config and data: which negatives did each epoch draw?
    dataset = build_dataset(RunDir(run).stored_config(), MBeirLayout(synthetic_tiny), processor=None)
    by_epoch = []
    for epoch in (0, 1):
        dataset.set_epoch(epoch)
        by_epoch.append([dataset.sample_ids(i) for i in range(len(dataset))])
    changed = 0
    for query, (pos0, (neg0,)), (pos1, (neg1,)) in zip(dataset.queries, *by_epoch, strict=True):
        for positive, negative in ((pos0, neg0), (pos1, neg1)):
            assert negative not in query.pos_cand_list
            if query.neg_cand_list:  # the tiny tree lists 1-3 per query, or none
                assert negative in query.neg_cand_list
            else:
                assert dataset_of(negative) == dataset_of(positive)
        changed += neg0 != neg1
    assert changed > len(dataset) // 2, f"only {changed} of {len(dataset)} negatives changed between epochs"


SLOW_COMMON = ["--set", "train.epochs=1", "--set", "train.save_every_steps=0", "--set", "train.max_steps=4",
               "--set", "train.eval_every_steps=2"]


@pytest.fixture(scope="module")
def one_process_run(synthetic_tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("one") / "run"
    subprocess.run(
        [sys.executable, "-m", "uniir_cli", "train", "--preset", "demo", "--data-dir", str(synthetic_tiny),
         "--run-dir", str(run), "--set", "train.batch_size=16", *SLOW_COMMON],
        check=True, env=ENV, capture_output=True,
    )
    return run


@pytest.mark.slow
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_two_gloo_ranks_match_one_process_on_the_same_global_batch(
    launcher: str, one_process_run: Path, synthetic_tiny: Path, tmp_path: Path
) -> None:
    """2 ranks x batch 8 (positives gathered across ranks) == 1 rank x batch 16, step by step;
    validation, its encoding split over the ranks, gives the one-process numbers."""
    two = tmp_path / "two"
    result = subprocess.run(
        [*two_ranks(launcher), "train", "--preset", "demo", "--data-dir", str(synthetic_tiny),
         "--run-dir", str(two), "--set", "train.batch_size=8", *SLOW_COMMON],
        check=False, env={**ENV, "CUDA_VISIBLE_DEVICES": ""}, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for (s1, l1), (s2, l2) in zip(_losses(one_process_run), _losses(two), strict=True):
        assert s1 == s2 and abs(l1 - l2) < 1e-5, (s1, l1, l2)
    # Gradients agree to float rounding (all-reduce sums in another order); Adam's update
    # normalisation can turn that into a few percent of one lr (1e-3) step on a tiny gradient.
    a, b = _final_weights(one_process_run), _final_weights(two)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 2e-4
    # The same validation (48 queries; in-batch over the same 16-query global batches) on
    # weights that differ by that rounding: at most one query may flip.
    one_val, two_val = _validations(one_process_run), _validations(two)
    assert [v["step"] for v in one_val] == [v["step"] for v in two_val] == [2, 4]
    for v1, v2 in zip(one_val, two_val, strict=True):
        assert v1["queries"] == v2["queries"] == 48
        for key in ("Recall@1", "Recall@5", "Recall@10", "in_batch_accuracy"):
            assert abs(v1[key] - v2[key]) <= 1 / 48 + 1e-9, (key, v1, v2)


def test_per_dataset_upsampling_and_tensorboard(synthetic_tiny: Path, tmp_path: Path) -> None:
    from uniir_cli.data.benchmark import DATASETS
    from uniir_cli.data.mbeir import read_queries

    sizes = {d.slug: len(read_queries(synthetic_tiny / f"query/train/mbeir_{d.slug}_train.jsonl")) for d in DATASETS}
    targets = {"webqa": sizes["webqa"] * 3, "nights": sizes["nights"] + 5}
    total = sum(max(n, targets.get(slug, 0)) for slug, n in sizes.items())
    run = tmp_path / "run"
    slugs = json.dumps([d.slug for d in DATASETS])
    result = CliRunner().invoke(
        build_app(),
        ["train", "--preset", "demo", "--data-dir", str(synthetic_tiny), "--run-dir", str(run),
         "--set", f"data.train_datasets={slugs}", "--set", f"data.upsample={{ webqa = {targets['webqa']}, nights = {targets['nights']} }}",
         "--set", "train.epochs=1", "--set", "train.batch_size=16", "--set", 'train.trackers=["tensorboard"]'],
    )
    assert result.exit_code == 0, result.output
    assert len(_losses(run)) == total // 16
    assert list(run.rglob("events.out.tfevents.*")), "no tensorboard event file"
