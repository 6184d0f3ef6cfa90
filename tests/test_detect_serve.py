"""swinkit serve for a detector: the JSON answer and the page drawing it in a real browser."""

from __future__ import annotations

import io
import socket
import threading
import time

import numpy as np
import pytest
import torch
import uvicorn
from fastapi.testclient import TestClient
from PIL import Image

from swinkit.checkpoints.detection import save_detector
from swinkit.model import create_model
from swinkit.serve.server import build_app
from swinkit.serve.app import ServeSettings
from swinkit.viz.detection import class_colour


@pytest.fixture(scope="module")
def detector_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model(
        "maskrcnn_swin_atto", backbone={"embed_dim": 16, "num_heads": (1, 2, 4)}, num_classes=3, labels=("red", "blue"),
        category_ids=(3, 7), min_size=64, max_size=64, out_channels=32, mask_head_channels=16,
        rpn_proposals_test=16, box_detections_per_img=5, box_score_thresh=0.0,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("served") / "detector"
    save_detector(model, folder)
    return folder


def picture() -> bytes:
    pixels = np.random.default_rng(0).integers(0, 255, size=(48, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_answer_holds_boxes_labels_scores_and_masks(detector_dir):
    client = TestClient(build_app(str(detector_dir), None, "fp32", ServeSettings()))
    assert client.get("/metadata").json()["classes"] == ["red", "blue"]
    answer = client.post("/predict?score_threshold=0", content=picture()).json()
    assert answer["image"] == {"width": 64, "height": 48} and len(answer["detections"]) == 5
    first = answer["detections"][0]
    assert first["name"] == ["red", "blue"][first["label"] - 1] and first["category_id"] == (3, 7)[first["label"] - 1]
    x0, y0, x1, y1 = first["box"]
    assert 0 <= x0 <= x1 <= 64 and 0 <= y0 <= y1 <= 48
    assert first["segmentation"]["size"] == [48, 64] and first["mask_png"].startswith("data:image/png;base64,")
    scores = [d["score"] for d in answer["detections"]]
    assert scores == sorted(scores, reverse=True)
    kept = client.post(f"/predict?score_threshold={scores[2]}", content=picture()).json()["detections"]
    assert [d["score"] for d in kept] == scores[:3]
    assert client.post("/predict", content=b"not an image").status_code == 400


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_page_draws_the_boxes_in_a_real_browser(browser, detector_dir, tmp_path):
    """The page in Chromium (the ``browser`` fixture of conftest.py: skipped without it, failed in CI)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    app = build_app(str(detector_dir), None, "fp32", ServeSettings())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    expected = TestClient(app).post("/predict?score_threshold=0.0", content=picture()).json()["detections"]
    driver = browser
    try:
        wait = WebDriverWait(driver, 60)
        driver.get(f"http://127.0.0.1:{port}/")
        wait.until(lambda d: "2 classes: red, blue" in d.find_element(By.ID, "model").text)
        threshold = driver.find_element(By.ID, "threshold")
        driver.execute_script("arguments[0].value = '0'", threshold)
        (tmp_path / "shapes.png").write_bytes(picture())
        driver.find_element(By.ID, "file").send_keys(str(tmp_path / "shapes.png"))
        wait.until(lambda d: d.find_element(By.ID, "view").get_attribute("data-drawn") == str(len(expected)))
        items = [item.text for item in driver.find_elements(By.CSS_SELECTOR, "#detections li")]
        assert items[0].startswith(f"{expected[0]['name']} {expected[0]['score']:.2f}")
        # The top-left corner of the first box is stroked in its class's colour.
        x0, y0 = (round(v) for v in expected[0]["box"][:2])
        corner = driver.execute_script(
            "return Array.from(document.getElementById('view').getContext('2d')"
            f".getImageData({x0}, {y0}, 1, 1).data.slice(0, 3))"
        )
        assert max(abs(a - b) for a, b in zip(corner, class_colour(expected[0]["label"]))) <= 40
    finally:
        server.should_exit = True
        thread.join(timeout=10)
