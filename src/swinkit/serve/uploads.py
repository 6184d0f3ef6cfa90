"""What a request may send: a bounded body, decoded as an image the way ``predict`` decodes files.

The body limit is enforced before and while the body arrives (:class:`BodyLimit`), so an
oversized upload is refused with 413 without being held in memory. The image is decoded
from the uploaded bytes only (never from a path a request could name) by
:func:`swinkit.data.images.try_decode`, the function ``predict`` uses, after its header has
been checked: a format that Pillow would hand to an external program (EPS goes to
Ghostscript) is refused, and so is an image whose pixel count exceeds the limit, before
any pixel is decoded.
"""

from __future__ import annotations

import io
import json
import logging

from PIL import Image
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from swinkit.data.images import BadImage, describe_error, try_decode

log = logging.getLogger("swinkit.serve")

#: Pillow formats never opened for a request: their plugins run external programs.
REFUSED_FORMATS = frozenset({"EPS"})


class BodyTooLarge(HTTPException):
    """A request body over the limit (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the limit of {limit} bytes (--max-body-mb)")


class BodyLimit:
    """ASGI middleware refusing HTTP bodies over ``max_bytes`` with 413.

    A declared ``Content-Length`` over the limit is answered at once, before the body is
    read; a body sent without one (chunked) is counted as it arrives and refused as soon as
    it passes the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and not declared.isdigit():
            refusal = HTTPException(400, f"Content-Length {declared[:40].decode('latin-1')!r} is not a number")
            await refuse(scope, send, refusal)
            return
        if declared is not None and int(declared) > self.max_bytes:
            await refuse(scope, send, BodyTooLarge(self.max_bytes))
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited, send)


def request_line(scope: Scope) -> str:
    """The method, path, query and client of a request, for the log: ``POST /predict?topk=3 from 127.0.0.1:50312``."""
    query = scope.get("query_string", b"").decode("latin-1")
    client = scope.get("client")
    where = f"{client[0]}:{client[1]}" if client else "an unknown client"
    return f"{scope.get('method', '?')} {scope.get('path', '?')}{'?' + query if query else ''} from {where}"


async def refuse(scope: Scope, send: Send, error: HTTPException) -> None:
    """Answer ``error`` as JSON ``{"detail": ...}`` straight from the middleware, and log it with the request."""
    log.warning("%d %s: %s", error.status_code, request_line(scope), error.detail)
    body = json.dumps({"detail": error.detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def accepted_formats() -> list[str]:
    """The Pillow formats a request's image may be in: every one Pillow reads, minus :data:`REFUSED_FORMATS`."""
    Image.init()
    return [name for name in Image.OPEN if name not in REFUSED_FORMATS]


def decode_upload(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """Decode uploaded bytes to a PIL image in its own mode, as ``predict`` decodes a file.

    Raises HTTPException 400 for an empty body, a format that is not an image or not
    accepted, or a damaged image (the message names ``name`` and Pillow's reason), and 413
    for an image of more than ``max_pixels`` pixels.
    """
    if not data:
        raise HTTPException(400, f"{name} is empty: send the bytes of an image file")
    try:
        with Image.open(io.BytesIO(data), formats=accepted_formats()) as header:
            width, height = header.size
    except Image.DecompressionBombError as error:
        raise HTTPException(413, f"{name}: {describe_error(error)}") from error
    except Image.UnidentifiedImageError as error:
        raise HTTPException(
            400, f"{name} is not an image in a format swinkit reads (PNG, JPEG, WebP, ...: see /metadata)"
        ) from error
    except Exception as error:  # noqa: BLE001 - Pillow raises many types for data it cannot identify
        raise HTTPException(400, f"{name} is not an image swinkit can read: {describe_error(error)}") from error
    if width * height > max_pixels:
        raise HTTPException(
            413, f"{name} has {width}x{height} = {width * height} pixels, over the limit of {max_pixels} (--max-pixels)"
        )
    image = try_decode(data, name)
    if isinstance(image, BadImage):
        raise HTTPException(400, f"cannot decode {image}")
    return image
