"""Speed and memory of swinkit against timm, torchvision and transformers, in one process.

Every model is Swin-T with the same weights (swinkit's, converted to each peer's layout),
checked to give the same logits before anything is timed. Timed runs are interleaved:
each round times every model once, in rotating order, and the medians over rounds are
reported with their ratio to the fastest peer. Lower precisions are applied to every
model alike with :func:`swinkit.precision.apply_precision`: ``int8`` (dynamic
quantization of the Linear layers, CPU only) and ``bf16 weights`` (the whole model in
bfloat16); ``bf16`` rows are bfloat16 autocast. A model that fails under a precision is
reported as failing, with the error. On a CPU, peak memory of a training step is read
from a fresh process per model (the peak resident set size, which one process cannot
reset), started from this module; on a GPU from the CUDA allocator's peak. The peers are
test extras (``pip install swinkit[test]``); they are imported only here, and nothing is
downloaded.

Run ``python benchmarks/bench_models.py`` (or ``swinkit bench``); ``--help`` for options,
``--device cuda`` on a GPU, ``--quick`` for few rounds. ``--model swinv2_t`` measures Swin
V2-T instead, on the CPU or the GPU (:mod:`swinkit.benchmark_v2`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

import swinkit
from swinkit.checkpoints import timm as timm_format
from swinkit.checkpoints import torchvision as torchvision_format
from swinkit.checkpoints.layout import rename_from_native
from swinkit.model.flops import count_flops
from swinkit.precision import apply_precision
from swinkit.viz.flops import flops_table

PEERS = ("timm", "torchvision", "transformers")
#: Stochastic depth of every model, as in Swin-T's ImageNet recipe (it costs time in training).
DROP_PATH = 0.2
MODELS = ("swinkit", *PEERS)
CPU = torch.device("cpu")


def build(name: str, reference: nn.Module | None = None, grad_checkpointing: bool = False) -> nn.Module:
    """Swin-T from ``name``'s library, with ``reference``'s weights (a swinkit model) when given."""
    torch.manual_seed(0)
    if name == "swinkit":
        model = swinkit.create_model("swin_t", drop_path_rate=DROP_PATH)
        if grad_checkpointing:
            model.set_grad_checkpointing(True)
        if reference is not None:
            model.load_state_dict(reference.state_dict())
        return model
    if name == "timm":
        import timm

        model = timm.create_model("swin_tiny_patch4_window7_224", drop_path_rate=DROP_PATH)
        weights = timm_format.from_native(reference.state_dict()) if reference is not None else None
    elif name == "torchvision":
        import torchvision

        model = torchvision.models.swin_t()  # stochastic depth 0.2 built in, as DROP_PATH
        weights = (
            rename_from_native(reference.state_dict(), torchvision_format.LAYOUT) if reference is not None else None
        )
    elif name == "transformers":
        import transformers

        if reference is None:
            config = transformers.SwinConfig(num_labels=1000, drop_path_rate=DROP_PATH)
            return _LogitsOnly(transformers.SwinForImageClassification(config))
        # The user's path: swinkit's Hugging Face export read by from_pretrained.
        with tempfile.TemporaryDirectory() as folder:
            swinkit.save_pretrained(reference, folder, format="hf")
            loaded = transformers.SwinForImageClassification.from_pretrained(folder, drop_path_rate=DROP_PATH)
            return _LogitsOnly(loaded)
    else:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    if weights is not None:
        missing, unexpected = model.load_state_dict(weights, strict=False)
        real_missing = [k for k in missing if "relative_position_index" not in k and "attn_mask" not in k]
        if real_missing or unexpected:
            raise RuntimeError(f"{name}: weights did not map: missing {real_missing[:5]}, unexpected {unexpected[:5]}")
    return model


class _LogitsOnly(nn.Module):
    """transformers' model returning the logits tensor, like the others."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.inner(pixel_values=pixels).logits


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(dtype: torch.dtype, size: int = 2048, seconds: float = 2.0, device: torch.device = CPU) -> float:
    """Measured multiply-add rate of a square matrix product, in GFLOP/s (2 floating-point ops each)."""
    a, b = (torch.randn(size, size, dtype=dtype, device=device) for _ in range(2))
    for _ in range(3):
        a @ b
    _synchronize(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
        if count % 16 == 0:
            _synchronize(device)
    _synchronize(device)
    return 2 * size**3 * count / (time.perf_counter() - start) / 1e9


def inference_step(model: nn.Module, batch: torch.Tensor, dtype: torch.dtype | None) -> Callable[[], None]:
    """One forward pass without gradients, under autocast to ``dtype`` when given."""

    def step() -> None:
        with torch.inference_mode(), torch.autocast(batch.device.type, dtype=dtype, enabled=dtype is not None):
            model(batch)

    return step


def training_step(model: nn.Module, batch: torch.Tensor, dtype: torch.dtype | None) -> Callable[[], None]:
    """One AdamW step on cross-entropy over 1000 classes, under autocast to ``dtype`` when given."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    targets = torch.randint(0, 1000, (batch.shape[0],), device=batch.device)

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
    _synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for round_index in range(rounds):
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in order:
            start = time.perf_counter()
            for _ in range(repeats):
                steps[name]()
            _synchronize(device)
            times[name].append((time.perf_counter() - start) / repeats)
    return times


@dataclasses.dataclass
class Row:
    """One measured case: images per second (median) for every model that ran, and why the others failed."""

    case: str
    batch: int
    img_per_s: dict[str, float]
    failed: dict[str, str] = dataclasses.field(default_factory=dict)

    def ratio(self, model: str = "swinkit") -> float | None:
        """``model``'s speed over the fastest peer's (None when it or every peer failed)."""
        peers = [v for k, v in self.img_per_s.items() if k in PEERS]
        if model not in self.img_per_s or not peers:
            return None
        return self.img_per_s[model] / max(peers)


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


def _resident_mb() -> float:
    """This process's resident memory now, in MB (Linux; elsewhere its peak so far)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_worker(
    name: str, grad_checkpointing: bool, batch_size: int = 8, device: torch.device = CPU
) -> dict[str, float]:
    """Memory of training steps (``batch_size`` images, AdamW) of ``name``'s Swin-T, in MB.

    ``peak_rss``: the peak memory added by two steps (gradients, optimiser state,
    activations, temporaries): resident memory on a CPU, the CUDA allocator's on a GPU;
    ``activations``: what a forward pass saves for backward.
    """
    model = build(name, grad_checkpointing=grad_checkpointing).train().to(device)
    batch = torch.randn(batch_size, 3, 224, 224, device=device)
    step = training_step(model, batch, None)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device) / 2**20
    else:
        before = _resident_mb()
    step()
    step()
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20 - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    return {"peak_rss": peak, "activations": saved_activations(model, batch)}


def measure_memory(
    name: str, grad_checkpointing: bool = False, batch_size: int = 8, device: torch.device = CPU
) -> dict[str, float]:
    """:func:`memory_worker` in a fresh process on a CPU (the peak RSS cannot be reset in one); in this one on a GPU."""
    if device.type == "cuda":
        result = memory_worker(name, grad_checkpointing, batch_size, device)
        torch.cuda.empty_cache()
        return result
    command = [sys.executable, "-m", "swinkit.benchmark", "--memory-worker", name, "--batch", str(batch_size)]
    if grad_checkpointing:
        command.append("--grad-checkpointing")
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def machine() -> dict[str, object]:
    """What the numbers were measured on."""
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


def _versions() -> dict[str, str]:
    versions = {"swinkit": swinkit.__version__}
    for module in ("timm", "torchvision", "transformers"):
        versions[module] = __import__(module).__version__
    return versions


def _precision_models(models: dict[str, nn.Module], precision: str, check: torch.Tensor) -> tuple[dict, dict, dict]:
    """Each model converted with :func:`apply_precision`; those that fail to convert or to run are set apart.

    Returns the converted models, ``{name: error}`` for the failures, and each converted
    model's largest absolute logit difference from its own float32 version on ``check``.
    """
    converted, failed, differences = {}, {}, {}
    for name, model in models.items():
        try:
            candidate = apply_precision(model, precision).eval()
            with torch.inference_mode():
                low = candidate(check.to(next(candidate.parameters()).dtype)).float()
                differences[name] = (low - model(check)).abs().max().item()
        except (TypeError, RuntimeError, ValueError, NotImplementedError) as error:  # a result, reported as such
            failed[name] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            continue
        converted[name] = candidate
    return converted, failed, differences


def run(args: argparse.Namespace) -> dict[str, object]:
    """Measure everything ``args`` asks for; returns the results (also printed as it goes)."""
    device = torch.device(args.device)
    batch_size = args.batch
    # Memory first, in fresh processes: after torch.compile has run here, children started from
    # this process show a far larger resident set for every model alike.
    memory = {}
    if args.memory:
        memory = {name: measure_memory(name, batch_size=batch_size, device=device) for name in MODELS}
        memory["swinkit, gradient checkpointing"] = measure_memory("swinkit", True, batch_size, device)
        for key, label in (("peak_rss", _peak_label(device)), ("activations", "activations saved for backward")):
            lowest = min(memory[name][key] for name in PEERS)
            values = ", ".join(f"{name} {value[key]:.0f}" for name, value in memory.items())
            print(
                f"training step (batch {batch_size}, AdamW), {label}, MB: {values}; swinkit / lowest peer "
                f"{memory['swinkit'][key] / lowest:.2f}, with checkpointing / without "
                f"{memory['swinkit, gradient checkpointing'][key] / memory['swinkit'][key]:.2f}"
            )

    torch.manual_seed(0)
    reference = swinkit.create_model("swin_t").eval()
    models = {name: build(name, reference).eval() for name in MODELS}
    check = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        expected = models["swinkit"](check)
        differences = {name: (model(check) - expected).abs().max().item() for name, model in models.items()}
    print(
        "max |logits - swinkit's| with identical weights: " + ", ".join(f"{k} {v:.1e}" for k, v in differences.items())
    )
    precision_differences = {}
    int8_models: dict[str, nn.Module] = {}
    int8_failed: dict[str, str] = {}
    if device.type == "cpu" and args.int8:
        int8_models, int8_failed, precision_differences["int8"] = _precision_models(models, "int8", check)
    if args.bf16:
        bf16_models, bf16_failed, precision_differences["bf16 weights"] = _precision_models(models, "bf16", check)
    for precision, values in precision_differences.items():
        print(f"max |logits {precision} - own fp32 logits|: " + ", ".join(f"{k} {v:.1e}" for k, v in values.items()))
    for name, error in {**int8_failed, **(bf16_failed if args.bf16 else {})}.items():
        print(f"{name} fails: {error}")

    matmul_size = 4096 if device.type == "cuda" else 2048
    matmul_seconds = 0.5 if args.quick else 2.0
    rates = {
        "fp32": matmul_rate(torch.float32, matmul_size, matmul_seconds, device),
        "bf16": matmul_rate(torch.bfloat16, matmul_size, matmul_seconds, device),
    }
    flops_per_image = 2 * count_flops("swin_t").total
    print(f"matrix multiply: fp32 {rates['fp32']:.0f} GFLOP/s, bf16 {rates['bf16']:.0f} GFLOP/s")

    for model in models.values():
        model.to(device)
    if args.bf16:
        for model in bf16_models.values():
            model.to(device)
    warmup = 3 if device.type == "cuda" else 1
    rows: list[Row] = []
    # (label, batch, kind, autocast dtype, models to time, models that failed)
    cases: list[tuple[str, int, str, torch.dtype | None, dict[str, nn.Module], dict[str, str]]] = [
        ("inference fp32", size, "inference", None, models, {}) for size in sorted({1, batch_size})
    ]
    cases.append(("training step fp32", batch_size, "training", None, models, {}))
    if args.bf16:
        cases += [
            ("inference bf16", batch_size, "inference", torch.bfloat16, models, {}),
            ("training step bf16", batch_size, "training", torch.bfloat16, models, {}),
            ("inference bf16 weights", batch_size, "inference", None, bf16_models, bf16_failed),
        ]
    if device.type == "cpu" and args.int8:
        cases.append(("inference int8", batch_size, "inference", None, int8_models, int8_failed))
    for label, size, kind, dtype, chosen, failed in cases:
        input_dtype = torch.bfloat16 if "bf16 weights" in label else torch.float32
        batch = torch.randn(size, 3, 224, 224, device=device, dtype=input_dtype)
        steps = {}
        for name, model in chosen.items():
            if kind == "training":
                steps[name] = training_step(build(name, reference).train().to(device), batch, dtype)
            else:
                steps[name] = inference_step(model, batch, dtype)
        repeats = max(1, args.repeats // size) if kind == "inference" else 1
        times = interleaved(steps, args.rounds, repeats, device, warmup)
        row = Row(label, size, {name: size / statistics.median(t) for name, t in times.items()}, dict(failed))
        rows.append(row)
        print(_format_row(row, rates, flops_per_image))
        if kind == "training" and device.type == "cuda":
            torch.cuda.empty_cache()

    if args.compile:
        batch = torch.randn(batch_size, 3, 224, 224, device=device)
        compiled = {name: torch.compile(model) for name, model in models.items()}
        times = interleaved(
            {name: inference_step(m, batch, None) for name, m in compiled.items()}, args.rounds, 1, device, warmup
        )
        row = Row(
            "inference fp32, torch.compile",
            batch_size,
            {name: batch_size / statistics.median(t) for name, t in times.items()},
        )
        rows.append(row)
        print(_format_row(row, rates, flops_per_image))

    speedups = _speedups(rows)
    for label, value in speedups.items():
        print(f"swinkit {label}: {value:.2f}x")
    growth = _growth(models["swinkit"], args.rounds, device)
    print(
        f"time per image 448 / 224: {growth['measured']:.2f} (window attention, Eq. 2, counts {growth['eq2']:.2f}; "
        f"global attention, Eq. 1, would count {growth['eq1']:.2f})"
    )
    return {
        "machine": machine(),
        "device": device.type,
        "versions": _versions(),
        "logit_differences": differences,
        "precision_logit_differences": precision_differences,
        "matmul_gflops": rates,
        "rows": [dataclasses.asdict(row) | {"ratio_to_fastest_peer": row.ratio()} for row in rows],
        "swinkit_speedups": speedups,
        "peak_memory_mb": memory,
        "memory_batch": batch_size,
        "growth_448_over_224": growth,
    }


def _speedups(rows: list[Row]) -> dict[str, float]:
    """swinkit's lower-precision rows over its fp32 inference at the same batch."""
    fp32 = {row.batch: row.img_per_s["swinkit"] for row in rows if row.case == "inference fp32"}
    return {
        f"{row.case} / fp32 (batch {row.batch})": row.img_per_s["swinkit"] / fp32[row.batch]
        for row in rows
        if row.case in ("inference int8", "inference bf16", "inference bf16 weights")
        and "swinkit" in row.img_per_s
        and row.batch in fp32
    }


def _peak_label(device: torch.device) -> str:
    return "peak CUDA memory allocated added" if device.type == "cuda" else "peak resident memory added"


def _growth(model: nn.Module, rounds: int, device: torch.device = CPU) -> dict[str, float]:
    small = torch.randn(2, 3, 224, 224, device=device)
    large = torch.randn(2, 3, 448, 448, device=device)
    times = interleaved(
        {"224": inference_step(model, small, None), "448": inference_step(model, large, None)}, rounds, 1, device
    )
    return {
        "measured": statistics.median(times["448"]) / statistics.median(times["224"]),
        "eq2": count_flops("swin_t", 448).total / count_flops("swin_t", 224).total,
        "eq1": flops_table("swin_t", 448).global_total / flops_table("swin_t", 224).global_total,
    }


def _utilisation(case: str, img_per_s: float, rates: dict[str, float], flops_per_image: float) -> float | None:
    """Percent of the machine's matmul rate: forward FLOPs per image, times 3 for a training step.

    bf16 rows count against the bf16 rate, fp32 rows against fp32's; None for int8, whose
    integer products have no measured rate here.
    """
    if "int8" in case:
        return None
    rate = rates["bf16" if "bf16" in case else "fp32"]
    return 100 * img_per_s * flops_per_image * (3 if "training" in case else 1) / (rate * 1e9)


def _format_row(row: Row, rates: dict[str, float], flops_per_image: float) -> str:
    parts = []
    for name, value in row.img_per_s.items():
        utilisation = _utilisation(row.case, value, rates, flops_per_image)
        share = "" if utilisation is None else f" ({utilisation:4.1f}% of matmul rate)"
        parts.append(f"{name} {value:6.2f} img/s{share}")
    parts += [f"{name} fails" for name in row.failed]
    ratio = row.ratio()
    ending = f"  -> swinkit / fastest peer {ratio:.2f}x" if ratio is not None else ""
    return f"{row.case}, batch {row.batch}: " + "; ".join(parts) + ending


def to_markdown(results: dict[str, object]) -> str:
    """The results as the Markdown table the README quotes."""
    machine_info = results["machine"]
    device = results.get("device", "cpu")
    lines = [
        f"Machine: {machine_info['cpu']}, {machine_info['cores']} cores, {machine_info['threads']} threads, "
        f"torch {machine_info['torch']}"
        + (f", GPU {machine_info['gpu']} (CUDA {machine_info.get('cuda')})" if machine_info.get("gpu") else "")
        + f"; measured on {device}",
        "",
        "| case | batch | swinkit | timm | torchvision | transformers | swinkit / fastest peer |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    failures: dict[str, str] = {}
    for row in results["rows"]:
        speeds, failed = row["img_per_s"], row.get("failed", {})
        cells = [f"{speeds[name]:.2f}" if name in speeds else "fails" for name in MODELS]
        ratio = row["ratio_to_fastest_peer"]
        lines.append(
            f"| {row['case']} | {row['batch']} | "
            + " | ".join(cells)
            + f" | {'-' if ratio is None else f'{ratio:.2f}x'} |"
        )
        for name, error in failed.items():
            failures[f"{name}, {row['case']}"] = error
    lines.append("")
    flops_per_image = 2 * count_flops("swin_t").total
    rates = results["matmul_gflops"]
    lines.append(
        f"Images per second, medians of interleaved rounds. Matrix-multiply rate of the machine: fp32 "
        f"{rates['fp32']:.0f} GFLOP/s, bf16 {rates['bf16']:.0f} GFLOP/s; Swin-T is {flops_per_image / 1e9:.2f} "
        f"G floating-point operations per image forward (a training step about 3 times that), so swinkit's rows "
        f"use this share of the rate: "
        + ", ".join(
            f"{row['case']} (batch {row['batch']}) "
            f"{_utilisation(row['case'], row['img_per_s']['swinkit'], rates, flops_per_image):.0f}%"
            for row in results["rows"]
            if "swinkit" in row["img_per_s"] and "int8" not in row["case"]
        )
        + "."
    )
    notes = []
    if any(row["case"] in ("inference int8", "inference bf16 weights") for row in results["rows"]):
        notes.append(
            "`bf16` rows run under bfloat16 autocast; `bf16 weights` is the whole model in bfloat16 and `int8` "
            "dynamic quantization of every Linear layer (`torch.ao.quantization.quantize_dynamic`, x86), both "
            "applied to every model alike by `swinkit.precision.apply_precision`."
        )
        for precision, values in results.get("precision_logit_differences", {}).items():
            notes.append(
                f"Max |logits {precision} - the model's own fp32 logits|: "
                + ", ".join(f"{name} {value:.1e}" for name, value in values.items())
                + "."
            )
    speedups = results.get("swinkit_speedups", {})
    if speedups:
        notes.append("swinkit " + ", ".join(f"{label}: {value:.2f}x" for label, value in speedups.items()) + ".")
    notes += [f"Fails ({label}): `{error}`." for label, error in failures.items()]
    for note in notes:
        lines += ["", note]
    memory = results["peak_memory_mb"]
    if memory:
        batch = results.get("memory_batch", 8)
        lines += ["", f"| training step (batch {batch}, AdamW), MB | " + " | ".join(memory) + " |"]
        lines.append("| --- |" + " --- |" * len(memory))
        for key, label in (
            ("peak_rss", _peak_label(torch.device(device))),
            ("activations", "activations saved for backward"),
        ):
            lines.append(f"| {label} | " + " | ".join(f"{value[key]:.0f}" for value in memory.values()) + " |")
    growth = results["growth_448_over_224"]
    lines.append("")
    lines.append(
        f"Time per image at 448 over 224: {growth['measured']:.2f} measured; Eq. 2 (windows) counts {growth['eq2']:.2f}, "
        f"Eq. 1 (global attention) would count {growth['eq1']:.2f}."
    )
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Swin-T (or V2-T) speed and memory: swinkit against timm, torchvision, transformers."
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to measure (default cpu)")
    parser.add_argument("--batch", type=int, help="batch of the inference and training rows (default 8; 64 on cuda)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per case (default 7; 3 with --quick)")
    parser.add_argument("--repeats", type=int, default=8, help="images per timed inference call group (default 8)")
    parser.add_argument("--quick", action="store_true", help="few rounds and a short matmul measurement")
    parser.add_argument("--bf16", action="store_true", help="also measure bf16 autocast and bf16 weights")
    parser.add_argument(
        "--no-int8", dest="int8", action="store_false", help="skip the int8 row (it runs on the CPU only)"
    )
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory measurement")
    parser.add_argument("--output", default="benchmarks/results", help="folder for the JSON and Markdown results")
    parser.add_argument(
        "--tag",
        help="results file name (default cpu, gpu with --device cuda; swinv2_t-cpu or swinv2_t-cuda with --model swinv2_t)",
    )
    parser.add_argument(
        "--model", choices=("swin_t", "swinv2_t"), default="swin_t", help="Swin-T at 224, or Swin V2-T at 256"
    )
    parser.add_argument("--memory-worker", help=argparse.SUPPRESS)
    parser.add_argument("--grad-checkpointing", action="store_true", help=argparse.SUPPRESS)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The options, with the defaults that depend on the device and ``--quick`` filled in."""
    args = build_parser().parse_args(argv)
    if args.batch is None:
        args.batch = 64 if args.device == "cuda" else 8
    if args.rounds is None:
        args.rounds = 3 if args.quick else 7
    if args.tag is None and args.model == "swin_t":
        args.tag = "gpu" if args.device == "cuda" else "cpu"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.model == "swinv2_t":
        from swinkit import benchmark_v2

        return benchmark_v2.main(args)
    if args.memory_worker:
        print(json.dumps(memory_worker(args.memory_worker, args.grad_checkpointing, args.batch)))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here")
    results = run(args)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / f"{args.tag}.json").write_text(json.dumps(results, indent=2) + "\n")
    (output / f"{args.tag}.md").write_text(to_markdown(results))
    print(f"wrote {output / (args.tag + '.json')} and {output / (args.tag + '.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
