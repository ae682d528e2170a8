"""The search form's body, read with a size cap and kept in memory.

Starlette's own form reader spools a file part over 1 MB to a temporary file and reads a body
of any size. This reader counts the bytes as they arrive, stops at the limit (413), and keeps
every part in memory (python-multipart with no disk threshold), so nothing a request sends
is written anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from uniir_cli.serve.errors import BadUpload, UploadTooLarge

FORM_OVERHEAD = 64 * 1024  # room for the text fields and multipart headers beside the image
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


@dataclass
class SearchForm:
    fields: dict[str, str] = field(default_factory=dict)
    image: bytes | None = None  # None when no file was chosen


async def read_form(request: Any, max_upload_bytes: int) -> SearchForm:
    """The fields and the `image` file part of a multipart (or url-encoded) form."""
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import create_form_parser

    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(FORM_TYPES):
        raise BadUpload("send the search as a form (multipart/form-data or application/x-www-form-urlencoded)")
    limit = max_upload_bytes + FORM_OVERHEAD
    too_large = UploadTooLarge(f"the upload is larger than the {max_upload_bytes / 1e6:g} MB allowed; send a smaller image")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    form = SearchForm()
    files: list[Any] = []
    # url-encoded fields come raw (`a+b%21`); multipart ones as sent
    decode = unquote_plus if content_type.startswith("application/x-www-form-urlencoded") else str

    def on_field(part: Any) -> None:
        if part.field_name is not None:
            name, value = (raw.decode("utf-8", "replace") for raw in (part.field_name, part.value or b""))
            form.fields[decode(name)] = decode(value)

    headers = {"Content-Type": content_type.encode("latin-1")}
    received = 0
    try:
        parser = create_form_parser(headers, on_field, files.append,
                                    config={"MAX_MEMORY_FILE_SIZE": float("inf"), "MAX_BODY_SIZE": limit})
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise too_large
            parser.write(chunk)
        parser.finalize()
    except (FormParserError, ValueError) as exc:  # ValueError: a multipart type without a boundary
        raise BadUpload(f"the form could not be read ({exc}); send it as multipart/form-data") from None
    for part in files:
        if part.field_name == b"image" and part.size:
            part.file_object.seek(0)
            form.image = part.file_object.read()
            if len(form.image) > max_upload_bytes:
                raise too_large
    return form
