"""The run session: what every entry point (CLI command, Python call, demo) does around its
work, written once.

Resolve the settings on top of the run's `run.toml`; find the run directory (a new
`runs/<preset>-<time>` when none is given) and the data directory (the one given, else the
one this run recorded); then, on the main process, lock the run, log the command, check
the settings against `run.toml` (they are frozen there once the command completes) and
record the data directory (and the evaluated checkpoint) in the manifest. The other ranks of a multi-process launch get the same session without the
lock: the main process alone writes the run's bookkeeping.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uniir_cli.config import Config
from uniir_cli.config_toml import ResolvedConfig, resolve_config
from uniir_cli.data.layout import MBeirLayout
from uniir_cli.errors import ConfigError
from uniir_cli.rundir import RunDir, default_run_dir


@dataclass(frozen=True)
class RunSession:
    """An open run: its directory, frozen settings, data tree and model checkpoint."""

    run: RunDir
    config: Config
    layout: MBeirLayout
    data_dir: Path  # as given (the layout holds the expanded path)
    checkpoint: Path | None  # None: the configured model (pretrained or random init)
    is_main_process: bool


def resolve_run_config(
    preset: str | None,
    overrides: list[str] | None = None,
    run_dir: Path | None = None,
    settings: dict[str, Any] | None = None,
) -> ResolvedConfig:
    """Settings of a command: defaults < preset < `overrides` (`section.key=value`) <
    `settings` (dedicated flags), on top of the run's run.toml when the run exists."""
    if run_dir is not None and RunDir(run_dir).exists():
        return RunDir(run_dir).resolve(preset, overrides, settings)
    if run_dir is not None and not preset:
        RunDir(run_dir).stored_config()  # says the run does not exist and how to start one
    return resolve_config(preset, overrides, settings)


@contextlib.contextmanager
def run_session(
    command: str,
    resolved: ResolvedConfig,
    *,
    preset: str | None,
    run_dir: Path | None,
    data_dir: Path | None,
    checkpoint: Path | None = None,
    evaluates: bool = False,
) -> Iterator[RunSession]:
    """Open the run for `command` (see the module docstring).

    `evaluates`: the command evaluates a model, so the checkpoint defaults to the run's
    latest training checkpoint (or the one an earlier command evaluated) and is recorded;
    otherwise `checkpoint` is passed through as given (e.g. training's initial weights).
    """
    from uniir_cli.distributed import process_state

    if run_dir is None:
        if not preset:
            raise ConfigError(f"`uniir {command}` needs --preset (a new run) or --run-dir (an existing run)")
        run_dir = default_run_dir(resolved.name)
    run = RunDir(run_dir)
    data_dir = run.data_dir_or_recorded(data_dir)
    if evaluates:
        checkpoint = run.default_checkpoint(checkpoint)
    is_main = process_state().is_main_process
    session = RunSession(run, resolved.config, MBeirLayout(data_dir), data_dir, checkpoint, is_main)
    if not is_main:
        yield session
        return
    with run.command(command):
        run.bind_config(resolved, command)
        run.record("data_dir", str(Path(data_dir).resolve()))
        if evaluates and checkpoint is not None:
            run.record("checkpoint", str(Path(checkpoint).resolve()))
        yield session
