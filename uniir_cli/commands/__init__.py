"""One thin module per subcommand: options -> config -> library call -> summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from uniir_cli.config_toml import to_toml
from uniir_cli.run_session import resolve_run_config


def show_config_and_exit(preset: str | None, overrides: list[str] | None, run_dir: Path | None, flags: dict[str, Any]) -> None:
    """`--show-config`: print the settings the command would run with, then exit."""
    typer.echo(to_toml(resolve_run_config(preset, overrides, run_dir, flags).config), nl=False)
    raise typer.Exit()
