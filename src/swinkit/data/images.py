"""Decoding image files with Pillow, and the errors the data layer raises.

Every image the data layer reads goes through :func:`decode_image`, so that a corrupt,
truncated or non-image file fails in one place, with one kind of report: a
:class:`BadImage` naming the file and the reason.
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Sequence

from PIL import Image

SHOWN_BAD_IMAGES = 20
"""How many unreadable files an error message lists before giving only the count."""


class DataError(ValueError):
    """A data source that cannot be used as given: the message says what is wrong and what is accepted."""


@dataclasses.dataclass(frozen=True)
class BadImage:
    """An image that could not be decoded: ``name`` (its path, or its row in a dataset) and ``reason``."""

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


class BadImagesError(DataError):
    """Some images of a data source cannot be decoded; ``bad`` lists all of them.

    Raised before training starts, by the scan of :func:`swinkit.data.load_data`. The message
    lists the first :data:`SHOWN_BAD_IMAGES` files with their reasons, and the count.
    """

    def __init__(self, bad: Sequence[BadImage], total: int) -> None:
        self.bad = list(bad)
        self.total = total
        lines = [f"{len(self.bad)} unreadable image(s) among {total} files:"]
        lines += [f"  {item}" for item in self.bad[:SHOWN_BAD_IMAGES]]
        if len(self.bad) > SHOWN_BAD_IMAGES:
            lines.append(f"  ... and {len(self.bad) - SHOWN_BAD_IMAGES} more ({len(self.bad)} in all)")
        lines.append("Fix or remove them, or pass skip_bad_images=True to leave them out and go on.")
        super().__init__("\n".join(lines))


class UnreadableImageError(DataError):
    """One image failed to decode when a dataset item was read (only when the scan was skipped)."""


def describe_error(exc: BaseException) -> str:
    """The reason a decode failed, as one line: the exception's type and message."""
    message = str(exc).strip() or "no message"
    return f"{type(exc).__name__}: {message}"


def decode_image(source: str | os.PathLike[str] | bytes, *, check_only: bool = False) -> Image.Image:
    """Open and fully decode one image from a file path or from its encoded bytes.

    The whole pixel stream is decoded (``Image.load``), so truncated files fail here rather
    than later inside a transform. The image keeps its own mode (``"RGB"``, ``"L"``, ``"P"``
    ...); conversion to the model's channels is the transforms' job. EXIF orientation is not
    applied, as in torchvision's and timm's loaders. With ``check_only`` a JPEG is decoded at
    reduced scale (Pillow's ``draft``), which reads every byte of the entropy-coded stream,
    so it detects the same damage, but skips most of the inverse DCT; the returned image is
    then not the full-size picture and is meant to be discarded. Raises whatever Pillow
    raises for a file it cannot read.
    """
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    with Image.open(stream) as image:
        if check_only:
            image.draft(None, (max(1, image.width // 8), max(1, image.height // 8)))
        image.load()
    return image


def try_decode(
    source: str | os.PathLike[str] | bytes, name: str, *, check_only: bool = False
) -> Image.Image | BadImage:
    """Decode one image (as :func:`decode_image` does), or describe why it cannot be, without raising.

    Pillow's format plugins raise many exception types for malformed data (``OSError``,
    ``SyntaxError``, ``EOFError``, ``struct.error``, ``zlib.error``, ``DecompressionBombError``
    ...), so every ``Exception`` counts as "this file is unreadable"; the file's name and the
    exception's text go into the returned :class:`BadImage`.
    """
    try:
        return decode_image(source, check_only=check_only)
    except Exception as exc:  # noqa: BLE001 - see the docstring: any decode failure is reported, per file
        return BadImage(name, _file_reason(source, exc))


def load_images(paths: Sequence[str | os.PathLike[str]]) -> list[tuple[str, Image.Image | BadImage]]:
    """Read images one by one for prediction, reporting unreadable ones per file instead of raising.

    Returns one ``(path, result)`` pair per input path, in order, where ``result`` is the
    decoded ``PIL.Image.Image`` (in its own mode; the eval transform converts it) or a
    :class:`BadImage` saying why that file could not be read (missing, empty, not an image,
    truncated ...).
    """
    return [(os.fspath(path), try_decode(path, os.fspath(path))) for path in paths]


def _file_reason(source: str | os.PathLike[str] | bytes, exc: BaseException) -> str:
    """The reason a decode failed, noting an empty file, which Pillow reports only as unidentified."""
    reason = describe_error(exc)
    if isinstance(source, bytes):
        return f"{reason} (empty data)" if not source else reason
    if os.path.isfile(source) and os.path.getsize(source) == 0:
        return f"{reason} (empty file)"
    return reason
