"""The application of a detector: boxes, labels, scores and masks of an uploaded image, and a page that draws them.

``POST /predict`` (the image as the body or as the one file of a multipart form;
``score_threshold`` in the query, default 0.5) answers ``{"image": {"width", "height"},
"detections": [{"box": [x0, y0, x1, y1], "label", "name", "category_id", "score",
"segmentation", "mask_png"}]}``: boxes in pixels of the image, ``segmentation`` as COCO's
compressed RLE and ``mask_png`` the same mask as a PNG data URL (the class colour, 40%
opaque) for a page to draw. ``GET /metadata`` names the classes; ``GET /`` is the page.
One request runs the model at a time (detections are not batched).
"""

from __future__ import annotations

import base64
import io
import threading
from importlib import resources

import numpy as np
import torch
from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse
from PIL import Image
from starlette.concurrency import run_in_threadpool
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from swinkit import __version__
from swinkit.serve.app import IMAGE_BODY, PAGE_POLICY, ServeSettings, read_image
from swinkit.serve.uploads import BodyLimit, decode_upload
from swinkit.train.coco_eval import MASK_THRESHOLD, to_coco_results
from swinkit.viz.detection import MASK_ALPHA, class_colour


def mask_png(mask: np.ndarray, colour: tuple[int, int, int]) -> str:
    """A 0/1 ``(H, W)`` mask as a PNG data URL: ``colour`` at :data:`MASK_ALPHA` where set, clear elsewhere."""
    pixels = np.zeros((*mask.shape, 4), dtype=np.uint8)
    pixels[mask > 0] = (*colour, round(255 * MASK_ALPHA))
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def create_detection_app(model: torch.nn.Module, settings: ServeSettings | None = None) -> FastAPI:
    """A FastAPI application serving a swinkit detector (evaluation mode, on its device)."""
    settings = settings or ServeSettings()
    config = model.config
    names = config.labels or tuple(str(i) for i in config.foreground_ids)
    device = next(model.parameters()).device
    lock = threading.Lock()
    app = FastAPI(title="swinkit", version=__version__, summary="A Swin detector", docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    html = resources.files("swinkit.serve").joinpath("detect.html").read_text(encoding="utf-8")

    def detect(image: Image.Image, threshold: float) -> list[dict[str, object]]:
        pixels = TF.to_dtype(tv_tensors.Image(TF.pil_to_tensor(image.convert("RGB"))), torch.float32, scale=True)
        with lock, torch.no_grad():
            (output,) = model([pixels.to(device)])
        results = to_coco_results([0], [output], config.foreground_ids, threshold)
        keep = output["scores"] >= threshold
        detections = []
        for index, result in enumerate(results):
            label = int(output["labels"][keep][index])
            detection = {
                "box": [round(float(v), 2) for v in output["boxes"][keep][index]],
                "label": label,
                "name": names[label - 1],
                "category_id": result["category_id"],
                "score": round(float(result["score"]), 4),
            }
            if "masks" in output:
                binary = (output["masks"][keep][index, 0] > MASK_THRESHOLD).cpu().numpy()
                detection["segmentation"] = result["segmentation"]
                detection["mask_png"] = mask_png(binary, class_colour(label))
            detections.append(detection)
        return detections

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(html, headers={"Content-Security-Policy": PAGE_POLICY})

    @app.get("/metadata", summary="The detector: classes, their category ids and colours, masks or not")
    async def metadata() -> dict[str, object]:
        colours = [class_colour(label) for label in range(1, config.num_classes)]
        return {"task": "detect", "classes": list(names), "category_ids": list(config.foreground_ids),
                "colours": colours, "masks": config.masks}  # fmt: skip

    @app.post("/predict", summary="Boxes, labels, scores (and masks) of an image", openapi_extra=IMAGE_BODY)
    async def predict(
        request: Request, score_threshold: float = Query(0.5, ge=0.0, le=1.0, description="lowest score kept")
    ) -> dict[str, object]:
        data, name = await read_image(request)
        image = await run_in_threadpool(decode_upload, data, name, settings.max_pixels)
        detections = await run_in_threadpool(detect, image, score_threshold)
        return {"image": {"width": image.width, "height": image.height}, "detections": detections}

    return app
