"""What the machine causes (a read-only folder, a full disk, a file where a folder belongs) is
one line naming the path and what to do, and a full disk is recoverable: the rerun after
freeing space gives the same numbers as a run that never failed.

The read-only and full file systems are real: a read-only bind mount and a small tmpfs in a
user and mount namespace of their own (`unshare`), so the tests need no root and change
nothing outside."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from uniir_cli.app import build_app

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
UNIIR = f"{sys.executable} -m uniir_cli"


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    return probe.returncode == 0


needs_namespaces = pytest.mark.skipif(not _namespaces_work(), reason="needs unshare (user and mount namespaces)")


def _in_namespace(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-ec", script], env=ENV,
                          capture_output=True, text=True, timeout=300)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@needs_namespaces
def test_a_read_only_run_or_data_dir_is_one_line(synthetic_tiny: Path, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    script = f"""
    mount --bind {ro} {ro}; mount -o remount,ro,bind {ro}
    {UNIIR} eval --preset demo --data-dir {synthetic_tiny} --run-dir {ro}/run --tasks nights_task4 2> {out}/eval.err || echo $? > {out}/eval.rc
    {UNIIR} demo --data-only --data-dir {ro}/data --size tiny 2> {out}/demo.err || echo $? > {out}/demo.rc
    """
    done = _in_namespace(script)
    assert done.returncode == 0, done.stderr
    for name in ("eval", "demo"):
        assert (out / f"{name}.rc").read_text().strip() == "2"
        stderr = (out / f"{name}.err").read_text()
        assert "Traceback" not in stderr, stderr
        lines = _error_lines(stderr)
        assert len(lines) == 1 and "the file system is read-only" in lines[0] and str(ro) in lines[0], stderr


@needs_namespaces
def test_a_full_disk_is_one_line_and_the_rerun_after_freeing_space_is_exact(synthetic_tiny: Path, tmp_path: Path) -> None:
    small, out = tmp_path / "small", tmp_path / "out"
    small.mkdir()
    out.mkdir()
    args = f"eval --preset demo --data-dir {synthetic_tiny} --run-dir {small}/run --pool both"
    script = f"""
    mount -t tmpfs -o size=160k tmpfs {small}
    {UNIIR} {args} 2> {out}/full.err || echo $? > {out}/full.rc
    mount -o remount,size=64m {small}
    {UNIIR} {args} > /dev/null 2> {out}/rerun.err
    cp {small}/run/metrics/metrics.json {out}/metrics.json
    """
    done = _in_namespace(script)
    assert done.returncode == 0, done.stderr
    assert (out / "full.rc").read_text().strip() == "2"
    stderr = (out / "full.err").read_text()
    lines = _error_lines(stderr)
    assert "Traceback" not in stderr and len(lines) == 1, stderr
    assert "no space left on the device" in lines[0] and "it continues where this one stopped" in lines[0]
    fresh = CliRunner().invoke(build_app(), args.replace(f"{small}/run", str(tmp_path / "fresh")).split())
    assert fresh.exit_code == 0, fresh.output
    assert json.loads((out / "metrics.json").read_text()) == json.loads((tmp_path / "fresh/metrics/metrics.json").read_text())


def test_a_file_where_a_folder_belongs_is_one_line(synthetic_tiny: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    result = CliRunner().invoke(build_app(), ["eval", "--preset", "demo", "--data-dir", str(synthetic_tiny),
                                              "--run-dir", str(tmp_path / "afile/sub")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "part of this path is a file, not a folder" in lines[0]
