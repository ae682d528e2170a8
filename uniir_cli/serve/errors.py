"""What a request to `uniir serve` can get wrong; the app answers each with its HTTP status and
the one-line message (`app.STATUS`). The server keeps running."""

from __future__ import annotations

from uniir_cli.errors import UniirError


class MissingExtra(UniirError):
    """FastAPI / uvicorn are not installed (the optional extra `uniir[serve]`)."""


class NotFound(UniirError):
    """A query set, query or pool that the run does not have (404)."""


class BadUpload(UniirError):
    """An upload that is not a readable image, or a malformed form (400)."""


class UploadTooLarge(BadUpload):
    """An upload over the size limit (413)."""


class PortInUse(UniirError):
    """The port cannot be bound (in use, or not allowed)."""
