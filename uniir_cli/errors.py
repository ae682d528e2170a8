"""Errors a user can cause. Each one is printed as a single line by the CLI (exit code 2).

Messages name the file, line, record or key at fault and say what to do about it.
"""

from __future__ import annotations


class UniirError(Exception):
    """Base class: anything the user can fix (bad input, bad config, missing files)."""

    exit_code = 2


class ConfigError(UniirError):
    """A preset, override or option is invalid."""


class DataError(UniirError):
    """A data file is missing or malformed."""


class RunDirError(UniirError):
    """A run directory is locked, inconsistent with the requested config, or damaged."""


class ModelError(UniirError):
    """A model or checkpoint cannot be built or loaded."""


class NotImplementedYetError(UniirError):
    """A command that a later release fills in; it refuses rather than pretends."""


def location(path: object, line: int | None = None) -> str:
    """`path:line` (or just `path`) for error messages."""
    return f"{path}:{line}" if line is not None else str(path)


def json_problem(exc: ValueError) -> str:
    """A JSON parse error in words: "Expecting value at column 5", "Unterminated string
    starting at column 9" (json's messages ending in "at" expect the position after them)."""
    msg, column = getattr(exc, "msg", None), getattr(exc, "colno", None)
    if msg is None or column is None:
        return str(exc)
    return f"{msg}{' ' if msg.endswith(' at') else ' at '}column {column}"
