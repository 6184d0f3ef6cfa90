"""Helpers of the serving tests: ``swinkit serve`` in a process of its own, and a headless Chromium."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_process(model: Path, log_path: Path, options: Sequence[str] = (), wait: float = 90) -> Iterator[tuple]:
    """Start ``swinkit serve MODEL`` on a free port, yield ``(url, process)`` once ``/health`` answers, then stop it.

    Fails the test with the server's log when it exits or does not answer within ``wait`` seconds.
    """
    port = free_port()
    command = [sys.executable, "-m", "swinkit", "serve", str(model), "--port", str(port), *options]
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=log_file)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait
    while True:
        if process.poll() is not None:
            pytest.fail(f"swinkit serve exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"swinkit serve did not answer within {wait:g} s:\n{log_path.read_text()}")
        time.sleep(0.2)
    yield url, process
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
