"""Images in and out of `uniir serve`.

Out: a record's image is served by its path relative to the run's data directory, and only
from inside it. The relative path comes from the request, so it is checked before it
touches the disk (no absolute paths, no `..`) and again once resolved (a symlink in the tree
that points out of it is refused): the M-BEIR image folder itself may be a symlink to
another disk, so the resolved `mbeir_images/` counts as inside. Only image file types.

In: an upload is decoded from memory (never written anywhere), only in the common image
formats, and refused before decoding when its header claims more pixels than the limit.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from uniir_cli.serve.errors import BadUpload

if TYPE_CHECKING:
    from PIL import Image

IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".gif": "image/gif",
               ".webp": "image/webp", ".bmp": "image/bmp"}
UPLOAD_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP")
DEFAULT_MAX_PIXELS = 40_000_000  # a 40-megapixel photo; PIL's own bomb limit is 179M


def safe_image_file(roots: list[Path], relative: str) -> Path | None:
    """The image file `relative` names under the first root, or None when the path is absolute,
    has `..`, resolves outside every root, is not an image type or is no file."""
    if not roots or not relative or "\\" in relative or "\x00" in relative:
        return None
    parts = PurePosixPath(relative)
    if parts.is_absolute() or any(part in ("..", "") for part in relative.split("/")):
        return None
    if parts.suffix.lower() not in IMAGE_TYPES:
        return None
    try:
        resolved = (roots[0] / parts).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        return None
    inside = any(resolved.is_relative_to(root.resolve()) for root in roots)
    return resolved if inside and resolved.is_file() else None


def media_type(path: Path) -> str:
    return IMAGE_TYPES[path.suffix.lower()]


def decode_upload(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """An uploaded image as RGB; `BadUpload` naming the problem when it is not one."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS)
        width, height = image.size
        if width * height > max_pixels:
            raise BadUpload(f"the uploaded image is {width}x{height} pixels, more than the {max_pixels:,} allowed; send a smaller one")
        image.load()
        return image.convert("RGB")
    except BadUpload:
        raise
    except Image.DecompressionBombError:
        raise BadUpload("the uploaded image is too large to decode safely; send a smaller one") from None
    except UnidentifiedImageError:
        raise BadUpload(f"the uploaded file is not an image uniir reads ({', '.join(UPLOAD_FORMATS)})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise BadUpload(f"the uploaded image is damaged and cannot be decoded ({exc})") from None


def thumbnail_data_url(image: Image.Image, size: int = 192) -> str:
    """A small JPEG of `image` as a data: URL, so the page can show an upload it never stored."""
    thumb = image.copy()
    thumb.thumbnail((size, size))
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
