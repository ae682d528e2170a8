"""Builds the `uniir` Typer app, registers one command per module, and maps errors.

The one error boundary lives here: a `UniirError` becomes a single line on stderr and exit
code 2; `UNIIR_DEBUG=1` shows the traceback instead.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from uniir_cli.errors import UniirError

# (command name, module under uniir_cli.commands), in the order `uniir --help` lists them.
COMMANDS: tuple[tuple[str, str], ...] = (
    ("download", "download"),
    ("train", "train"),
    ("embed", "embed"),
    ("index", "index"),
    ("retrieve", "retrieve"),
    ("score", "score"),
    ("report", "report"),
    ("eval", "evaluate"),
    ("search", "search"),
    ("validate", "validate"),
    ("convert", "convert"),
    ("demo", "demo"),
)

err_console = Console(stderr=True)


def with_error_boundary(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a `UniirError` raised by a command into one line and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UniirError as exc:
            if os.environ.get("UNIIR_DEBUG") == "1":
                raise
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper


def _version_callback(value: bool) -> None:
    if value:
        from uniir_cli.versions import version_report

        typer.echo(version_report())
        raise typer.Exit()


_console_log = logging.StreamHandler()
_console_log.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))


def configure_logging(verbose: bool) -> None:
    """INFO and up reach the run's log files; the terminal shows warnings (everything with -v).

    Progress and summaries are printed by the commands themselves.
    """
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    if _console_log not in root.handlers:
        root.addHandler(_console_log)
    _console_log.setLevel(logging.DEBUG if verbose else logging.WARNING)
    for noisy in ("accelerate", "matplotlib", "PIL", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="uniir",
        help="Universal multimodal retrieval (UniIR / M-BEIR): train, embed, index, retrieve, score.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode="rich",
    )

    @app.callback()
    def root(
        version: Annotated[
            bool,
            typer.Option("--version", callback=_version_callback, is_eager=True, help="Print versions and CUDA visibility, then exit."),
        ] = False,
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")] = False,
    ) -> None:
        configure_logging(verbose)

    for name, module_name in COMMANDS:
        module = importlib.import_module(f"uniir_cli.commands.{module_name}")
        if isinstance(getattr(module, "app", None), typer.Typer):
            app.add_typer(module.app, name=name)
        else:
            app.command(name=name)(with_error_boundary(module.run))
    return app


def main() -> None:
    build_app()()
