"""Speed and memory of swinkit against timm, torchvision and transformers, in one process.

Every model is Swin-T with the same weights (swinkit's, converted to each peer's layout),
checked to give the same logits before anything is timed. Timed runs are interleaved:
each round times every model once, in rotating order, and the medians over rounds are
reported with their ratio to the fastest peer. Peak memory of a training step is read
from a fresh process per model (the peak resident set size, which one process cannot
reset), started from this module. The peers are test extras (``pip install
swinkit[test]``); they are imported only here.

Run ``python benchmarks/bench_models.py`` (or ``swinkit bench``); ``--help`` for options.
``--model swinv2_t`` measures Swin V2-T instead, on the CPU or ``--device cuda``
(:mod:`swinkit.benchmark_v2`).
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
from swinkit.viz.flops import flops_table

PEERS = ("timm", "torchvision", "transformers")
#: Stochastic depth of every model, as in Swin-T's ImageNet recipe (it costs time in training).
DROP_PATH = 0.2
MODELS = ("swinkit", *PEERS)


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


def matmul_rate(dtype: torch.dtype, size: int = 2048, seconds: float = 2.0) -> float:
    """Measured multiply-add rate of a square matrix product, in GFLOP/s (2 floating-point ops each)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    for _ in range(3):
        a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - start) / 1e9


def _inference_step(model: nn.Module, batch: torch.Tensor, dtype: torch.dtype | None) -> Callable[[], None]:
    def step() -> None:
        with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            model(batch)

    return step


def _training_step(model: nn.Module, batch: torch.Tensor, dtype: torch.dtype | None) -> Callable[[], None]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    targets = torch.randint(0, 1000, (batch.shape[0],))

    def step() -> None:
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            loss = nn.functional.cross_entropy(model(batch), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def interleaved(steps: dict[str, Callable[[], None]], rounds: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each step: ``rounds`` rounds, each timing every step ``repeats`` times, order rotating."""
    for step in steps.values():
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for round_index in range(rounds):
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in order:
            start = time.perf_counter()
            for _ in range(repeats):
                steps[name]()
            times[name].append((time.perf_counter() - start) / repeats)
    return times


@dataclasses.dataclass
class Row:
    """One measured case: images per second (median) for every model, plus notes."""

    case: str
    batch: int
    img_per_s: dict[str, float]

    def ratio(self, model: str = "swinkit") -> float:
        """``model``'s speed over the fastest peer's."""
        fastest = max(v for k, v in self.img_per_s.items() if k in PEERS)
        return self.img_per_s[model] / fastest


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


def memory_worker(name: str, grad_checkpointing: bool) -> dict[str, float]:
    """Memory of training steps (batch 8, AdamW) of ``name``'s Swin-T, in MB.

    ``peak_rss``: the peak resident memory added by two steps (gradients, optimiser state,
    activations, temporaries); ``activations``: what a forward pass saves for backward.
    """
    model = build(name, grad_checkpointing=grad_checkpointing).train()
    batch = torch.randn(8, 3, 224, 224)
    step = _training_step(model, batch, None)
    before = _resident_mb()
    step()
    step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    return {"peak_rss": peak, "activations": saved_activations(model, batch)}


def measure_memory(name: str, grad_checkpointing: bool = False) -> dict[str, float]:
    """Run :func:`memory_worker` in a fresh process (the peak RSS cannot be reset in one)."""
    command = [sys.executable, "-m", "swinkit.benchmark", "--memory-worker", name]
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
    }


def _versions() -> dict[str, str]:
    versions = {"swinkit": swinkit.__version__}
    for module in ("timm", "torchvision", "transformers"):
        versions[module] = __import__(module).__version__
    return versions


def run(args: argparse.Namespace) -> dict[str, object]:
    """Measure everything ``args`` asks for; returns the results (also printed as it goes)."""
    # Memory first, in fresh processes: after torch.compile has run here, children started from
    # this process show a far larger resident set for every model alike.
    memory = {}
    if args.memory:
        memory = {name: measure_memory(name) for name in MODELS}
        memory["swinkit, gradient checkpointing"] = measure_memory("swinkit", grad_checkpointing=True)
        for key, label in (
            ("peak_rss", "peak resident memory added"),
            ("activations", "activations saved for backward"),
        ):
            lowest = min(memory[name][key] for name in PEERS)
            values = ", ".join(f"{name} {value[key]:.0f}" for name, value in memory.items())
            print(
                f"training step (batch 8, AdamW), {label}, MB: {values}; swinkit / lowest peer "
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

    rates = {"fp32": matmul_rate(torch.float32), "bf16": matmul_rate(torch.bfloat16)}
    flops_per_image = 2 * count_flops("swin_t").total
    print(f"matrix multiply: fp32 {rates['fp32']:.0f} GFLOP/s, bf16 {rates['bf16']:.0f} GFLOP/s")

    rows: list[Row] = []
    cases: list[tuple[str, int, str, torch.dtype | None]] = [
        ("inference fp32", 1, "inference", None),
        ("inference fp32", 8, "inference", None),
        ("training step fp32", 8, "training", None),
    ]
    if args.bf16:
        cases += [
            ("inference bf16", 8, "inference", torch.bfloat16),
            ("training step bf16", 8, "training", torch.bfloat16),
        ]
    for label, batch_size, kind, dtype in cases:
        batch = torch.randn(batch_size, 3, 224, 224)
        steps = {}
        for name in MODELS:
            model = models[name]
            if kind == "training":
                model = build(name, reference).train()
                steps[name] = _training_step(model, batch, dtype)
            else:
                steps[name] = _inference_step(model, batch, dtype)
        repeats = max(1, args.repeats // batch_size) if kind == "inference" else 1
        times = interleaved(steps, args.rounds, repeats)
        row = Row(label, batch_size, {name: batch_size / statistics.median(t) for name, t in times.items()})
        rows.append(row)
        print(_format_row(row, rates, flops_per_image))

    if args.compile:
        batch = torch.randn(8, 3, 224, 224)
        compiled = {name: torch.compile(model) for name, model in models.items()}
        times = interleaved({name: _inference_step(m, batch, None) for name, m in compiled.items()}, args.rounds, 1)
        row = Row("inference fp32, torch.compile", 8, {name: 8 / statistics.median(t) for name, t in times.items()})
        rows.append(row)
        print(_format_row(row, rates, flops_per_image))

    growth = _growth(models["swinkit"], args.rounds)
    print(
        f"time per image 448 / 224: {growth['measured']:.2f} (window attention, Eq. 2, counts {growth['eq2']:.2f}; "
        f"global attention, Eq. 1, would count {growth['eq1']:.2f})"
    )
    return {
        "machine": machine(),
        "versions": _versions(),
        "logit_differences": differences,
        "matmul_gflops": rates,
        "rows": [dataclasses.asdict(row) | {"ratio_to_fastest_peer": row.ratio()} for row in rows],
        "peak_memory_mb": memory,
        "growth_448_over_224": growth,
    }


def _growth(model: nn.Module, rounds: int) -> dict[str, float]:
    small, large = torch.randn(2, 3, 224, 224), torch.randn(2, 3, 448, 448)
    times = interleaved(
        {"224": _inference_step(model, small, None), "448": _inference_step(model, large, None)}, rounds, 1
    )
    return {
        "measured": statistics.median(times["448"]) / statistics.median(times["224"]),
        "eq2": count_flops("swin_t", 448).total / count_flops("swin_t", 224).total,
        "eq1": flops_table("swin_t", 448).global_total / flops_table("swin_t", 224).global_total,
    }


def _utilisation(case: str, img_per_s: float, rates: dict[str, float], flops_per_image: float) -> float:
    """Percent of the machine's matmul rate: forward FLOPs per image, times 3 for a training step."""
    rate = rates["bf16" if "bf16" in case else "fp32"]
    return 100 * img_per_s * flops_per_image * (3 if "training" in case else 1) / (rate * 1e9)


def _format_row(row: Row, rates: dict[str, float], flops_per_image: float) -> str:
    parts = []
    for name, value in row.img_per_s.items():
        utilisation = _utilisation(row.case, value, rates, flops_per_image)
        parts.append(f"{name} {value:6.2f} img/s ({utilisation:4.1f}% of matmul rate)")
    return f"{row.case}, batch {row.batch}: " + "; ".join(parts) + f"  -> swinkit / fastest peer {row.ratio():.2f}x"


def to_markdown(results: dict[str, object]) -> str:
    """The results as the Markdown table the README quotes."""
    machine_info = results["machine"]
    lines = [
        f"Machine: {machine_info['cpu']}, {machine_info['cores']} cores, {machine_info['threads']} threads, "
        f"torch {machine_info['torch']}" + (f", GPU {machine_info['gpu']}" if machine_info.get("gpu") else ""),
        "",
        "| case | batch | swinkit | timm | torchvision | transformers | swinkit / fastest peer |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in results["rows"]:
        speeds = row["img_per_s"]
        lines.append(
            f"| {row['case']} | {row['batch']} | "
            + " | ".join(f"{speeds[name]:.2f}" for name in MODELS)
            + f" | {row['ratio_to_fastest_peer']:.2f}x |"
        )
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
        )
        + "."
    )
    memory = results["peak_memory_mb"]
    if memory:
        lines += ["", "| training step (batch 8, AdamW), MB | " + " | ".join(memory) + " |"]
        lines.append("| --- |" + " --- |" * len(memory))
        for key, label in (
            ("peak_rss", "peak resident memory added"),
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
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds per case (default 7)")
    parser.add_argument("--repeats", type=int, default=8, help="images per timed inference call group (default 8)")
    parser.add_argument("--bf16", action="store_true", help="also measure bf16 autocast")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory processes")
    parser.add_argument("--output", default="benchmarks/results", help="folder for the JSON and Markdown results")
    parser.add_argument(
        "--tag", help="results file name (default cpu; swinv2_t-cpu or swinv2_t-cuda with --model swinv2_t)"
    )
    parser.add_argument(
        "--model", choices=("swin_t", "swinv2_t"), default="swin_t", help="Swin-T at 224, or Swin V2-T at 256"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cuda: --model swinv2_t only")
    parser.add_argument("--memory-worker", help=argparse.SUPPRESS)
    parser.add_argument("--grad-checkpointing", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.model == "swinv2_t":
        from swinkit import benchmark_v2

        return benchmark_v2.main(args)
    if args.device != "cpu":
        raise ValueError("the Swin-T benchmark measures the CPU; --device cuda is for --model swinv2_t")
    args.tag = args.tag or "cpu"
    if args.memory_worker:
        print(json.dumps(memory_worker(args.memory_worker, args.grad_checkpointing)))
        return 0
    results = run(args)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / f"{args.tag}.json").write_text(json.dumps(results, indent=2) + "\n")
    (output / f"{args.tag}.md").write_text(to_markdown(results))
    print(f"wrote {output / (args.tag + '.json')} and {output / (args.tag + '.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
