"""The measuring helpers every benchmark uses: timers, memory, the machine's matmul rate, fresh processes.

Timed runs of peers are interleaved (:func:`interleaved`: each round times every peer once, in
rotating order), so that a change in the machine's load falls on all of them alike. Memory is
read two ways: the peak resident set size a process adds (:func:`resident_mb`,
:func:`peak_resident_mb`; one process cannot reset its peak, so each measurement runs in a fresh
process started with :func:`worker_result`) and the CUDA allocator's peak on a GPU.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

CPU = torch.device("cpu")
#: The folder holding the ``swinkit`` package, put on a child process's ``PYTHONPATH``.
SOURCE = Path(__file__).resolve().parents[2]


def synchronize(device: torch.device) -> None:
    """Wait for ``device`` to finish its queued work (a no-op on the CPU), so that a clock read after it is true."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(dtype: torch.dtype, size: int = 2048, seconds: float = 2.0, device: torch.device = CPU) -> float:
    """Measured multiply-add rate of a square matrix product, in GFLOP/s (2 floating-point ops each)."""
    a, b = (torch.randn(size, size, dtype=dtype, device=device) for _ in range(2))
    for _ in range(3):
        a @ b
    synchronize(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
        if count % 16 == 0:
            synchronize(device)
    synchronize(device)
    return 2 * size**3 * count / (time.perf_counter() - start) / 1e9


def inference_step(model: nn.Module, batch: torch.Tensor, dtype: torch.dtype | None) -> Callable[[], None]:
    """One forward pass without gradients, under autocast to ``dtype`` when given."""

    def step() -> None:
        with torch.inference_mode(), torch.autocast(batch.device.type, dtype=dtype, enabled=dtype is not None):
            model(batch)

    return step


def training_step(
    model: nn.Module, batch: torch.Tensor, dtype: torch.dtype | None, classes: int = 1000
) -> Callable[[], None]:
    """One AdamW step on cross-entropy over ``classes`` classes, under autocast to ``dtype`` when given.

    The optimiser holds the parameters that require gradients (a LoRA fine-tune's adapters alone).
    """
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    targets = torch.randint(0, classes, (batch.shape[0],), device=batch.device)

    def step() -> None:
        with torch.autocast(batch.device.type, dtype=dtype, enabled=dtype is not None):
            loss = nn.functional.cross_entropy(model(batch), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def interleaved(
    steps: dict[str, Callable[[], None]],
    rounds: int,
    repeats: int,
    device: torch.device = CPU,
    warmup: int = 1,
) -> dict[str, list[float]]:
    """Seconds per call of each step: ``rounds`` rounds, each timing every step ``repeats`` times, order rotating.

    Each step runs ``warmup`` times first; on a GPU the clock stops after the device finishes.
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for round_index in range(rounds):
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in order:
            start = time.perf_counter()
            for _ in range(repeats):
                steps[name]()
            synchronize(device)
            times[name].append((time.perf_counter() - start) / repeats)
    return times


def timed_calls(step: Callable[[], object], seconds: float, least: int = 3, most: int = 50) -> list[float]:
    """Seconds of each call of ``step``, called at least ``least`` times, then until ``seconds`` or ``most`` calls."""
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < least or (time.perf_counter() < deadline and len(times) < most):
        began = time.perf_counter()
        step()
        times.append(time.perf_counter() - began)
    return times


def saved_activations(model: nn.Module, batch: torch.Tensor) -> float:
    """MB of tensors a forward pass in training keeps for the backward pass (each storage counted once)."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(batch).sum().backward()
    model.zero_grad(set_to_none=True)
    return sum(storages.values()) / 2**20


def resident_mb() -> float:
    """This process's resident memory now, in MB (Linux; elsewhere its peak so far)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return peak_resident_mb()


def peak_resident_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def training_memory(model: nn.Module, batch: torch.Tensor, classes: int = 1000) -> dict[str, float]:
    """Memory of two training steps of ``model`` on ``batch`` (AdamW), in MB.

    ``peak_rss``: the peak memory the steps add (gradients, optimiser state, activations,
    temporaries): the CUDA allocator's on a GPU, the resident set's on a CPU, where only a
    fresh process gives a true figure; ``activations``: what a forward pass saves for backward.
    """
    step = training_step(model, batch, None, classes)
    return {"peak_rss": peak_added(step, batch.device), "activations": saved_activations(model, batch)}


def peak_added(step: Callable[[], object], device: torch.device, calls: int = 2) -> float:
    """MB that ``calls`` calls of ``step`` add at their peak: the CUDA allocator's on a GPU, the
    resident set's on a CPU (true only in a fresh process, where nothing larger came before)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device) / 2**20
    else:
        before = resident_mb()
    for _ in range(calls):
        step()
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20 - before
    return peak_resident_mb() - before


def machine() -> dict[str, object]:
    """What the numbers were measured on: CPU model, cores, PyTorch's threads, versions, the GPU if any."""
    cpu = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
    }


def child_env() -> dict[str, str]:
    """This process's environment, with the folder of the ``swinkit`` it runs first on ``PYTHONPATH``.

    A child started with it (``python -m swinkit ...``) runs the same swinkit as this process.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(SOURCE), env.get("PYTHONPATH"))))
    return env


def swinkit_command(*arguments: str) -> list[str]:
    """The command line running ``swinkit ARGUMENTS`` with this interpreter."""
    return [sys.executable, "-m", "swinkit", *arguments]


def run_swinkit(*arguments: str) -> tuple[float, str]:
    """Run ``swinkit ARGUMENTS`` in a fresh process; its wall time in seconds and what it printed. A
    failure stops the benchmark with the end of the child's output."""
    began = time.monotonic()
    result = subprocess.run(swinkit_command(*arguments), capture_output=True, text=True, env=child_env())
    seconds = time.monotonic() - began
    if result.returncode:
        raise SystemExit(f"swinkit {arguments[0]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return seconds, result.stdout


def worker_result(arguments: Sequence[str]) -> dict:
    """Run ``swinkit ARGUMENTS`` in a fresh process; its last line of output, read as JSON.

    Raises ``RuntimeError`` with the end of its error output when it fails.
    """
    done = subprocess.run(swinkit_command(*arguments), capture_output=True, text=True, env=child_env())
    if done.returncode != 0:
        raise RuntimeError(f"swinkit {' '.join(arguments[:3])} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
