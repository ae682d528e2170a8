"""One thin module per subcommand: options -> config -> library call -> summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from uniir_cli.config_toml import ResolvedConfig, resolve_config, to_toml
from uniir_cli.errors import ConfigError
from uniir_cli.rundir import RunDir, default_run_dir


def resolve_command_config(
    preset: str | None,
    overrides: list[str] | None,
    run_dir: Path | None,
    flags: dict[str, Any] | None = None,
    show_config: bool = False,
) -> ResolvedConfig:
    """Resolve a command's config (on top of an existing run's run.toml); `--show-config` prints and exits."""
    if run_dir is not None and RunDir(run_dir).exists():
        resolved = RunDir(run_dir).resolve(preset, overrides, flags)
    else:
        resolved = resolve_config(preset, overrides, flags)
    if show_config:
        typer.echo(to_toml(resolved.config), nl=False)
        raise typer.Exit()
    return resolved


def open_run(command: str, resolved: ResolvedConfig, preset: str | None, run_dir: Path | None, data_dir: Path | None) -> tuple[RunDir, Path]:
    """The run directory (a new `runs/<preset>-<time>` without --run-dir) and the data
    directory (--data-dir, else the one this run recorded)."""
    if run_dir is None:
        if not preset:
            raise ConfigError(f"`uniir {command}` needs --preset (a new run) or --run-dir (an existing run)")
        run_dir = default_run_dir(resolved.name)
    run = RunDir(run_dir)
    if data_dir is None:
        stored = run.read_manifest().get("data_dir") if run.manifest_json.is_file() else None
        if stored is None:
            raise ConfigError("no data directory: pass --data-dir (or set UNIIR_DATA_DIR)")
        data_dir = Path(stored)
    return run, data_dir
