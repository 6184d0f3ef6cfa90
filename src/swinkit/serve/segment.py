"""The HTTP application of a segmenter: the mask of an uploaded image as JSON, and a page that lays it over the image.

Endpoints:

- ``GET /`` the page (self-contained, as the classifier's);
- ``GET /health`` liveness;
- ``GET /metadata`` classes with their colours, input size, preprocessing, precision, limits;
- ``POST /predict`` the image's mask: ``mask`` a palette PNG (base64) whose pixel values are the
  class indices at the image's size, ``overlay`` the classes' colours laid over the image (PNG,
  base64), ``shares`` the fraction of the pixels of each class present.

The image is the request body, raw or as one file of a multipart form. Predictions run one at
a time on a thread of their own (no batching: images differ in size). Errors answer
``{"detail": ...}`` with a 4xx status, logged on the ``swinkit.serve`` logger.
"""

from __future__ import annotations

import asyncio
import base64
import io
from importlib import resources

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, Response
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from swinkit import __version__
from swinkit.segmenter import Segmenter
from swinkit.serve.app import IMAGE_BODY, PAGE_POLICY, ServeSettings, read_image
from swinkit.serve.uploads import BodyLimit, accepted_formats, decode_upload, log, request_line
from swinkit.viz.segmentation import mask_image, overlay, palette


def png_base64(picture: Image.Image) -> str:
    """``picture`` encoded as PNG, in base64 text."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def create_segment_app(segmenter: Segmenter, settings: ServeSettings | None = None) -> FastAPI:
    """A FastAPI application serving ``segmenter`` (see the module docstring for the endpoints).

    Of ``settings`` the body and pixel limits apply; batching does not (one image at a time).
    """
    settings = settings or ServeSettings()
    colours = palette(len(segmenter.classes))
    lock = asyncio.Lock()
    app = FastAPI(
        title="swinkit",
        version=__version__,
        summary="A Swin UperNet segmenter: the class of every pixel of uploaded images.",
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    @app.exception_handler(HTTPException)
    async def logged_http_error(request: Request, error: HTTPException) -> Response:
        log.warning("%d %s: %s", error.status_code, request_line(request.scope), error.detail)
        return await http_exception_handler(request, error)

    html = resources.files("swinkit.serve").joinpath("segment.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(html, headers={"Content-Security-Policy": PAGE_POLICY})

    @app.get("/health", summary="Liveness")
    async def health() -> dict[str, object]:
        return {"status": "ok"}

    @app.get("/metadata", summary="The segmenter: classes and their colours, input size, preprocessing, precision")
    async def metadata() -> dict[str, object]:
        return {
            "task": "segment",
            "classes": segmenter.classes,
            "num_classes": len(segmenter.classes),
            "colours": ["#{:02x}{:02x}{:02x}".format(*colour) for colour in colours.tolist()],
            "input_size": list(segmenter.preprocessing.input_size),
            "preprocessing": segmenter.preprocessing.to_dict(),
            "sliding_window": {"window": segmenter.window, "stride": segmenter.stride},
            "precision": segmenter.precision,
            "device": str(segmenter.device),
            "limits": {
                "max_body_bytes": settings.max_body_bytes,
                "max_pixels": settings.max_pixels,
                "image_formats": sorted(accepted_formats()),
            },
        }

    @app.post("/predict", summary="The class of every pixel of an image", openapi_extra=IMAGE_BODY)
    async def predict(request: Request) -> dict[str, object]:
        data, name = await read_image(request)

        def segment() -> dict[str, object]:
            image = decode_upload(data, name, settings.max_pixels)
            try:
                mask = segmenter.predict(image)
            except ValueError as error:
                raise HTTPException(400, f"{name}, a {image.mode} image, cannot be segmented: {error}") from error
            counts = np.bincount(mask.ravel(), minlength=len(segmenter.classes))
            shares = {cls: float(n) / mask.size for cls, n in zip(segmenter.classes, counts.tolist()) if n}
            laid = Image.fromarray(overlay(np.asarray(image.convert("RGB")), mask, colours))
            return {
                "image": {"width": image.width, "height": image.height, "mode": image.mode, "format": image.format},
                "classes": segmenter.classes,
                "shares": shares,
                "mask": png_base64(mask_image(mask, colours)),
                "overlay": png_base64(laid),
            }

        async with lock:
            return await run_in_threadpool(segment)

    return app
