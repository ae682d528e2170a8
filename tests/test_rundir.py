"""Run directory: atomic writes, lock, step skipping, frozen model/data settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from uniir_cli import atomic
from uniir_cli.config_toml import resolve_config
from uniir_cli.errors import RunDirError
from uniir_cli.rundir import RunDir, hash_inputs


def test_atomic_write_replaces_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.json"
    atomic.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("half written")
            raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in target.parent.iterdir()] == ["file.json"]


def test_atomic_temp_keeps_suffix(tmp_path: Path) -> None:
    import numpy as np

    target = tmp_path / "emb.npy"
    with atomic.atomic_path(target) as tmp:
        assert tmp.suffix == ".npy"
        np.save(tmp, np.arange(3))
    assert np.load(target).tolist() == [0, 1, 2]


def test_bind_config_writes_run_toml_and_manifest(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    resolved = resolve_config("demo")
    with run.command("train"):
        run.bind_config(resolved, "train")
    assert run.stored_config() == resolved.config
    manifest = run.read_manifest()
    assert manifest["preset_chain"] == resolved.chain
    assert manifest["commands"][0]["command"] == "train"
    assert manifest["commands"][0]["status"] == "done"
    assert "uniir_version" in manifest and "created" in manifest
    assert run.log_file("train").is_file()


def test_changing_model_or_data_is_refused(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    with run.lock("t"):
        run.bind_config(resolve_config("demo"), "train")
        assert not run.exists()  # frozen only once the command has completed
        run.freeze()
        # Non-frozen sections may change.
        run.bind_config(run.resolve(None, ["embed.batch_size=7"]), "embed")
        run.freeze()
        assert run.stored_config().embed.batch_size == 7
        with pytest.raises(RunDirError, match=r"model.size: 'tiny' -> 'base'.*new run directory"):
            run.bind_config(run.resolve(None, ["model.size=base"]), "eval")


def test_resolve_on_a_new_run_needs_a_preset(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="--preset"):
        RunDir(tmp_path / "new").resolve(None)
    with pytest.raises(RunDirError, match="not a uniir run directory"):
        RunDir(tmp_path / "new").stored_config()


def test_step_skip_and_force(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    h = hash_inputs("pool", [1, 2])
    assert h == hash_inputs("pool", [1, 2]) and h != hash_inputs("pool", [1, 3])
    with run.lock("embed"):
        assert not run.is_fresh("embed:pool", h)
        with run.step("embed:pool", h):
            pass
        assert run.is_fresh("embed:pool", h)
        assert not run.is_fresh("embed:pool", hash_inputs("other"))
        with pytest.raises(ValueError):
            with run.step("embed:pool", h):
                raise ValueError("boom")
        assert not run.is_fresh("embed:pool", h)
        assert run.read_manifest()["steps"]["embed:pool"]["status"] == "failed"


def test_damaged_manifest_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(RunDirError, match="manifest.json is damaged"):
        RunDir(tmp_path).read_manifest()


def test_lock_is_reentrant_in_process(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    with run.lock("a"):
        with run.lock("b"):
            run.record("data_dir", "/x")
        run.record("k", 1)
    assert run.read_manifest()["data_dir"] == "/x"


def test_lock_held_by_another_process_names_its_pid(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from uniir_cli.rundir import RunDir
                with RunDir({str(tmp_path)!r}).lock("embed"):
                    print("locked", flush=True)
                    time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirError, match=rf"in use by pid {holder.pid} .*\(embed"):
            with RunDir(tmp_path).lock("eval"):
                pass
    finally:
        holder.kill()
        holder.wait()
    # The kernel released the killed holder's lock: no stale lock.
    with RunDir(tmp_path).lock("eval"):
        assert os.getpid() == int(RunDir(tmp_path).lock_file.read_text().split()[1])


def test_latest_checkpoint_ignores_incomplete(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert run.latest_checkpoint() is None
    for step in (10, 20):
        run.checkpoint_dir(step).mkdir(parents=True)
        (run.checkpoint_dir(step) / "model.json").write_text("{}")
    run.checkpoint_dir(30).mkdir()  # killed while saving: no model.json
    assert run.latest_checkpoint() == run.checkpoint_dir(20)


def test_temporary_files_of_killed_writers_are_removed_by_the_next_command(tmp_path: Path) -> None:
    """A writer killed mid-write (os._exit inside `atomic_path`) leaves its temporary file; the
    next command of the run removes it and keeps the temporaries of writers still running."""
    import subprocess
    import sys

    target = tmp_path / "run/embeddings/q/shard-00000.npy"
    code = ("import os, sys; from uniir_cli import atomic\n"
            "with atomic.atomic_path(sys.argv[1]) as tmp:\n    tmp.write_bytes(b'half'); os._exit(9)")
    subprocess.run([sys.executable, "-c", code, str(target)], check=False)
    orphan = next(target.parent.glob(".shard-00000.*.tmp.npy"))
    from uniir_cli import atomic

    with atomic.atomic_path(tmp_path / "run/metrics/metrics.json") as live:  # this process: still running
        run = RunDir(tmp_path / "run")
        with run.command("score"):
            pass
        assert not orphan.exists() and live.exists()
    assert not target.exists()
