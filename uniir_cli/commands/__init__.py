"""One thin module per subcommand: options -> config -> library call -> summary."""

from __future__ import annotations

from uniir_cli.errors import NotImplementedYetError


def not_implemented(command: str, issue: str) -> NotImplementedYetError:
    """The error a not-yet-built command raises instead of pretending to work."""
    return NotImplementedYetError(
        f"`uniir {command}` is not implemented yet (planned: {issue}); nothing was done."
    )
