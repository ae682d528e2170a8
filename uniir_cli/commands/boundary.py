"""The one error boundary of the CLI: a `UniirError` becomes a single line on stderr and
its exit code (2), and so does an `OSError` the machine causes (a full disk, a read-only or
forbidden folder, a file where a folder belongs), naming the path and what to do;
`UNIIR_DEBUG=1` shows the traceback instead.

It lives with the commands (not in `app.py`) because command groups such as `uniir download`
wrap their own subcommands with it.
"""

from __future__ import annotations

import errno
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
            _print_error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:
            message = machine_error(exc)
            if message is None or os.environ.get("UNIIR_DEBUG") == "1":
                raise
            _print_error(message)
            raise typer.Exit(2) from None

    return wrapper


def _print_error(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


_RERUN = ("rerun the same command: finished steps, shards, checkpoints and downloads are kept "
          "and it continues where this one stopped")


def machine_error(exc: OSError) -> str | None:
    """The one-line message of an `OSError` the machine (not uniir) causes, or None."""
    path = exc.filename or "a file"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the device writing {path}; free some space, then {_RERUN}"
    if exc.errno == errno.EROFS:
        return f"cannot write {path}: the file system is read-only; pass a --run-dir / --data-dir on a writable disk"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"cannot write {path}: permission denied; pass a --run-dir / --data-dir you may write to"
    if exc.errno == errno.ENOTDIR:
        return f"{path}: part of this path is a file, not a folder; choose another --run-dir / --data-dir"
    if exc.errno == errno.EEXIST and exc.filename and not os.path.isdir(exc.filename):
        return f"{path} is a file, not a folder; choose another --run-dir / --data-dir"
    return None
