"""``swinkit serve``: a trained model behind a JSON API and a web page, with dynamic batching.

Open http://HOST:PORT/ for the page (drop an image, see the top-k and where the model
looked); the API is ``POST /predict``, ``POST /attention``, ``POST /attention.png``,
``GET /metadata`` and ``GET /health`` (schema at ``/openapi.json``). Needs the serve
extra: pip install 'swinkit[serve]'.
"""

from __future__ import annotations

import argparse

#: swinkit.precision.PRECISIONS, repeated so that --help works without the serve extra (a test keeps them equal).
PRECISIONS = ("fp32", "bf16", "int8")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve a model over HTTP: JSON API and web page",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="a swinkit run or export, a checkpoint file or folder, or a Hub id")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp32, bf16 (weights cast to bfloat16) or int8 (dynamic quantization of the linear layers, CPU)",
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    parser.add_argument(
        "--max-batch", type=int, default=8, help="images per forward pass at most (default 8; 1 turns batching off)"
    )
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=5.0,
        help="how long the first image of a batch waits for others (default 5 ms)",
    )
    parser.add_argument("--max-queue", type=int, default=256, help="images waiting at most; more get 503 (default 256)")
    parser.add_argument("--max-body-mb", type=float, default=20.0, help="larger request bodies get 413 (default 20)")
    parser.add_argument(
        "--max-pixels", type=int, default=50_000_000, help="larger images get 413, before decoding (default 50M)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes, each with its own copy of the model (default 1)"
    )
    parser.add_argument(
        "--threads", type=int, help="PyTorch CPU threads per process (default: PyTorch's, shared among the workers)"
    )
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        from swinkit.serve import ServeSettings, serve
    except ModuleNotFoundError as error:
        if error.name != "swinkit.serve":
            raise
        raise ValueError(str(error)) from error

    settings = ServeSettings(
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        max_pixels=args.max_pixels,
    )
    serve(
        args.model,
        args.host,
        args.port,
        args.precision,
        args.device,
        settings,
        args.workers,
        args.log_level,
        args.threads,
    )
    return 0
