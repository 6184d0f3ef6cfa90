"""Running the application on uvicorn: one process, or several workers each with its own copy of the model.

The application is the one of the model's task (:func:`swinkit.tasks.task_for`), built by
:data:`APPS`: a task served over HTTP adds its application builder there.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from collections.abc import Callable

import torch
import uvicorn
from fastapi import FastAPI

from swinkit.classifier import load_classifier
from swinkit.segmenter import open_segmenter
from swinkit.serve.app import ServeSettings, create_app
from swinkit.serve.detect import create_detection_app
from swinkit.serve.segment import create_segment_app
from swinkit.tasks import task_for
from swinkit.tasks.detect import read_detector

#: The environment variable through which ``serve`` hands its options to worker processes.
OPTIONS_VARIABLE = "SWINKIT_SERVE_OPTIONS"


def logging_config(level: str = "info") -> dict[str, object]:
    """uvicorn's logging configuration, with the ``swinkit.serve`` logger (refused requests, errors) added."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["loggers"]["swinkit.serve"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config


def classifier_app(source: str, device: str | None, precision: str, settings: ServeSettings) -> FastAPI:
    """The application of a classifier: top-k labels, attention maps, the page (:func:`create_app`)."""
    return create_app(load_classifier(source, device, precision), settings, precision)


def detector_app(source: str, device: str | None, precision: str, settings: ServeSettings) -> FastAPI:
    """The application of a detector: boxes, labels, scores and masks, and a page that draws them."""
    if precision != "fp32":
        raise ValueError(f"swinkit serves detectors in fp32 only, not {precision}")
    model = read_detector(source).eval().to(device or "cpu")
    return create_detection_app(model, settings)


def segmenter_app(source: str, device: str | None, precision: str, settings: ServeSettings) -> FastAPI:
    """The application of a segmenter: masks and overlays, the page (:func:`create_segment_app`)."""
    return create_segment_app(open_segmenter(source, device, precision), settings)


#: Each task's application builder ``(source, device, precision, settings) -> FastAPI``, by task name.
APPS: dict[str, Callable[[str, str | None, str, ServeSettings], FastAPI]] = {
    "classify": classifier_app,
    "detect": detector_app,
    "segment": segmenter_app,
}


def build_app(source: str, device: str | None, precision: str, settings: ServeSettings) -> FastAPI:
    """The application of the model in ``source``, as its task serves it; ValueError for a task not served."""
    name = task_for(source).name
    if name not in APPS:
        raise ValueError(f"swinkit serve does not serve task {name!r} yet; it serves {', '.join(APPS)}")
    return APPS[name](source, device, precision, settings)


def serve(
    source: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 8000,
    precision: str = "fp32",
    device: str | None = None,
    settings: ServeSettings | None = None,
    workers: int = 1,
    log_level: str = "info",
    threads: int | None = None,
) -> None:
    """Serve the model ``source`` (anything ``predict`` loads) on ``host:port`` until interrupted.

    The model is loaded once here, so that a bad source fails before the server starts.
    With ``workers`` > 1, uvicorn runs that many processes behind the one port, each loading
    the model (memory grows accordingly) and batching its own requests. ``threads`` sets
    PyTorch's CPU threads per process (default: PyTorch's own choice, shared out among the
    workers). Binds to 127.0.0.1 unless ``host`` says otherwise.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    settings = settings or ServeSettings()
    app = build_app(os.fspath(source), device, precision, settings)
    common = {"host": host, "port": port, "log_config": logging_config(log_level), "log_level": log_level}
    if workers == 1:
        if threads is not None:
            torch.set_num_threads(threads)
        uvicorn.run(app, **common)
        return
    del app
    os.environ[OPTIONS_VARIABLE] = json.dumps(
        {
            "source": os.fspath(source),
            "device": device,
            "precision": precision,
            "settings": dataclasses.asdict(settings),
            "threads": threads or max(1, torch.get_num_threads() // workers),
        }
    )
    uvicorn.run(f"{__name__}:app_from_environment", factory=True, workers=workers, **common)


def app_from_environment() -> FastAPI:
    """The application a worker process builds from the options :func:`serve` left in ``SWINKIT_SERVE_OPTIONS``."""
    options = json.loads(os.environ[OPTIONS_VARIABLE])
    torch.set_num_threads(options["threads"])
    return build_app(options["source"], options["device"], options["precision"], ServeSettings(**options["settings"]))
