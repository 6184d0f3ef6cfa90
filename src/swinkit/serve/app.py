"""The HTTP application: a JSON API over a classifier, and the web page at ``/``.

Endpoints (the OpenAPI schema is at ``/openapi.json``):

- ``GET /`` the page (self-contained: no script, style or font from elsewhere);
- ``GET /health`` liveness and the batching counters;
- ``GET /metadata`` variant, classes, input size, preprocessing, precision, stages, limits;
- ``POST /predict?topk=5`` the top-k labels of an image;
- ``POST /attention`` the attention grids of a query position (Eq. 4 weights), as JSON;
- ``POST /attention.png`` the same drawn over the image, as ``swinkit show attention`` draws it.

The image is the request body: raw bytes (any content type but multipart), or one file
field of a ``multipart/form-data`` form. Errors answer ``{"detail": ...}`` with a 4xx
status and are logged with the request on the ``swinkit.serve`` logger.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from importlib import resources

import torch
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from swinkit import __version__, viz
from swinkit.checkpoints.architecture import variant_of
from swinkit.data.images import describe_error
from swinkit.classifier import Classifier
from swinkit.serve.batching import QueueFullError
from swinkit.serve.runner import ModelRunner
from swinkit.serve.uploads import BodyLimit, accepted_formats, decode_upload, log, request_line

#: The ways an image may be sent, for the OpenAPI schema (the body is read by the endpoint itself).
IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "description": "The image: raw bytes, or a multipart form with one file field (e.g. `file`).",
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
#: The page's policy: everything from this server (and the images it makes), nothing from elsewhere.
PAGE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' blob: data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'"
)
#: Heads drawn per block at most, however many a request asks for (bounds the drawing time).
MAX_DRAWN_HEADS = 16


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    """How the server batches and what it accepts.

    ``max_batch`` images per forward pass (1: no batching), gathered for at most
    ``max_wait_ms`` after the first arrives; at most ``max_queue`` images waiting (more get
    503). Bodies over ``max_body_bytes`` get 413, and so do images of more than
    ``max_pixels`` pixels (checked from the header, before decoding).
    """

    max_batch: int = 8
    max_wait_ms: float = 5.0
    max_queue: int = 256
    max_body_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_queue", "max_body_bytes", "max_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")


def create_app(classifier: Classifier, settings: ServeSettings | None = None, precision: str = "fp32") -> FastAPI:
    """A FastAPI application serving ``classifier`` (loaded at ``precision``) with ``settings``.

    Run it with any ASGI server (``uvicorn.run(app)``; ``swinkit serve`` does that) or test
    it with ``fastapi.testclient.TestClient``. The model runs on one thread of its own;
    concurrent predictions are batched (see :class:`ServeSettings`). ``app.state.runner``
    is the :class:`~swinkit.serve.runner.ModelRunner`, whose ``batcher.stats`` count the
    batches run.
    """
    settings = settings or ServeSettings()
    runner = ModelRunner(classifier, precision, settings.max_batch, settings.max_wait_ms, settings.max_queue)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await runner.batcher.close()

    app = FastAPI(
        title="swinkit",
        version=__version__,
        summary="A Swin Transformer classifier: top-k labels and attention maps of uploaded images.",
        docs_url=None,  # FastAPI's documentation pages load their scripts from a CDN; the schema is enough
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.runner = runner
    app.state.settings = settings
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    @app.exception_handler(HTTPException)
    async def logged_http_error(request: Request, error: HTTPException) -> Response:
        log.warning("%d %s: %s", error.status_code, request_line(request.scope), error.detail)
        return await http_exception_handler(request, error)

    @app.exception_handler(RequestValidationError)
    async def logged_validation_error(request: Request, error: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        log.warning("422 %s: %s", request_line(request.scope), problems)
        return await request_validation_exception_handler(request, error)

    @app.exception_handler(QueueFullError)
    async def busy(request: Request, error: QueueFullError) -> Response:
        log.warning("503 %s: %s", request_line(request.scope), error)
        return JSONResponse({"detail": f"the server is busy: {error}"}, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def logged_crash(request: Request, error: Exception) -> Response:
        log.error("500 %s: %s", request_line(request.scope), error, exc_info=error)
        return JSONResponse({"detail": "internal error (logged on the server)"}, status_code=500)

    async def read_pixels(request: Request) -> tuple[torch.Tensor, dict[str, object]]:
        """The request's image, decoded and preprocessed off the event loop, and what it was."""
        data, name = await read_image(request)

        def prepare() -> tuple[torch.Tensor, dict[str, object]]:
            image = decode_upload(data, name, settings.max_pixels)
            about = {"width": image.width, "height": image.height, "mode": image.mode, "format": image.format}
            try:
                return runner.transform(image), about
            except Exception as error:  # noqa: BLE001 - Pillow's conversions raise ValueError, OSError, ...
                raise HTTPException(
                    400, f"{name}, a {image.mode} image, cannot be converted for the model: {describe_error(error)}"
                ) from error

        return await run_in_threadpool(prepare)

    html = resources.files("swinkit.serve").joinpath("page.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(html, headers={"Content-Security-Policy": PAGE_POLICY})

    @app.get("/health", summary="Liveness, and the batches run so far")
    async def health() -> dict[str, object]:
        return {"status": "ok", "batching": runner.batcher.stats.to_dict()}

    @app.get("/metadata", summary="The model: variant, classes, input size, preprocessing, precision, stages")
    async def metadata() -> dict[str, object]:
        return describe(classifier, precision, settings)

    @app.post("/predict", summary="Top-k labels and probabilities of an image", openapi_extra=IMAGE_BODY)
    async def predict(
        request: Request, topk: int = Query(5, ge=1, description="how many labels (capped at the class count)")
    ) -> dict[str, object]:
        about: dict[str, object] = {}

        async def prepared() -> torch.Tensor:
            pixels, described = await read_pixels(request)
            about.update(described)
            return pixels

        labels = await runner.predict(prepared(), topk)  # batches forming meanwhile wait for this image
        return {"top": [label.to_dict() for label in labels], "image": about}

    async def attention_maps(request: Request, where: AttentionQuery) -> tuple[torch.Tensor, list[viz.BlockAttention]]:
        stages = len(classifier.model.config.depths)
        if where.stage is not None and where.stage > stages:
            raise HTTPException(400, f"stage {where.stage} does not exist; this model has stages 1 to {stages}")
        pixels, _ = await read_pixels(request)
        try:
            blocks = viz.select_blocks(classifier.model, None if where.stage is None else where.stage - 1, where.block)
            maps = await runner.attention(pixels, where.query, blocks)
        except ValueError as error:
            raise HTTPException(400, str(error)) from error
        return pixels, maps

    @app.post("/attention", summary="Attention of a query position, as token grids", openapi_extra=IMAGE_BODY)
    async def attention(request: Request, where: AttentionQuery = Depends(attention_query)) -> dict[str, object]:
        pixels, maps = await attention_maps(request, where)
        return {
            "input_size": list(pixels.shape[1:]),
            "query": {"row": maps[0].pixel[0], "col": maps[0].pixel[1]},
            "blocks": [grid_to_dict(item) for item in maps],
        }

    @app.post(
        "/attention.png",
        summary="Attention of a query position drawn over the image (PNG)",
        openapi_extra=IMAGE_BODY,
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
    )
    async def attention_png(
        request: Request,
        where: AttentionQuery = Depends(attention_query),
        head: int | None = Query(None, ge=0, description="draw only this head next to the mean"),
        max_heads: int = Query(6, ge=0, le=MAX_DRAWN_HEADS, description="heads drawn per block without head"),
    ) -> Response:
        pixels, maps = await attention_maps(request, where)
        try:
            png = await runner.attention_png(pixels, maps, head, max_heads)
        except ValueError as error:
            raise HTTPException(400, str(error)) from error
        return Response(png, media_type="image/png")

    return app


@dataclasses.dataclass(frozen=True)
class AttentionQuery:
    """Which attention an attention request asks for: ``stage`` (from 1), ``block`` (from 0), ``query`` (pixels)."""

    stage: int | None
    block: int | None
    query: tuple[int, int] | None


def attention_query(
    stage: int | None = Query(None, ge=1, description="stage, from 1 as in the paper (default: every stage)"),
    block: int | None = Query(None, ge=0, description="block of each stage, from 0 (default: blocks 0 and 1)"),
    row: int | None = Query(None, ge=0, description="query row in pixels of the model's input (default: centre)"),
    col: int | None = Query(None, ge=0, description="query column in pixels of the model's input (with row)"),
) -> AttentionQuery:
    """The query parameters the attention endpoints share; 400 for a row without a column or the reverse."""
    if (row is None) != (col is None):
        raise HTTPException(400, "give both row and col for the query, or neither (the centre)")
    return AttentionQuery(stage, block, None if row is None or col is None else (row, col))


async def read_image(request: Request) -> tuple[bytes, str]:
    """The uploaded bytes and a name for messages: the one file of a multipart form, else the raw body."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=16) as form:
            files = [value for value in form.values() if isinstance(value, UploadFile)]
            if not files:
                raise HTTPException(400, "the multipart form has no file field: send the image as a file, e.g. file=@x")
            return await files[0].read(), f"the upload {files[0].filename or 'without a name'!r}"
    return await request.body(), "the request body"


def grid_to_dict(item: viz.BlockAttention) -> dict[str, object]:
    """One block's attention (see :class:`swinkit.viz.BlockAttention`) as JSON; stages counted from 1."""
    layout = item.layout
    return {
        "stage": item.stage + 1,
        "block": item.block,
        "shifted": item.shifted,
        "shift": layout.shift,
        "window": [layout.window_h, layout.window_w],
        "window_index": item.window,
        "stride": item.stride,
        "grid": [layout.height, layout.width],
        "token": {"row": item.query[0], "col": item.query[1]},
        "mean": item.mean.tolist(),
        "heads": item.heads.tolist(),
        "padding_mass": item.padding_mass.tolist(),
    }


def describe(classifier: Classifier, precision: str, settings: ServeSettings) -> dict[str, object]:
    """The metadata ``GET /metadata`` answers: what the model is, what it takes, how it is served."""
    config = classifier.model.config
    stages = []
    height, width = classifier.preprocessing.img_size
    for index, (depth, heads) in enumerate(zip(config.depths, config.num_heads)):
        stride = config.patch_size * 2**index
        tokens = [-(-height // stride), -(-width // stride)]
        stages.append({"stage": index + 1, "blocks": depth, "heads": heads, "stride": stride, "tokens": tokens})
    fields = {key: value for key, value in dataclasses.asdict(config).items() if key != "labels"}
    return {
        "variant": variant_of(config),
        "config": fields,
        "classes": classifier.classes,
        "num_classes": len(classifier.classes),
        "input_size": list(classifier.preprocessing.input_size),
        "preprocessing": classifier.preprocessing.to_dict(),
        "precision": precision,
        "device": str(classifier.device),
        "stages": stages,
        "batching": {"max_batch": settings.max_batch, "max_wait_ms": settings.max_wait_ms},
        "limits": {
            "max_body_bytes": settings.max_body_bytes,
            "max_pixels": settings.max_pixels,
            "max_queue": settings.max_queue,
            "image_formats": sorted(accepted_formats()),
        },
    }
