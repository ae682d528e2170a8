"""A killed or interrupted `uniir embed` resumes to embeddings byte-identical to an
uninterrupted run, without encoding again the shards it had finished."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from uniir_cli.registry import build_model


def _embed_cmd(data: Path, run: Path, checkpoint: Path) -> list[str]:
    return [
        sys.executable, "-m", "uniir_cli", "embed", "--preset", "demo", "--data-dir", str(data),
        "--run-dir", str(run), "--checkpoint", str(checkpoint), "--pool", "both", "--set", "embed.shard_size=2",
    ]


def _with_terminal_ctrl_c(cmd: list[str]) -> list[str]:
    """`python -m uniir_cli ...` with SIGINT unblocked and handled, as in a terminal. A process
    inherits blocked and ignored signals from the one that starts it, so a moment in which a
    library of the test process blocks or ignores SIGINT would be handed on and the embed would
    never see its Ctrl-C: two full test runs (of ~6) saw it finish with exit code 0 after it."""
    assert cmd[1:3] == ["-m", "uniir_cli"]
    start = ("import runpy, signal; signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); "
             "signal.signal(signal.SIGINT, signal.default_int_handler); "
             "runpy.run_module('uniir_cli', run_name='__main__', alter_sys=True)")
    return [cmd[0], "-c", start, *cmd[3:]]


def _shard_bytes(run: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(run)): p.read_bytes()
        for p in sorted((run / "embeddings").rglob("*"))
        if p.is_file() and p.suffix in (".npy", ".done", ".json")
    }


def _finished_shard_files(run: Path) -> dict[Path, int]:
    """Files of the shards whose marker exists, with their modification times."""
    files = {}
    for marker in run.glob("embeddings/*/shard-*.done"):
        stem = marker.with_suffix("")
        for path in (marker, stem.with_suffix(".npy"), stem.with_suffix(".ids.npy")):
            files[path] = path.stat().st_mtime_ns
    return files


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "Ctrl-C"])
def test_stopped_embed_resumes_to_identical_files(synthetic_tiny: Path, tmp_path: Path, stop: signal.Signals) -> None:
    torch.manual_seed(0)
    checkpoint = build_model("clip_sf", size="tiny", pretrained="").save_pretrained(tmp_path / "ckpt")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    reference = tmp_path / "reference"
    subprocess.run(_embed_cmd(synthetic_tiny, reference, checkpoint), check=True, env=env, capture_output=True)

    resumed = tmp_path / "resumed"
    log = tmp_path / "stopped.log"
    with open(log, "w") as out:
        process = subprocess.Popen(_with_terminal_ctrl_c(_embed_cmd(synthetic_tiny, resumed, checkpoint)), env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(resumed.glob("embeddings/*/shard-*.done"))) < 12:
        time.sleep(0.01)
    done_at_signal = len(list(resumed.glob("embeddings/*/shard-*.done")))
    process.send_signal(stop)
    assert process.wait(timeout=60) != 0, (done_at_signal, log.read_text()[-3000:])
    finished = _finished_shard_files(resumed)
    done_at_stop = len(list(resumed.glob("embeddings/*/shard-*.done")))
    total = len(list(reference.glob("embeddings/*/shard-*.done")))
    assert 12 <= done_at_stop < total, "the run was not interrupted mid-way"

    result = subprocess.run(_embed_cmd(synthetic_tiny, resumed, checkpoint), env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    got, expected = _shard_bytes(resumed), _shard_bytes(reference)
    assert got.keys() == expected.keys()
    assert [name for name in expected if got[name] != expected[name]] == []
    rewritten = [str(path) for path, mtime in finished.items() if path.stat().st_mtime_ns != mtime]
    assert rewritten == [], "shards finished before the interruption were encoded again"
