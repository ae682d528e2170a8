"""The one error boundary of the CLI: a `UniirError` becomes a single line on stderr and
its exit code (2); `UNIIR_DEBUG=1` shows the traceback instead.

It lives with the commands (not in `app.py`) because command groups such as `uniir download`
wrap their own subcommands with it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from uniir_cli.errors import UniirError

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
