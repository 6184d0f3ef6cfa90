"""Running the application on uvicorn: one process, or several workers each with its own copy of the model."""

from __future__ import annotations

import copy
import dataclasses
import json
import os

import torch
import uvicorn
from fastapi import FastAPI

from swinkit.classifier import load_classifier
from swinkit.serve.app import ServeSettings, create_app

#: The environment variable through which ``serve`` hands its options to worker processes.
OPTIONS_VARIABLE = "SWINKIT_SERVE_OPTIONS"


def logging_config(level: str = "info") -> dict[str, object]:
    """uvicorn's logging configuration, with the ``swinkit.serve`` logger (refused requests, errors) added."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["loggers"]["swinkit.serve"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config


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
    """Serve the classifier ``source`` (anything ``predict`` loads) on ``host:port`` until interrupted.

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
    classifier = load_classifier(source, device, precision)
    common = {"host": host, "port": port, "log_config": logging_config(log_level), "log_level": log_level}
    if workers == 1:
        if threads is not None:
            torch.set_num_threads(threads)
        uvicorn.run(create_app(classifier, settings, precision), **common)
        return
    del classifier
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
    classifier = load_classifier(options["source"], options["device"], options["precision"])
    return create_app(classifier, ServeSettings(**options["settings"]), options["precision"])
