"""``swinkit serve`` under load, on loopback: requests/s and latency, batching on and off, fp32 and int8.

    swinkit bench serve [--quick] [--digits runs/digits] [--models digits swin_t]

For each model (the digits model, 8x8 grey, and Swin-T at 224 with random weights: the
speed of a forward pass does not depend on the weights' values), each precision and
batching on (``--max-batch``, ``--max-wait-ms``) or off (``--max-batch 1``), the script
starts ``swinkit serve`` in its own process on 127.0.0.1, then runs 1, 4 and 16 clients
that each send their next ``POST /predict`` as soon as the previous answer arrives. Each
level stops after ``--requests`` answers or ``--seconds`` seconds, whichever comes first.
As the ceiling the server works under, it also times the model alone in this process, at
batch 1 and at the batch size of the batching runs. Writes
``benchmarks/results/serve.json`` and ``serve.md`` (``--output`` to change the folder;
``--quick`` writes ``serve-quick.*`` instead).

The clients run in this process (asyncio, httpx) on the same machine as the server, so on
a small CPU they take some of its time; the figures are for comparing the settings with
each other, measured in the same run. The clients need ``httpx`` (a test extra).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import swinkit
from swinkit.bench import measure, tables
from swinkit.classifier import load_classifier
from swinkit.train.config import DIGITS

CLIENTS = (1, 4, 16)
PRECISIONS = ("fp32", "int8")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The options of ``swinkit bench serve``; ``--quick`` caps the requests and seconds per level."""
    parser = argparse.ArgumentParser(
        prog="swinkit bench serve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: few requests, a few seconds per level")
    parser.add_argument("--models", nargs="+", choices=("digits", "swin_t"), default=["digits", "swin_t"])
    parser.add_argument("--digits", help="a trained digits model (run or export); default: the digits shape, random")
    parser.add_argument("--requests", type=int, default=400, help="answers per level at most (default 400)")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per level at most (default 20)")
    parser.add_argument("--max-batch", type=int, default=16, help="batch size of the batching runs (default 16)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="wait of the batching runs (default 5 ms)")
    parser.add_argument("--threads", type=int, help="the server's PyTorch threads (default: PyTorch's choice)")
    parser.add_argument("--output", type=Path, default=tables.RESULTS, help="folder for serve.json and serve.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.seconds = min(args.requests, 24), min(args.seconds, 3.0)
    return args


def build_models(args: argparse.Namespace, folder: Path) -> dict[str, tuple[str, bytes]]:
    """The models to serve, as sources ``swinkit serve`` takes, with the image each is sent."""
    models: dict[str, tuple[str, bytes]] = {}
    rng = np.random.default_rng(0)
    if "digits" in args.models:
        source = args.digits
        if source is None:
            overrides = dict(DIGITS["model_overrides"], num_classes=10)
            model = swinkit.create_model(DIGITS["model"], **overrides)
            preprocessing = {"mean": DIGITS["mean"], "std": DIGITS["std"], "crop_pct": DIGITS["crop_pct"]}
            source = str(swinkit.save_pretrained(model, folder / "digits", preprocessing=preprocessing))
        digit = Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).resize((64, 64), Image.NEAREST)
        models["digits"] = (source, encode(digit, "PNG"))
    if "swin_t" in args.models:
        model = swinkit.create_model("swin_t", num_classes=1000)
        photo = Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
        models["swin_t"] = (str(swinkit.save_pretrained(model, folder / "swin_t")), encode(photo, "JPEG"))
    return models


def encode(image: Image.Image, format: str) -> bytes:
    """``image`` as the bytes of a file in ``format`` (``PNG``, ``JPEG``)."""
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """``swinkit serve`` in a child process on 127.0.0.1, stopped with SIGINT on exit."""

    def __init__(self, source: str, precision: str, max_batch: int, max_wait_ms: float, threads: int | None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = measure.swinkit_command(
            *("serve", source, "--host", "127.0.0.1", "--port", str(self.port)),
            *("--precision", precision, "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms)),
            *("--device", "cpu", "--log-level", "warning"),
            *(("--threads", str(threads)) if threads else ()),
        )

    def __enter__(self) -> Server:
        import httpx  # a test extra, not a dependency of swinkit: imported by the benchmark's run only

        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=self.log, env=measure.child_env())
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}: {self._log_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.2)
        self.process.kill()
        raise RuntimeError(f"the server did not answer within 180 s: {self._log_text()}")

    def _log_text(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-2000:]

    def __exit__(self, *exc: object) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


async def load(url: str, image: bytes, clients: int, requests: int, seconds: float) -> dict[str, object]:
    """``clients`` closed-loop clients until ``requests`` answers or ``seconds``; latencies of the answers."""
    import httpx  # a test extra, as above

    latencies: list[float] = []
    errors = 0
    sent = 0
    stop = time.perf_counter() + seconds

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors, sent
        while sent < requests and time.perf_counter() < stop:
            sent += 1
            began = time.perf_counter()
            answer = await http.post("/predict?topk=5", content=image, headers={"content-type": "image/*"})
            if answer.status_code == 200:
                latencies.append(time.perf_counter() - began)
            else:
                errors += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    milliseconds = sorted(1000 * value for value in latencies)
    return {
        "clients": clients,
        "answers": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(len(latencies) / elapsed, 2),
        "p50_ms": round(float(np.percentile(milliseconds, 50)), 2) if milliseconds else None,
        "p99_ms": round(float(np.percentile(milliseconds, 99)), 2) if milliseconds else None,
    }


@torch.no_grad()
def model_alone(source: str, image: bytes, precision: str, batch: int, seconds: float) -> float:
    """Images per second of the model's forward pass alone at ``batch`` (median of timed repeats), this process."""
    classifier = load_classifier(source, "cpu", precision)
    pixels = classifier.transform(Image.open(io.BytesIO(image))).unsqueeze(0).repeat(batch, 1, 1, 1)
    classifier.model(pixels)
    times = measure.timed_calls(lambda: classifier.model(pixels), seconds)
    return round(batch / statistics.median(times), 1)


def to_markdown(report: dict[str, object]) -> str:
    """The tables of a run: every level, the ratios between settings, the model alone."""
    rows = report["rows"]
    info = report["machine"]
    settings = report["settings"]
    lines = [
        "# `swinkit serve` on loopback",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}. Clients and server share it.",
        (
            f"Server threads: {settings['server_threads']}. Batching on: `--max-batch {settings['max_batch']} "
            f"--max-wait-ms {settings['max_wait_ms']}`; off: `--max-batch 1`. Each level: at most "
            f"{settings['requests']} answers or {settings['seconds']} s. Swin-T has random weights (224x224, 1000 "
            f"classes; the speed does not depend on the values); the digits model is {settings['digits']}."
        ),
        "A --quick smoke run: too few requests for real figures." if settings["quick"] else "",
        "",
    ]
    levels = ("model", "precision", "batching", "clients", "answers", "errors", "requests_per_s", "p50_ms", "p99_ms")
    lines += tables.markdown_table(
        ["model", "precision", "batching", "clients", "answers", "errors", "requests/s", "p50 ms", "p99 ms"],
        [[row[key] for key in levels] for row in rows],
    )
    lines += ["", "Requests/s, batching on over off, and int8 over fp32 (same run):", ""]
    speeds = {(r["model"], r["precision"], r["batching"], r["clients"]): r["requests_per_s"] for r in rows}
    ratios = []
    for model, precision, _, clients in [key for key in speeds if key[2] == "on"]:
        on, off = speeds[(model, precision, "on", clients)], speeds.get((model, precision, "off", clients))
        fp32, int8 = speeds.get((model, "fp32", "on", clients)), speeds.get((model, "int8", "on", clients))
        batching = f"{on / off:.2f}x" if off else "-"
        quantized = f"{int8 / fp32:.2f}x" if fp32 and int8 and precision == "int8" else "-"
        ratios.append([model, precision, clients, batching, quantized])
    lines += tables.markdown_table(
        ["model", "precision", "clients", "batching on / off", "int8 / fp32 (batching on)"], ratios
    )
    lines += ["", "The model alone in one process (images/s of the forward pass, the server's ceiling):", ""]
    lines += tables.markdown_table(
        ["model", "precision", "batch 1", f"batch {settings['max_batch']}"],
        [[entry["model"], entry["precision"], entry["batch_1"], entry["batch_n"]] for entry in report["model_alone"]],
    )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``swinkit bench serve``: load each server setting, write ``serve.{json,md}``; 1 when any request failed."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)  # the model-alone figures at the server's threads
    rows: list[dict[str, object]] = []
    ceilings: list[dict[str, object]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        models = build_models(args, Path(folder))
        for name, (source, image) in models.items():
            for precision in PRECISIONS:
                alone = {"model": name, "precision": precision}
                alone["batch_1"] = model_alone(source, image, precision, 1, min(args.seconds, 5))
                alone["batch_n"] = model_alone(source, image, precision, args.max_batch, min(args.seconds, 5))
                ceilings.append(alone)
                print(
                    f"{name} {precision} model alone: {alone['batch_1']} img/s at batch 1, "
                    f"{alone['batch_n']} at batch {args.max_batch}",
                    flush=True,
                )
                for batching, max_batch in (("off", 1), ("on", args.max_batch)):
                    with Server(source, precision, max_batch, args.max_wait_ms, args.threads) as server:
                        asyncio.run(load(server.url, image, 4, 8, 30))  # warm-up: first passes, connections
                        for clients in CLIENTS:
                            row = asyncio.run(load(server.url, image, clients, args.requests, args.seconds))
                            row = {"model": name, "precision": precision, "batching": batching, **row}
                            rows.append(row)
                            print(
                                f"{name:7} {precision} batching {batching:3} {clients:2} clients: "
                                f"{row['requests_per_s']:8.2f} req/s  p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms  "
                                f"({row['answers']} answers, {row['errors']} errors)",
                                flush=True,
                            )
    report = {
        "machine": measure.machine(),
        "settings": {
            "quick": args.quick,
            "requests": args.requests,
            "seconds": args.seconds,
            "max_batch": args.max_batch,
            "max_wait_ms": args.max_wait_ms,
            "server_threads": args.threads or "PyTorch's default",
            "digits": args.digits or "the digits recipe's architecture with random weights",
        },
        "rows": rows,
        "model_alone": ceilings,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    stem = "serve-quick" if args.quick else "serve"  # a smoke run never replaces the measured figures
    tables.write_results(args.output, stem, report, to_markdown(report))
    print(f"took {report['total_seconds']} s")
    return 1 if any(row["errors"] for row in rows) else 0
