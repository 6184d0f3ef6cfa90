"""Serving a classifier over HTTP: a JSON API, a web page, dynamic batching (``swinkit serve``).

- :mod:`swinkit.serve.app`: :func:`create_app`, the FastAPI application and its endpoints;
- :mod:`swinkit.serve.runner`: the model side (precision, batched prediction, attention);
- :mod:`swinkit.serve.batching`: :class:`Batcher`, gathering concurrent requests into batches;
- :mod:`swinkit.serve.uploads`: the body limit and the decoding of uploaded images;
- :mod:`swinkit.serve.server`: :func:`serve`, running the application on uvicorn.

Needs the ``serve`` extra (FastAPI, uvicorn, python-multipart): ``pip install 'swinkit[serve]'``.
"""

from importlib.util import find_spec

_MISSING = [name for name in ("fastapi", "uvicorn") if find_spec(name) is None]
if find_spec("python_multipart") is None and find_spec("multipart") is None:  # the module's new and old names
    _MISSING.append("python-multipart")
if _MISSING:
    raise ModuleNotFoundError(
        f"swinkit.serve needs the serve extra, which is not installed (missing: {', '.join(_MISSING)}): "
        "pip install 'swinkit[serve]'",
        name="swinkit.serve",
    )

from swinkit.serve.app import ServeSettings, create_app  # noqa: E402 - after the check, which names the extra
from swinkit.serve.batching import Batcher, BatchStats, QueueFullError  # noqa: E402
from swinkit.serve.runner import ModelRunner  # noqa: E402
from swinkit.serve.server import serve  # noqa: E402

__all__ = [
    "BatchStats",
    "Batcher",
    "ModelRunner",
    "QueueFullError",
    "ServeSettings",
    "create_app",
    "serve",
]
