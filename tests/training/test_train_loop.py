"""Loop options of `uniir train` on the tiny synthetic tree (13 batches of 16 per epoch):
gradient accumulation, gradient clipping, one save per step, and checkpoints that only
appear once complete."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from uniir_cli.app import build_app
from uniir_cli.models.base import Retriever
from uniir_cli.rundir import RunDir

BATCHES_PER_EPOCH = 208 // 16  # tiny tree: 208 union train queries


def _train(data: Path, run: Path, *settings: str, resume: bool = False) -> None:
    args = ["train", "--preset", "demo", "--data-dir", str(data), "--run-dir", str(run),
            "--set", "train.batch_size=16", "--set", "train.epochs=1"]
    args += [item for setting in settings for item in ("--set", setting)]
    result = CliRunner().invoke(build_app(), args + (["--resume"] if resume else []))
    assert result.exit_code == 0, result.output


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics/train.jsonl").read_text().splitlines()]


@pytest.fixture
def optimizer_steps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The gradient norm seen by each real AdamW step (Accelerate skips the step, not the call,
    on accumulation micro-batches)."""
    norms: list[float] = []
    step = torch.optim.AdamW.step

    def counted(self: torch.optim.AdamW, *args: object, **kwargs: object) -> object:
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        norms.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item())
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", counted)
    return norms


def test_gradient_accumulation_steps_the_optimizer_and_schedule_once_per_window(
    synthetic_tiny: Path, tmp_path: Path, optimizer_steps: list[float]
) -> None:
    run = tmp_path / "run"
    _train(synthetic_tiny, run, "train.gradient_accumulation_steps=3", "train.warmup_steps=2")
    total = math.ceil(BATCHES_PER_EPOCH / 3)  # windows of 3, and the epoch's last batch alone: 5
    records = _records(run)
    assert len(optimizer_steps) == total
    assert [r["step"] for r in records] == list(range(1, total + 1))
    assert {r["total_steps"] for r in records} == {total}
    # lr after optimizer step k: warmup (k + 1) / 2, then cosine over the remaining 3 steps
    expected = [1e-3 * (k + 1) / 2 if k < 2 else 1e-3 * 0.5 * (1 + math.cos(math.pi * (k - 2) / (total - 2)))
                for k in range(1, total + 1)]
    assert [r["lr"] for r in records] == pytest.approx(expected, abs=1e-12)
    assert max(optimizer_steps) > 0.01  # unclipped: the clipping test's bound really bites


def test_max_grad_norm_bounds_the_gradient_norm(synthetic_tiny: Path, tmp_path: Path, optimizer_steps: list[float]) -> None:
    _train(synthetic_tiny, tmp_path / "run", "train.max_grad_norm=0.001", "train.max_steps=3")
    assert len(optimizer_steps) == 3
    assert all(0 < norm <= 0.001 * (1 + 1e-4) for norm in optimizer_steps), optimizer_steps


def test_the_epochs_last_step_is_saved_once(synthetic_tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from uniir_cli.training import loop

    saved: list[str] = []
    save_resume_state = loop.save_resume_state

    def counted(directory: Path, **kwargs: object) -> None:
        saved.append(Path(directory).name)
        save_resume_state(directory, **kwargs)

    monkeypatch.setattr(loop, "save_resume_state", counted)
    run = tmp_path / "run"
    _train(synthetic_tiny, run, "train.epochs=2", f"train.save_every_steps={BATCHES_PER_EPOCH}", "train.keep_checkpoints=0")
    assert saved == [f"{BATCHES_PER_EPOCH:08d}", f"{2 * BATCHES_PER_EPOCH:08d}"]
    first = json.loads((run / f"checkpoints/{BATCHES_PER_EPOCH:08d}/trainer_state.json").read_text())
    assert first == {"step": BATCHES_PER_EPOCH, "epoch": 1, "batch_in_epoch": 0, "torch_threads": torch.get_num_threads()}


def test_a_kill_mid_save_leaves_no_complete_looking_folder_and_resume_recovers(
    synthetic_tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    settings = ("train.save_every_steps=4", "train.keep_checkpoints=0")
    calls = []
    save_pretrained = Retriever.save_pretrained

    def dies_on_second_save(self: Retriever, directory: Path) -> Path:
        calls.append(directory)
        if len(calls) == 2:  # step 8: the resume state is written, the weights are not
            raise KeyboardInterrupt("killed mid-save")
        return save_pretrained(self, directory)

    with monkeypatch.context() as patch:
        patch.setattr(Retriever, "save_pretrained", dies_on_second_save)
        result = CliRunner().invoke(build_app(), ["train", "--preset", "demo", "--data-dir", str(synthetic_tiny),
                                                  "--run-dir", str(run), "--set", "train.batch_size=16",
                                                  "--set", "train.epochs=1", *[a for s in settings for a in ("--set", s)]])
    assert result.exit_code != 0
    checkpoints = run / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir() if not p.name.startswith(".")) == ["00000004"]
    assert (checkpoints / ".partial/00000008/resume").is_dir()  # the interrupted save, out of sight
    assert RunDir(run).latest_checkpoint() == checkpoints / "00000004"
    # An older kind of leftover: a numbered folder without model.json is not a checkpoint either.
    (checkpoints / "00000012/resume").mkdir(parents=True)
    # The killed run's last log line may be torn.
    with open(run / "metrics/train.jsonl", "a") as handle:
        handle.write('{"step": 9, "epoch": 0, "lo')

    _train(synthetic_tiny, run, *settings, resume=True)
    assert [r["step"] for r in _records(run)] == list(range(1, BATCHES_PER_EPOCH + 1))
    assert sorted(p.name for p in checkpoints.iterdir()) == ["00000004", "00000008", "00000012", f"{BATCHES_PER_EPOCH:08d}"]
    state = json.loads((checkpoints / "00000012/trainer_state.json").read_text())
    assert state["step"] == 12 and (checkpoints / "00000012/model.json").is_file()
