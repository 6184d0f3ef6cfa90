"""``swinkit serve`` of a segmenter: the mask in the JSON answer, the overlay on the page (in a real browser)."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from swinkit.checkpoints.segmentation import save_segmenter
from swinkit.model import create_model
from swinkit.preprocessing import Preprocessing
from swinkit.segmenter import open_segmenter
from swinkit.serve.segment import create_segment_app
from swinkit.viz.segmentation import palette
from serving import serve_process

CLASSES = ("sky", "grass", "road")


def picture(width: int, height: int, seed: int) -> bytes:
    """A PNG of coloured noise with a bright block, so that the mask is not one class."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    pixels[: height // 2, : width // 2] = (250, 250, 40)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = create_model("upernet_swin_atto", num_classes=3, labels=CLASSES, img_size=32, channels=16, aux_channels=8)
    with torch.no_grad():  # spread the logits, so that pixels get different classes
        model.head.classifier.weight.mul_(200)
    folder = tmp_path_factory.mktemp("segmenter")
    return save_segmenter(model, folder, preprocessing=Preprocessing((3, 32, 32), crop_pct=1.0))


@pytest.fixture(scope="module")
def image_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("upload") / "street.png"
    path.write_bytes(picture(40, 24, seed=3))
    return path


def decoded(text: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(text)))


def test_the_answer_holds_the_mask_the_segmenter_predicts(model_dir: Path, image_file: Path) -> None:
    segmenter = open_segmenter(model_dir, "cpu")
    client = TestClient(create_segment_app(segmenter))
    meta = client.get("/metadata").json()
    assert meta["classes"] == list(CLASSES) and meta["input_size"] == [3, 32, 32]
    assert meta["colours"] == ["#{:02x}{:02x}{:02x}".format(*c) for c in palette(3).tolist()]

    answer = client.post("/predict", files={"file": ("street.png", image_file.read_bytes())}).json()

    expected = segmenter.predict(Image.open(image_file))
    mask = decoded(answer["mask"])
    assert mask.mode == "P" and np.array_equal(np.asarray(mask), expected) and len(np.unique(expected)) > 1
    counts = np.bincount(expected.ravel(), minlength=3)
    assert answer["shares"] == {CLASSES[i]: pytest.approx(counts[i] / expected.size) for i in range(3) if counts[i]}
    assert decoded(answer["overlay"]).size == (40, 24) and answer["image"]["width"] == 40

    refused = client.post("/predict", content=b"not a picture")
    assert refused.status_code == 400 and "not an image" in refused.json()["detail"]
    page = client.get("/")
    assert "Content-Security-Policy" in page.headers and "http" not in page.text.split("<script>")[1]


@pytest.fixture(scope="module")
def live_server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``swinkit serve`` of the segmenter in its own process, as a user starts it."""
    for url, _ in serve_process(model_dir, tmp_path_factory.mktemp("server") / "server.log", wait=120):
        yield url


def test_the_page_in_a_real_browser_shows_the_overlay_and_the_classes(live_server, browser, image_file, tmp_path):
    """The page in Chromium (the ``browser`` fixture of conftest.py: skipped without it, failed in CI)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(f"{live_server}/")
    wait.until(lambda d: "classes" in d.find_element(By.ID, "model").text)
    assert "3 classes, trained at 32x32" in browser.find_element(By.ID, "model").text

    browser.find_element(By.ID, "file").send_keys(str(image_file))
    loaded = "const i = document.getElementById('overlay'); return i.complete ? i.naturalWidth : 0"
    assert wait.until(lambda d: d.execute_script(loaded)) == 40
    shares = httpx.post(f"{live_server}/predict", content=image_file.read_bytes(), timeout=60).json()["shares"]
    names = [element.text for element in browser.find_elements(By.CSS_SELECTOR, "#classes .name")]
    values = [element.text for element in browser.find_elements(By.CSS_SELECTOR, "#classes .share")]
    ranked = sorted(shares.items(), key=lambda item: -item[1])
    assert names == [name for name, _ in ranked] and values == [f"{100 * share:.1f}%" for _, share in ranked]

    (tmp_path / "notes.txt").write_bytes(b"not a picture")
    browser.find_element(By.ID, "file").send_keys(str(tmp_path / "notes.txt"))
    wait.until(lambda d: "400" in d.find_element(By.ID, "status").text)
    assert "not an image" in browser.find_element(By.ID, "status").text
