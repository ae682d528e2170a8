"""`uniir train` of a tiny LLaVA-NeXT with LoRA on the synthetic M-BEIR: adapter-only
checkpoints, exact resume after a kill, `uniir eval` of the run (base + adapter), a second
stage that starts from the first one's merged adapter, and 2 gloo ranks with GradCache and
shared hard negatives taking the one-process steps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from tests.launchers import two_ranks
from uniir_cli.app import build_app
from uniir_cli.rundir import RunDir

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
runner = CliRunner()


@pytest.fixture(scope="module")
def lora_preset(tiny_mllms: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("presets") / "tiny-e5v-lora.toml"
    path.write_text(f'''extends = ["model/e5v", "model/mllm-embed", "model/lora-r16", "train/mllm-lora", "data/mbeir"]
[model]
pretrained = "{tiny_mllms['llava_next']}"
[model.options]
dtype = "fp32"
max_image_tokens = 14
lora = {{r = 4, alpha = 8}}
[train]
batch_size = 8
epochs = 1
max_steps = 6
warmup_steps = 2
lr = 2e-3
mixed_precision = "no"
num_workers = 0
save_every_steps = 2
log_every_steps = 1
[embed]
batch_size = 8
num_workers = 0
''')
    return path


def _cli(preset: Path, data: Path, run: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "uniir_cli", "train", "--preset", str(preset), "--data-dir", str(data), "--run-dir", str(run), *extra]


def tiny_mllms_base(run: Path) -> str:
    return json.loads((RunDir(run).latest_checkpoint() / "model.json").read_text())["kwargs"]["pretrained"]


def _losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (run / "metrics/train.jsonl").read_text().splitlines())]


def test_a_killed_lora_run_resumes_to_the_same_adapter_and_evaluates(lora_preset: Path, synthetic_tiny: Path, tmp_path: Path) -> None:
    uninterrupted, resumed = tmp_path / "a", tmp_path / "b"
    subprocess.run(_cli(lora_preset, synthetic_tiny, uninterrupted), check=True, env=ENV, capture_output=True)
    process = subprocess.Popen(_cli(lora_preset, synthetic_tiny, resumed), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = resumed / "checkpoints/00000002/model.json"
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 2 <= len(_losses(resumed)) < 6, "the run was not interrupted mid-way"
    result = subprocess.run(_cli(lora_preset, synthetic_tiny, resumed, "--resume"), check=False, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _losses(resumed) == _losses(uninterrupted) and len(_losses(resumed)) == 6

    final_a, final_b = RunDir(uninterrupted).latest_checkpoint(), RunDir(resumed).latest_checkpoint()
    a, b = load_file(str(final_a / "model.safetensors")), load_file(str(final_b / "model.safetensors"))
    assert a.keys() == b.keys() and all("lora_" in k for k in a) and all((a[k] == b[k]).all() for k in a)
    assert any(bool((v != 0).any()) for k, v in a.items() if "lora_B" in k)  # the adapter trained
    meta = json.loads((final_a / "model.json").read_text())
    assert meta["kwargs"]["pretrained"] and meta["kwargs"]["lora"] == {"r": 4, "alpha": 8, "dropout": 0.05}

    result = runner.invoke(build_app(), ["eval", "--run-dir", str(uninterrupted), "--tasks", "mscoco_task0", "--pool", "local"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(RunDir(uninterrupted).metrics_json.read_text())
    assert "mscoco_task0" in metrics["pairs"]["local"]


def test_a_second_stage_starts_from_the_first_merged(lora_preset: Path, synthetic_tiny: Path, tmp_path: Path) -> None:
    stage1, stage2 = tmp_path / "stage1", tmp_path / "stage2"
    subprocess.run(_cli(lora_preset, synthetic_tiny, stage1, "--set", "train.max_steps=2"), check=True, env=ENV, capture_output=True)
    first = RunDir(stage1).latest_checkpoint()
    result = subprocess.run(_cli(lora_preset, synthetic_tiny, stage2, "--set", "train.max_steps=2",
                                 "--set", f'model.options.adapter="{first}"'), check=False, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    second = RunDir(stage2).latest_checkpoint()
    assert json.loads((second / "model.json").read_text())["kwargs"]["adapter"] == str(first.resolve())
    assert RunDir(stage2).stored_config().model.options["adapter"] == str(first)
    # Stage 2 starts from stage 1's trained model, not from the base.
    assert _losses(stage2)[0][1] != _losses(stage1)[0][1]
    result = runner.invoke(build_app(), ["eval", "--run-dir", str(stage2), "--tasks", "mscoco_task0", "--pool", "local"])
    assert result.exit_code == 0, result.output
    header = (stage2 / "report.md").read_text().splitlines()[0]  # the report names the chain, base first
    assert header == f"Model: {tiny_mllms_base(stage1)} + {first.resolve()} (merged) + {second} (LoRA r=4)"


def test_two_gloo_ranks_with_grad_cache_take_the_one_process_steps(lora_preset: Path, synthetic_tiny: Path, tmp_path: Path) -> None:
    """2 ranks x 4 queries, embedded in chunks of 2 (GradCache under DDP), positives and hard
    negatives gathered as shared columns == 1 process x 8 queries without chunks: the same
    gathered loss at every step and the same adapter after it (float rounding of all-reduce)."""
    common = ["--set", "train.max_steps=3", "--set", "train.save_every_steps=0", "--set", "train.hard_neg_num=1",
              "--set", "model.options.lora.dropout=0.0"]
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run(_cli(lora_preset, synthetic_tiny, one, *common), check=True, env=ENV, capture_output=True)
    command = [*two_ranks("torchrun"), "train", "--preset", str(lora_preset), "--data-dir", str(synthetic_tiny),
               "--run-dir", str(two), *common, "--set", "train.batch_size=4", "--set", "train.grad_cache_chunk=2"]
    result = subprocess.run(command, check=False, env={**ENV, "CUDA_VISIBLE_DEVICES": ""}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [s for s, _ in _losses(one)] == [s for s, _ in _losses(two)] == [1, 2, 3]
    for (_, a), (_, b) in zip(_losses(one), _losses(two), strict=True):
        assert abs(a - b) < 1e-5, (a, b)
    a = load_file(str(RunDir(one).latest_checkpoint() / "model.safetensors"))
    b = load_file(str(RunDir(two).latest_checkpoint() / "model.safetensors"))
    assert a.keys() == b.keys() and all("lora_" in k for k in a)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4  # lr 2e-3: Adam's first steps are ~lr each
    assert any(bool((v != 0).any()) for k, v in a.items() if "lora_B" in k)
