"""A released-format UniIR `.pth` passed straight to the commands: `uniir eval --checkpoint
X.pth` on the synthetic M-BEIR gives the same embeddings as the folder `uniir convert` makes
from it, and the file decides the model whatever the preset says."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from uniir_cli.app import build_app
from uniir_cli.rundir import RunDir

runner = CliRunner()
APP = build_app()


def _invoke(*args: str) -> None:
    result = runner.invoke(APP, list(args))
    assert result.exit_code == 0, result.output


def _shards(run: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(run)): np.load(p) for p in sorted((run / "embeddings").rglob("shard-*.npy"))}


def test_eval_and_embed_take_an_upstream_pth(upstream_sf, synthetic_tiny: Path, tmp_path: Path) -> None:
    # text -> image, image -> text, image+text -> image+text: every kind of item
    tasks = [arg for task in ("mscoco_task0", "mscoco_task3", "oven_task8") for arg in ("--tasks", task)]
    common = ["--preset", "clip-sf-large", "--data-dir", str(synthetic_tiny), "--pool", "local", *tasks,
              "--set", "embed.num_workers=0", "--set", "embed.batch_size=64"]
    from_pth = tmp_path / "from-pth"
    _invoke("eval", *common, "--run-dir", str(from_pth), "--checkpoint", str(upstream_sf.path))
    metrics = json.loads(RunDir(from_pth).metrics_json.read_text())
    assert set(metrics["pairs"]["local"]) == {"mscoco_task0", "mscoco_task3", "oven_task8"}
    assert all(pair["queries"] > 0 for pair in metrics["pairs"]["local"].values())

    folder = tmp_path / "converted"
    _invoke("convert", str(upstream_sf.path), "--out", str(folder))
    from_folder = tmp_path / "from-folder"
    _invoke("embed", *common, "--run-dir", str(from_folder), "--checkpoint", str(folder))

    ours, converted = _shards(from_pth), _shards(from_folder)
    vectors = [name for name in ours if not name.endswith(".ids.npy")]
    assert ours.keys() == converted.keys() and vectors
    for name in ours:
        assert np.array_equal(ours[name], converted[name]), name
    first = ours[vectors[0]]
    assert first.shape[1] == 64 and np.abs(first.astype(np.float32)).max() > 0  # the tiny model, not large
