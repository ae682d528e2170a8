"""`--resume` reads no pickle: planted pickles never run, tampered state files are one-line errors."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from uniir_cli.app import build_app
from uniir_cli.rundir import RunDir


class Payload:
    """A pickle that, when loaded, creates `marker` (as `os.system` would run a command)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (Path.touch, (self.marker,))


def _train(data: Path, run: Path, resume: bool = False) -> object:
    args = ["train", "--preset", "demo", "--data-dir", str(data), "--run-dir", str(run), "--set", "train.batch_size=16",
            "--set", "train.epochs=1", "--set", "train.max_steps=6", "--set", "train.save_every_steps=3"]
    return CliRunner().invoke(build_app(), args + (["--resume"] if resume else []))


@pytest.fixture(scope="module")
def trained(synthetic_tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("resume") / "run"
    result = _train(synthetic_tiny, run)
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture
def copy(trained: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the trained run (as a colleague would send it) and its latest checkpoint."""
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    return run, RunDir(run).latest_checkpoint()


def test_checkpoints_hold_no_pickle(trained: Path) -> None:
    checkpoint = RunDir(trained).latest_checkpoint()
    files = sorted(p.relative_to(checkpoint).as_posix() for p in checkpoint.rglob("*") if p.is_file())
    assert files == ["model.json", "model.safetensors", "resume/optimizer.json", "resume/optimizer.safetensors",
                     "resume/rng-0.json", "resume/rng-0.safetensors", "resume/scheduler.json", "trainer_state.json"]


def test_planted_pickles_never_run(copy: tuple[Path, Path], synthetic_tiny: Path, tmp_path: Path) -> None:
    run, checkpoint = copy
    marker = tmp_path / "pwned"
    (checkpoint / "accelerate").mkdir()
    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin", "scheduler.bin"):
        (checkpoint / "accelerate" / name).write_bytes(pickle.dumps(Payload(marker)))
    result = _train(synthetic_tiny, run, resume=True)
    assert result.exit_code == 0, result.output
    assert not marker.exists()


def test_an_old_pickled_checkpoint_is_refused_with_the_way_on(copy: tuple[Path, Path], synthetic_tiny: Path, tmp_path: Path) -> None:
    run, checkpoint = copy
    marker = tmp_path / "pwned"
    shutil.rmtree(checkpoint / "resume")
    (checkpoint / "accelerate").mkdir()
    (checkpoint / "accelerate" / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(Payload(marker)))
    result = _train(synthetic_tiny, run, resume=True)
    assert result.exit_code == 2 and not marker.exists()
    assert "no longer loads because a pickle can run code" in result.output
    assert f"uniir train --checkpoint {checkpoint}" in result.output.replace("\n", "")


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("optimizer.safetensors", b"\x00" * 64, "not a readable safetensors file"),
        ("optimizer.json", pickle.dumps({"param_groups": []}), "unreadable"),
        ("optimizer.json", b'{"param_groups": [], "scalars": {}}', "does not fit this run's"),
        ("scheduler.json", b"[1, 2]", "does not fit this run's"),
        ("rng-0.json", b'{"python": [3, [1, 2], null]}', "not a uniir RNG state"),
        ("rng-0.safetensors", None, "missing"),
    ],
)
def test_a_tampered_state_file_is_one_line_naming_it(
    copy: tuple[Path, Path], synthetic_tiny: Path, name: str, content: bytes | None, says: str
) -> None:
    run, checkpoint = copy
    target = checkpoint / "resume" / name
    target.unlink()
    if content is not None:
        target.write_bytes(content)
    result = _train(synthetic_tiny, run, resume=True)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("error:") and str(target) in result.output.replace("\n", "") and says in result.output
    assert "Traceback" not in result.output
