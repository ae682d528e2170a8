"""The run session every entry point opens: run and data directory, lock, frozen settings, records."""

from __future__ import annotations

from pathlib import Path

import pytest

from uniir_cli.errors import ConfigError, RunDirError
from uniir_cli.run_session import resolve_run_config, run_session


def test_session_locks_binds_and_records(tmp_path: Path, synthetic_tiny: Path) -> None:
    resolved = resolve_run_config("demo", ["run.seed=3"])
    checkpoint = tmp_path / "ckpt"
    with run_session("eval", resolved, preset="demo", run_dir=tmp_path / "run", data_dir=synthetic_tiny,
                     checkpoint=checkpoint, evaluates=True) as session:
        assert session.is_main_process and session.checkpoint == checkpoint
        assert session.data_dir == synthetic_tiny and session.config.run.seed == 3
        with pytest.raises(RunDirError, match="is in use by pid"):
            with run_session("eval", resolved, preset="demo", run_dir=tmp_path / "run", data_dir=synthetic_tiny):
                pass
    run = session.run
    assert "seed = 3" in run.run_toml.read_text()
    assert run.recorded("data_dir") == str(synthetic_tiny.resolve())
    assert run.recorded("checkpoint") == str(checkpoint.resolve())
    assert [c["command"] for c in run.read_manifest()["commands"]] == ["eval"]
    # A later command of the run finds its data directory and checkpoint, and keeps its settings.
    with run_session("score", resolve_run_config(None, None, run.root), preset=None, run_dir=run.root,
                     data_dir=None, evaluates=True) as later:
        assert later.data_dir == synthetic_tiny.resolve() and later.checkpoint == checkpoint.resolve()
        assert later.config.run.seed == 3


def test_session_needs_a_preset_or_a_run_and_a_data_dir(tmp_path: Path) -> None:
    resolved = resolve_run_config("demo")
    with pytest.raises(ConfigError, match="needs --preset"):
        with run_session("eval", resolved, preset=None, run_dir=None, data_dir=tmp_path):
            pass
    with pytest.raises(ConfigError, match="no data directory: pass --data-dir"):
        with run_session("eval", resolved, preset="demo", run_dir=tmp_path / "new", data_dir=None):
            pass
    assert not (tmp_path / "new").exists()
