"""``swinkit serve``: the API through FastAPI's test client, batching, a real server on loopback, a real browser."""

import asyncio
import io
import logging
import re
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

import swinkit
import swinkit.precision
from swinkit import viz
from swinkit.cli import main
from swinkit.cli import serve as serve_command
from swinkit.classifier import load_classifier, predict
from swinkit.serve import Batcher, ModelRunner, QueueFullError, ServeSettings, create_app
from swinkit.viz.figure import DEFAULT_DPI
from serving import serve_process

LABELS = ("cat", "dog", "bird")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LIMITS = {"max_body_bytes": 300_000, "max_pixels": 1_000_000}


def encode(image: Image.Image, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def _images() -> dict[str, bytes]:
    """Uploads of many modes and sizes, each a different picture."""
    grey = np.random.default_rng(1).integers(0, 256, (300, 7), dtype=np.uint8)
    return {
        "rgb.png": encode(noise(50, 40)),
        "tall-grey.png": encode(Image.fromarray(grey)),
        "rgba.png": encode(noise(33, 61, seed=2).convert("RGBA")),
        "palette.gif": encode(noise(64, 64, seed=3).convert("P"), "GIF"),
        "cmyk.jpg": encode(noise(45, 45, seed=4).convert("CMYK"), "JPEG"),
        "bits.bmp": encode(noise(30, 20, seed=5).convert("1"), "BMP"),
        "deep.png": encode(Image.fromarray((np.arange(40 * 30).reshape(30, 40) * 50).astype(np.uint16))),
        "float.tif": encode(Image.fromarray(np.linspace(0, 255, 24 * 24, dtype=np.float32).reshape(24, 24)), "TIFF"),
        "one-pixel.png": encode(noise(1, 1, seed=6)),
        "wide.webp": encode(noise(500, 30, seed=7), "WEBP"),
    }


IMAGES = _images()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = swinkit.create_model(
        "swin_t",
        img_size=32,
        embed_dim=16,
        depths=(2, 2),
        num_heads=(1, 2),
        window_size=4,
        num_classes=3,
        labels=LABELS,
    )
    with torch.no_grad():  # spread the logits and the attention, so that answers differ between images
        model.head.weight.mul_(40)
        for module in model.modules():
            if hasattr(module, "relative_position_bias_table"):
                module.relative_position_bias_table.normal_(0, 1)
    return swinkit.save_pretrained(model, tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for name, data in IMAGES.items():
        (folder / name).write_bytes(data)
    return folder


@pytest.fixture(scope="module")
def classifier(model_dir):
    return load_classifier(model_dir, "cpu")


@pytest.fixture(scope="module")
def expected(classifier, image_files):
    """``predict``'s answer for every upload, by file name."""
    paths = [image_files / name for name in IMAGES]
    return {Path(p.path).name: p for p in predict(classifier, paths, topk=3)}


@pytest.fixture(scope="module")
def client(classifier):
    app = create_app(classifier, ServeSettings(max_batch=8, max_wait_ms=50, **LIMITS))
    with TestClient(app) as test_client:
        yield test_client


def assert_same(answer: dict, prediction) -> None:
    assert [item["label"] for item in answer["top"]] == prediction.labels
    assert [item["index"] for item in answer["top"]] == [LABELS.index(label) for label in prediction.labels]
    np.testing.assert_allclose([item["probability"] for item in answer["top"]], prediction.probabilities, atol=1e-6)


# --- predict -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(IMAGES))
def test_predict_equals_the_predict_function_raw_and_multipart(client, expected, name):
    raw = client.post("/predict?topk=3", content=IMAGES[name], headers={"content-type": "application/octet-stream"})
    form = client.post("/predict", params={"topk": 3}, files={"file": (name, IMAGES[name], "image/png")})
    assert raw.status_code == 200 and form.status_code == 200, (raw.text, form.text)
    assert expected[name].error is None
    assert_same(raw.json(), expected[name])
    assert_same(form.json(), expected[name])
    reference = Image.open(io.BytesIO(IMAGES[name]))
    assert raw.json()["image"] == {
        "width": reference.width,
        "height": reference.height,
        "mode": reference.mode,
        "format": reference.format,
    }


def test_the_answers_differ_between_images(expected):
    """Guards the test above: with one answer for every image, equality would prove little."""
    top = {name: round(p.probabilities[0], 4) for name, p in expected.items()}
    assert len(set(top.values())) >= len(top) - 1
    assert len({p.labels[0] for p in expected.values()}) >= 2


def test_topk_is_capped_at_the_classes_and_validated(client, expected):
    answer = client.post("/predict?topk=50", content=IMAGES["rgb.png"])
    assert [item["label"] for item in answer.json()["top"]] == expected["rgb.png"].labels
    default = client.post("/predict", content=IMAGES["rgb.png"]).json()
    assert len(default["top"]) == 3  # 5 by default, capped at 3 classes
    one = client.post("/predict?topk=1", content=IMAGES["rgb.png"]).json()["top"]
    assert [item["label"] for item in one] == expected["rgb.png"].labels[:1]
    refused = client.post("/predict?topk=0", content=IMAGES["rgb.png"])
    assert refused.status_code == 422 and "topk" in refused.text


def test_the_upload_name_never_reaches_the_file_system(client, expected, image_files):
    """A file name that is a real path on the server is only a name: the bytes sent are what is read."""
    other = image_files / "tall-grey.png"
    answer = client.post("/predict?topk=3", files={"file": (str(other), IMAGES["rgb.png"], "image/png")})
    assert_same(answer.json(), expected["rgb.png"])
    assert not np.allclose(expected["rgb.png"].probabilities, expected["tall-grey.png"].probabilities, atol=1e-3)
    for body in (str(other).encode(), f'{{"path": "{other}"}}'.encode(), b"file://" + str(other).encode()):
        refused = client.post("/predict", content=body, headers={"content-type": "application/json"})
        assert refused.status_code == 400 and "not an image" in refused.json()["detail"]


# --- attention -----------------------------------------------------------------------------------


def test_attention_grids_are_the_models_attention_maps(client, classifier, image_files):
    answer = client.post("/attention?stage=1&block=1&row=5&col=27", content=IMAGES["cmyk.jpg"])
    assert answer.status_code == 200, answer.text
    pixels = viz.preprocess_image(image_files / "cmyk.jpg", classifier.preprocessing)
    (reference,) = viz.attention_maps(classifier.model, pixels, (5, 27), [(0, 1)])
    body = answer.json()
    assert body["input_size"] == [32, 32] and body["query"] == {"row": 5, "col": 27}
    (block,) = body["blocks"]
    assert (block["stage"], block["block"], block["shifted"], block["shift"]) == (1, 1, True, 2)
    assert block["token"] == {"row": 1, "col": 6} and block["grid"] == [8, 8] and block["stride"] == 4
    assert block["window"] == [4, 4] and block["window_index"] == reference.window
    np.testing.assert_allclose(block["heads"], reference.heads, atol=1e-6)
    np.testing.assert_allclose(block["mean"], reference.mean, atol=1e-6)
    np.testing.assert_allclose(np.sum(block["heads"], axis=(1, 2)) + block["padding_mass"], 1.0, atol=1e-5)


def test_attention_defaults_to_blocks_0_and_1_of_every_stage_at_the_centre(client):
    body = client.post("/attention", content=IMAGES["rgb.png"]).json()
    assert body["query"] == {"row": 16, "col": 16}
    assert [(b["stage"], b["block"]) for b in body["blocks"]] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert [len(b["heads"]) for b in body["blocks"]] == [1, 1, 2, 2]
    assert body["blocks"][2]["grid"] == [4, 4] and not body["blocks"][3]["shifted"]  # 4x4 map, window 4: no shift


def test_attention_png_is_what_show_attention_draws(client, classifier, image_files):
    answer = client.post("/attention.png?stage=2&row=3&col=20&max_heads=2", content=IMAGES["rgba.png"])
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    assert answer.content.startswith(PNG_SIGNATURE)
    pixels = viz.preprocess_image(image_files / "rgba.png", classifier.preprocessing)
    maps = viz.attention_maps(classifier.model, pixels, (3, 20), viz.select_blocks(classifier.model, 1))
    figure = viz.draw_attention(viz.denormalize(pixels, classifier.preprocessing), maps, None, 2)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DEFAULT_DPI)
    served = np.asarray(Image.open(io.BytesIO(answer.content)))
    drawn = np.asarray(Image.open(buffer))
    assert served.shape == drawn.shape and served.shape[0] > 100
    np.testing.assert_array_equal(served, drawn)
    one_head = client.post("/attention.png?stage=1&block=0&head=0", content=IMAGES["rgba.png"])
    assert one_head.status_code == 200 and Image.open(io.BytesIO(one_head.content)).width < served.shape[1] * 2


# --- metadata, health, page ----------------------------------------------------------------------


def test_metadata_describes_the_model(client, classifier):
    meta = client.get("/metadata").json()
    assert meta["classes"] == list(LABELS) and meta["num_classes"] == 3
    assert meta["input_size"] == [3, 32, 32]
    assert meta["preprocessing"] == classifier.preprocessing.to_dict()
    assert meta["precision"] == "fp32" and meta["device"] == "cpu"
    assert meta["variant"] is None and meta["config"]["embed_dim"] == 16 and meta["config"]["depths"] == [2, 2]
    assert meta["stages"] == [
        {"stage": 1, "blocks": 2, "heads": 1, "stride": 4, "tokens": [8, 8]},
        {"stage": 2, "blocks": 2, "heads": 2, "stride": 8, "tokens": [4, 4]},
    ]
    assert meta["batching"] == {"max_batch": 8, "max_wait_ms": 50}
    assert meta["limits"]["max_body_bytes"] == LIMITS["max_body_bytes"]
    assert {"PNG", "JPEG", "WEBP"} <= set(meta["limits"]["image_formats"]) and "EPS" not in meta["limits"][
        "image_formats"
    ]


def test_health_counts_batches(client):
    before = client.get("/health").json()
    client.post("/predict", content=IMAGES["rgb.png"])
    after = client.get("/health").json()
    assert after["status"] == "ok"
    assert after["batching"]["items"] == before["batching"]["items"] + 1
    assert after["batching"]["batches"] == before["batching"]["batches"] + 1


def test_page_is_self_contained(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    for element in ('id="file"', 'id="bars"', 'id="overlay"', 'id="view"', 'id="stage"', 'id="block"'):
        assert element in html
    assert "http:" not in html and "https:" not in html and not re.search(r"""["'(=]\s*//""", html)  # no //host/...
    assert re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html) == ["data:,"]  # the empty favicon, inline
    assert "<script src" not in html and "@import" not in html and "url(" not in html
    assert "default-src 'none'" in page.headers["content-security-policy"]


def test_openapi_schema_lists_the_endpoints(client):
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]) == {"/health", "/metadata", "/predict", "/attention", "/attention.png"}
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/octet-stream"} <= set(body)
    assert client.get("/docs").status_code == 404  # FastAPI's docs page would load scripts from a CDN


# --- errors --------------------------------------------------------------------------------------


def _truncated_png() -> bytes:
    data = encode(noise(64, 64))
    return data[: len(data) // 2]


def _eps() -> bytes:
    return b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n%%EndComments\nshowpage\n%%EOF\n"


def _lab_tiff() -> bytes:
    return encode(Image.new("LAB", (8, 8), (50, 0, 0)), "TIFF")


ERRORS = [
    # (name, method, url, request kwargs, status, words in the detail)
    ("text", "POST", "/predict", {"files": {"file": ("notes.txt", b"just words", "text/plain")}}, 400, "notes.txt"),
    ("empty", "POST", "/predict", {"content": b""}, 400, "empty"),
    ("truncated", "POST", "/predict", {"content": _truncated_png()}, 400, "cannot decode"),
    ("eps", "POST", "/predict", {"content": _eps()}, 400, "not an image"),
    ("no file field", "POST", "/predict", {"files": {"note": (None, b"no picture")}}, 400, "no file field"),
    ("big body", "POST", "/predict", {"content": b"x" * 300_001}, 413, "300000 bytes"),
    ("many pixels", "POST", "/predict", {"content": encode(Image.new("L", (1001, 1000)))}, 413, "1001x1000"),
    ("unknown path", "GET", "/nothing/here", {}, 404, "Not Found"),
    ("wrong method", "GET", "/predict", {}, 405, "Method Not Allowed"),
    ("wrong method 2", "DELETE", "/metadata", {}, 405, "Method Not Allowed"),
    ("stage", "POST", "/attention?stage=3", {"content": IMAGES["rgb.png"]}, 400, "stages 1 to 2"),
    ("block", "POST", "/attention?stage=1&block=2", {"content": IMAGES["rgb.png"]}, 400, "blocks 0..1"),
    ("half query", "POST", "/attention.png?row=3", {"content": IMAGES["rgb.png"]}, 400, "both row and col"),
    ("far query", "POST", "/attention?row=32&col=0", {"content": IMAGES["rgb.png"]}, 400, "outside the 32x32"),
    ("head", "POST", "/attention.png?stage=2&head=2", {"content": IMAGES["rgb.png"]}, 400, "head 2"),
    ("stage 0", "POST", "/attention?stage=0", {"content": IMAGES["rgb.png"]}, 422, "greater than or equal to 1"),
]


@pytest.mark.parametrize(
    ("method", "url", "kwargs", "status", "words"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_errors_answer_4xx_naming_the_problem_and_are_logged(client, caplog, method, url, kwargs, status, words):
    with caplog.at_level(logging.WARNING, logger="swinkit.serve"):
        answer = client.request(method, url, **kwargs)
    assert answer.status_code == status, answer.text
    assert words in str(answer.json()["detail"])
    path = url.split("?")[0]
    assert any(f"{status} {method} {path}" in record.getMessage() for record in caplog.records), caplog.text
    assert client.post("/predict", content=IMAGES["rgb.png"]).status_code == 200  # and the server goes on


def test_the_eps_refusal_is_the_format_not_the_data():
    """Pillow would open the EPS above (and hand it to Ghostscript to decode): the server refuses the format."""
    assert Image.open(io.BytesIO(_eps())).format == "EPS"


def test_a_grey_model_reads_any_mode_as_predict_does_or_says_why_not(tmp_path):
    """The digits model's shape (8x8 grey, one token per pixel); a LAB image has no conversion to grey."""
    torch.manual_seed(1)
    model = swinkit.create_model(
        "swin_t",
        img_size=8,
        patch_size=1,
        in_chans=1,
        embed_dim=12,
        depths=(2, 2),
        num_heads=(1, 2),
        window_size=4,
        num_classes=10,
    )
    swinkit.save_pretrained(model, tmp_path / "digits")
    grey = load_classifier(tmp_path / "digits", "cpu")
    names = ["rgb.png", "palette.gif", "cmyk.jpg", "deep.png"]
    for name in names:
        (tmp_path / name).write_bytes(IMAGES[name])
    reference = predict(grey, [tmp_path / name for name in names], topk=3)
    with TestClient(create_app(grey)) as test_client:
        for name, prediction in zip(names, reference):
            answer = test_client.post("/predict?topk=3", content=IMAGES[name]).json()
            assert [item["label"] for item in answer["top"]] == prediction.labels
            np.testing.assert_allclose(
                [item["probability"] for item in answer["top"]], prediction.probabilities, atol=1e-6
            )
        assert test_client.get("/metadata").json()["stages"][0]["tokens"] == [8, 8]
        lab = test_client.post("/predict", content=_lab_tiff())
        assert lab.status_code == 400 and "a LAB image, cannot be converted" in lab.json()["detail"]


def test_a_body_over_the_limit_is_refused_while_it_streams(client, caplog):
    def chunks():  # no Content-Length: sent chunked, counted as it arrives
        for _ in range(40):
            yield b"y" * 10_000

    with caplog.at_level(logging.WARNING, logger="swinkit.serve"):
        answer = client.post("/predict", content=chunks())
    assert answer.status_code == 413 and "300000 bytes" in answer.json()["detail"]
    assert any("413 POST /predict" in record.getMessage() for record in caplog.records)


def test_two_files_in_one_form_are_refused(client):
    files = [("file", ("a.png", IMAGES["rgb.png"], "image/png")), ("more", ("b.png", IMAGES["rgb.png"], "image/png"))]
    answer = client.post("/predict", files=files)
    assert answer.status_code == 400 and "files" in answer.json()["detail"].lower()


def test_a_full_queue_answers_503_and_the_others_are_served(classifier, caplog):
    app = create_app(classifier, ServeSettings(max_batch=1, max_queue=1))
    runner = app.state.runner
    working, gate, running = runner.probabilities, threading.Event(), threading.Event()

    def held(images):
        running.set()
        gate.wait(30)
        return working(images)

    def until(condition):
        deadline = time.monotonic() + 30
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert condition()

    runner.probabilities = held
    with TestClient(app) as test_client, ThreadPoolExecutor(2) as pool, caplog.at_level(logging.WARNING):
        first = pool.submit(test_client.post, "/predict", content=IMAGES["rgb.png"])
        until(running.is_set)  # the first runs (and holds the model)
        second = pool.submit(test_client.post, "/predict", content=IMAGES["cmyk.jpg"])
        until(lambda: runner.batcher.stats.waiting == 1)  # the second waits in the queue
        refused = test_client.post("/predict", content=IMAGES["wide.webp"])
        gate.set()
        assert first.result().status_code == 200 and second.result().status_code == 200
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert "busy" in refused.json()["detail"] and any("503 POST /predict" in r.getMessage() for r in caplog.records)


def test_a_failing_model_gives_500_logged_and_the_server_goes_on(classifier, caplog):
    app = create_app(classifier, ServeSettings(max_batch=1))
    runner = app.state.runner
    working = runner.probabilities
    calls = []

    def broken(images):
        calls.append(len(images))
        if len(calls) == 1:
            raise RuntimeError("the model broke")
        return working(images)

    runner.probabilities = broken
    with TestClient(app, raise_server_exceptions=False) as test_client, caplog.at_level(logging.ERROR):
        failed = test_client.post("/predict", content=IMAGES["rgb.png"])
        assert failed.status_code == 500 and failed.json() == {"detail": "internal error (logged on the server)"}
        assert any("500 POST /predict" in r.getMessage() and r.exc_info for r in caplog.records)
        assert test_client.post("/predict", content=IMAGES["rgb.png"]).status_code == 200
    assert calls == [1, 1]


# --- batching ------------------------------------------------------------------------------------


def test_batcher_gathers_concurrent_items_and_answers_each_caller():
    sizes = []

    async def double(items):
        sizes.append(len(items))
        await asyncio.sleep(0.01)
        return [2 * item for item in items]

    async def scenario(max_batch):
        batcher = Batcher(double, max_batch=max_batch, max_wait_ms=100)
        results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
        await batcher.close()
        return results, batcher.stats

    results, stats = asyncio.run(scenario(4))
    assert results == [2 * i for i in range(10)]
    assert sizes == [4, 4, 2] and (stats.batches, stats.items, stats.largest) == (3, 10, 4)
    sizes.clear()
    results, stats = asyncio.run(scenario(1))  # batching off
    assert results == [2 * i for i in range(10)] and sizes == [1] * 10


def test_batcher_waits_at_most_max_wait_and_bounds_its_queue():
    release = asyncio.Event()
    calls = []

    async def held(items):
        calls.append((time.perf_counter(), list(items)))
        await release.wait()
        return items

    async def scenario():
        batcher = Batcher(held, max_batch=2, max_wait_ms=20, max_queue=3)
        started = time.perf_counter()
        first = asyncio.ensure_future(batcher.submit("a"))  # alone: runs once the wait is over, then holds
        await asyncio.sleep(0.5)
        waiting = [asyncio.ensure_future(batcher.submit(x)) for x in "bcd"]
        await asyncio.sleep(0)
        with pytest.raises(QueueFullError, match="limit is 3"):
            await batcher.submit("e")
        release.set()
        answers = [await first] + [await w for w in waiting]
        await batcher.close()
        return started, answers, batcher.stats

    started, answers, stats = asyncio.run(scenario())
    assert answers == ["a", "b", "c", "d"]
    assert [items for _, items in calls] == [["a"], ["b", "c"], ["d"]]
    assert calls[0][0] - started < 0.4  # the lone first item did not wait for the others
    assert (stats.batches, stats.largest) == (3, 2)


def test_batcher_waits_for_items_on_their_way_and_only_for_them():
    calls = []

    async def record(items):
        calls.append((time.perf_counter(), list(items)))
        return items

    async def arriving(item, delay):
        await asyncio.sleep(delay)
        return item

    async def scenario():
        batcher = Batcher(record, max_batch=8, max_wait_ms=2000)
        started = time.perf_counter()
        alone = await batcher.submit("alone")  # nothing else on its way: runs at once despite the long wait
        together = await asyncio.gather(batcher.submit("first"), batcher.submit(arriving("late", 0.3)))
        failed = await asyncio.gather(batcher.submit("left"), batcher.submit(arriving_error()), return_exceptions=True)
        await batcher.close()
        return started, [alone, *together, *failed]

    async def arriving_error():
        await asyncio.sleep(0.1)
        raise ValueError("not an image")

    started, answers = asyncio.run(scenario())
    assert answers[:4] == ["alone", "first", "late", "left"] and isinstance(answers[4], ValueError)
    assert [items for _, items in calls] == [["alone"], ["first", "late"], ["left"]]
    assert calls[0][0] - started < 0.5  # not the 2 s max_wait
    assert calls[1][0] - started < 1.5  # went as soon as "late" arrived
    assert calls[2][0] - calls[1][0] < 1.5  # and "left" went once the other one failed


def test_batcher_hands_a_failure_to_its_batch_only():
    async def picky(items):
        if "bad" in items:
            raise ValueError("bad item")
        return items

    async def scenario():
        batcher = Batcher(picky, max_batch=2, max_wait_ms=50)
        answers = await asyncio.gather(*(batcher.submit(x) for x in ("ok", "bad", "fine")), return_exceptions=True)
        await batcher.close()
        return answers

    first, second, third = asyncio.run(scenario())
    assert isinstance(first, ValueError) and isinstance(second, ValueError) and third == "fine"


def test_batched_answers_equal_single_ones(classifier, image_files, expected):
    """The same images, batched together and one at a time: equal probabilities, each to its caller."""
    names = list(IMAGES)
    pixels = [viz.preprocess_image(image_files / name, classifier.preprocessing) for name in names]

    async def run(max_batch):
        runner = ModelRunner(classifier, max_batch=max_batch, max_wait_ms=200)
        answers = await asyncio.gather(*(runner.predict(p, topk=3) for p in pixels))
        await runner.close()
        return answers, runner.batcher.stats

    batched, stats = asyncio.run(run(16))
    single, single_stats = asyncio.run(run(1))
    assert (stats.batches, stats.largest) == (1, len(names))
    assert (single_stats.batches, single_stats.largest) == (len(names), 1)
    for name, one, many in zip(names, single, batched):
        assert [label.label for label in one] == [label.label for label in many] == expected[name].labels
        np.testing.assert_allclose([x.probability for x in many], [x.probability for x in one], atol=1e-6)
        np.testing.assert_allclose([x.probability for x in many], expected[name].probabilities, atol=1e-6)


def test_concurrent_requests_through_the_test_client_are_batched(classifier, expected):
    app = create_app(classifier, ServeSettings(max_batch=16, max_wait_ms=300))
    names = list(IMAGES) * 2
    with TestClient(app) as test_client, ThreadPoolExecutor(len(names)) as pool:
        answers = list(pool.map(lambda n: test_client.post("/predict?topk=3", content=IMAGES[n]), names))
        stats = test_client.get("/health").json()["batching"]
    for name, answer in zip(names, answers):
        assert answer.status_code == 200
        assert_same(answer.json(), expected[name])
    assert stats["items"] == len(names) and stats["largest"] > 1 and stats["batches"] < len(names)


# --- precision -----------------------------------------------------------------------------------


def test_bf16_serves_close_to_fp32(model_dir, classifier, image_files):
    bf16 = load_classifier(model_dir, "cpu", "bf16")
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    app = create_app(bf16, precision="bf16")
    with TestClient(app) as test_client:
        assert test_client.get("/metadata").json()["precision"] == "bf16"
        answer = test_client.post("/predict?topk=3", content=IMAGES["rgb.png"]).json()
        grids = test_client.post("/attention?stage=1&block=0", content=IMAGES["rgb.png"])
    reference = predict(classifier, [image_files / "rgb.png"], topk=3)[0]
    served = {item["label"]: item["probability"] for item in answer["top"]}
    np.testing.assert_allclose([served[label] for label in reference.labels], reference.probabilities, atol=0.03)
    assert grids.status_code == 200
    np.testing.assert_allclose(np.sum(grids.json()["blocks"][0]["mean"]), 1.0, atol=0.02)


def test_int8_quantizes_every_linear_layer_and_serves_close_to_fp32(model_dir, classifier, image_files, expected):
    int8 = load_classifier(model_dir, "cpu", "int8")
    linear = [m for m in int8.model.modules() if type(m) is torch.nn.Linear]
    quantized = [m for m in int8.model.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert not linear and len(quantized) == 4 * 4 + 1 + 1  # qkv, proj, fc1, fc2 of the 4 blocks; the merging; the head
    names = list(IMAGES)
    with TestClient(create_app(int8, ServeSettings(max_batch=16, max_wait_ms=300), "int8")) as test_client:
        assert test_client.get("/metadata").json()["precision"] == "int8"
        with ThreadPoolExecutor(len(names)) as pool:
            answers = list(pool.map(lambda n: test_client.post("/predict?topk=3", content=IMAGES[n]).json(), names))
        assert test_client.get("/health").json()["batching"]["largest"] > 1
        grids = test_client.post("/attention?stage=1&block=1&row=3&col=3", content=IMAGES["rgb.png"])
        picture = test_client.post("/attention.png?stage=1", content=IMAGES["rgb.png"])
    # Dynamic quantization scales activations per batch, so int8 answers depend a little on the batch too.
    for name, answer in zip(names, answers):
        served = {item["label"]: item["probability"] for item in answer["top"]}
        np.testing.assert_allclose(
            [served[label] for label in expected[name].labels], expected[name].probabilities, atol=0.05
        )
    pixels = viz.preprocess_image(image_files / "rgb.png", classifier.preprocessing)
    (reference,) = viz.attention_maps(classifier.model, pixels, (3, 3), [(0, 1)])
    np.testing.assert_allclose(grids.json()["blocks"][0]["heads"], reference.heads, atol=0.05)
    assert picture.status_code == 200 and picture.content.startswith(PNG_SIGNATURE)


def test_unknown_precision_is_refused(model_dir):
    with pytest.raises(ValueError, match="fp32"):
        load_classifier(model_dir, "cpu", "fp8")


# --- command line --------------------------------------------------------------------------------


def test_cli_precisions_are_the_servers():
    assert serve_command.PRECISIONS == swinkit.precision.PRECISIONS


def test_cli_passes_its_flags_to_serve(monkeypatch, model_dir):
    calls = []
    monkeypatch.setattr(swinkit.serve, "serve", lambda *args: calls.append(args))
    flags = ["--port", "8123", "--precision", "bf16", "--max-batch", "4", "--max-wait-ms", "2.5", "--max-body-mb", "1"]
    assert main(["serve", str(model_dir), *flags, "--workers", "2", "--max-pixels", "1000", "--threads", "3"]) == 0
    ((source, host, port, precision, device, settings, workers, level, threads),) = calls
    assert (source, host, port, precision, device) == (str(model_dir), "127.0.0.1", 8123, "bf16", None)
    assert (workers, level, threads) == (2, "info", 3)
    assert settings == ServeSettings(max_batch=4, max_wait_ms=2.5, max_body_bytes=1024 * 1024, max_pixels=1000)


def test_cli_names_the_extra_when_it_is_missing(monkeypatch, capsys, model_dir):
    for name in [name for name in sys.modules if name == "swinkit.serve" or name.startswith("swinkit.serve.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "fastapi", None)
    assert main(["serve", str(model_dir)]) == 2
    error = capsys.readouterr().err
    assert "pip install 'swinkit[serve]'" in error and "fastapi" in error


def test_workers_build_the_app_from_the_environment(monkeypatch, model_dir):
    from swinkit.serve import server

    threads = torch.get_num_threads()
    options = {"source": str(model_dir), "device": "cpu", "precision": "fp32", "threads": threads}
    options["settings"] = {"max_batch": 3, "max_wait_ms": 1.0, "max_queue": 9, "max_body_bytes": 99, "max_pixels": 9}
    monkeypatch.setenv(server.OPTIONS_VARIABLE, __import__("json").dumps(options))
    app = server.app_from_environment()
    assert app.state.settings == ServeSettings(3, 1.0, 9, 99, 9)
    assert app.state.runner.classifier.classes == list(LABELS)


# --- a real server on loopback -------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_server(model_dir, tmp_path_factory):
    """``swinkit serve`` in its own process on 127.0.0.1 (a free port), as a user starts it."""
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    for url, process in serve_process(model_dir, log_path, ["--max-batch", "8", "--max-wait-ms", "20"]):
        yield url, process, log_path


def test_concurrent_clients_on_loopback_all_get_predicts_answers(live_server, expected):
    url, _, _ = live_server
    clients, per_client = 6, 5
    names = list(IMAGES)

    def one_client(index):
        answers = []
        with httpx.Client(base_url=url, timeout=30) as http:
            for step in range(per_client):
                name = names[(index * per_client + step) % len(names)]
                answers.append((name, http.post("/predict?topk=3", content=IMAGES[name])))
        return answers

    before = httpx.get(f"{url}/health").json()["batching"]
    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        results = [pair for answers in pool.map(one_client, range(clients)) for pair in answers]
    assert time.monotonic() - started < 60
    assert len(results) == clients * per_client
    for name, answer in results:
        assert answer.status_code == 200, answer.text
        assert_same(answer.json(), expected[name])
    after = httpx.get(f"{url}/health").json()["batching"]
    assert after["items"] - before["items"] == clients * per_client
    assert after["largest"] > 1  # several clients at once were served in one forward pass


def test_a_slow_client_does_not_stall_the_others(live_server, expected):
    """A client that sends half its body and stops holds its own connection only."""
    url, _, _ = live_server
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
        slow.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + IMAGES["rgb.png"][:500])
        started = time.monotonic()
        for name in ("rgb.png", "cmyk.jpg", "wide.webp"):
            answer = httpx.post(f"{url}/predict?topk=3", content=IMAGES[name], timeout=30)
            assert_same(answer.json(), expected[name])
        assert time.monotonic() - started < 20
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200


def test_server_answers_curl_like_requests_and_logs_errors(live_server):
    url, _, log_path = live_server
    assert httpx.get(f"{url}/").text.startswith("<!doctype html>")
    assert httpx.get(f"{url}/metadata").json()["classes"] == list(LABELS)
    refused = httpx.post(f"{url}/predict", files={"file": ("notes.txt", b"not a picture")})
    assert refused.status_code == 400
    deadline = time.monotonic() + 10
    while "400 POST /predict from 127.0.0.1" not in log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "400 POST /predict from 127.0.0.1" in log_path.read_text()


# --- a real browser ------------------------------------------------------------------------------


def test_the_page_in_a_real_browser_shows_the_label_and_the_overlay(browser, live_server, image_files, expected):
    """The page in Chromium (the ``browser`` fixture of conftest.py: skipped without it, failed in CI)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _, _ = live_server
    wait = WebDriverWait(browser, 30)
    browser.get(f"{url}/")
    wait.until(lambda d: "classes" in d.find_element(By.ID, "model").text)
    assert "3 classes" in browser.find_element(By.ID, "model").text

    browser.find_element(By.ID, "file").send_keys(str(image_files / "rgb.png"))
    labels = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#bars .label"))
    assert [label.text for label in labels] == expected["rgb.png"].labels
    shown = browser.find_element(By.CSS_SELECTOR, "#bars .value").text
    assert shown == f"{100 * expected['rgb.png'].probabilities[0]:.1f}%"
    loaded = "const i = document.getElementById('overlay'); return i.complete && i.naturalWidth > 0 && i.dataset.query"
    assert wait.until(lambda d: d.execute_script(loaded)) == "16,16"  # the centre of the 32x32 input

    # A click on the picture picks the query (a tenth from the top, nine tenths across); the overlay follows.
    view = browser.find_element(By.ID, "view")
    assert view.size["width"] > 100
    ActionChains(browser).move_to_element_with_offset(
        view, round(0.4 * view.size["width"]), -round(0.4 * view.size["height"])
    ).click().perform()
    assert wait.until(lambda d: d.execute_script(loaded) == "3,28")
    assert "row 3, col 28" in browser.find_element(By.ID, "query").text
    assert browser.execute_script("return document.getElementById('overlay').naturalWidth") > 100

    # A file that is not an image: the page says what the server said.
    (image_files / "notes.txt").write_bytes(b"not a picture")
    browser.find_element(By.ID, "file").send_keys(str(image_files / "notes.txt"))
    wait.until(lambda d: "400" in d.find_element(By.ID, "status").text)
    assert "not an image" in browser.find_element(By.ID, "status").text
    severe = [
        entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE" and "400" not in entry["message"]
    ]
    assert not severe, severe
