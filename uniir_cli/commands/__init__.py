"""One thin module per subcommand: options -> config -> library call -> summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from uniir_cli.config import ResolvedConfig, resolve_config, to_toml
from uniir_cli.rundir import RunDir


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
