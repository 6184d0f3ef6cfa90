"""Swin V2-T at 256 (window 8): swinkit against timm, torchvision and transformers, on a CPU or a GPU.

The V2 part of :mod:`swinkit.benchmark` (``--model swinv2_t``), measured the same way as the
V1 benchmark: every model holds the same weights (swinkit's, off their initial values, written
into each peer's layout by swinkit's converters, or by the one reshape torchvision needs),
gives the same logits before anything is timed, and timed runs are interleaved (each round
times every model once, order rotating; medians reported with the ratio to the fastest peer).
Cases: fp32 inference at batch 1 and ``--batch`` (8 on a CPU, 64 on a GPU), an fp32 training step (AdamW) at that batch, and with
``--bf16`` the same under bf16 autocast; ``--compile`` adds torch.compile inference.
Memory of a training step: on a CPU the peak resident memory of a fresh process per model
(as the V1 benchmark), on a GPU the peak allocated memory. Nothing is downloaded: all weights
are random.

Peers: ``timm.create_model("swinv2_tiny_window8_256")``, ``torchvision.models.swin_v2_t()``
and ``transformers.Swinv2ForImageClassification`` (swinkit's Hugging Face export read by
``from_pretrained``). Stochastic depth 0.2 everywhere (Swin V2-T's recipe).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

import swinkit
from swinkit.benchmark import (
    PEERS,
    Row,
    _LogitsOnly,
    _resident_mb,
    _versions,
    inference_step,
    interleaved,
    machine,
    matmul_rate,
    saved_activations,
    training_step,
)
from swinkit.checkpoints import timm as timm_format
from swinkit.checkpoints import torchvision as torchvision_format
from swinkit.checkpoints.layout import rename_from_native
from swinkit.model import ops
from swinkit.model.flops import count_flops

#: The V2 variant measured, its input side, and its peers' names for the same architecture.
VARIANT = "swinv2_t"
IMG_SIZE = 256
TIMM_NAME = "swinv2_tiny_window8_256"
#: Stochastic depth of every model (Swin V2-T's recipe, and torchvision's ``swin_v2_t`` default).
DROP_PATH = 0.2
MODELS = ("swinkit", *PEERS)


def reference_model(seed: int = 0) -> nn.Module:
    """swinkit's V2-T with every parameter moved off its initial value (its post-norms start at zero)."""
    torch.manual_seed(seed)
    model = swinkit.create_model(VARIANT, drop_path_rate=DROP_PATH)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    return model


def torchvision_weights(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A swinkit V2 state dict in torchvision's layout: the q and v biases folded into one 3C ``qkv.bias``."""
    folded = {}
    for key, tensor in state_dict.items():
        if key.endswith(".attn.v_bias"):
            continue
        if key.endswith(".attn.q_bias"):
            block = key.removesuffix(".q_bias")
            folded[f"{block}.qkv.bias"] = ops.qv_bias(tensor, state_dict[f"{block}.v_bias"])
        else:
            folded[key] = tensor
    return rename_from_native(folded, torchvision_format.LAYOUT)


def build(name: str, reference: nn.Module | None = None, grad_checkpointing: bool = False) -> nn.Module:
    """Swin V2-T from ``name``'s library, with ``reference``'s weights (a swinkit model) when given."""
    torch.manual_seed(0)
    if name == "swinkit":
        model = swinkit.create_model(VARIANT, drop_path_rate=DROP_PATH)
        model.set_grad_checkpointing(grad_checkpointing)
        if reference is not None:
            model.load_state_dict(reference.state_dict())
        return model
    if name == "transformers":
        import transformers

        with tempfile.TemporaryDirectory() as folder:
            swinkit.save_pretrained(reference if reference is not None else reference_model(), folder, format="hf")
            return _LogitsOnly(
                transformers.Swinv2ForImageClassification.from_pretrained(folder, drop_path_rate=DROP_PATH)
            )
    state = (reference if reference is not None else reference_model()).state_dict()
    if name == "timm":
        import timm

        model = timm.create_model(TIMM_NAME, drop_path_rate=DROP_PATH)
        weights = timm_format.from_native(state)
    elif name == "torchvision":
        import torchvision

        model = torchvision.models.swin_v2_t()  # stochastic depth 0.2 built in
        weights = torchvision_weights(state)
    else:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    real_missing = [k for k in missing if not k.endswith(("relative_position_index", "relative_coords_table"))]
    if real_missing or unexpected:
        raise RuntimeError(f"{name}: weights did not map: missing {real_missing[:5]}, unexpected {unexpected[:5]}")
    return model


def memory_worker(name: str, grad_checkpointing: bool, device: str = "cpu") -> dict[str, float]:
    """Memory of training steps (batch 8, AdamW) of ``name``'s V2-T, in MB.

    ``peak``: on a CPU the peak resident memory added by two steps (run in a fresh process,
    see :func:`measure_memory`), on a GPU the peak allocated memory above the weights';
    ``activations``: what a forward pass saves for backward.
    """
    where = torch.device(device)
    model = build(name, grad_checkpointing=grad_checkpointing).to(where).train()
    batch = torch.randn(8, 3, IMG_SIZE, IMG_SIZE, device=where)
    step = training_step(model, batch, None)
    if where.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(where)
        before = torch.cuda.memory_allocated(where)
        step()
        step()
        peak = (torch.cuda.max_memory_allocated(where) - before) / 2**20
    else:
        import resource

        before = _resident_mb()
        step()
        step()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    return {"peak": peak, "activations": saved_activations(model, batch)}


def measure_memory(name: str, device: str, grad_checkpointing: bool = False) -> dict[str, float]:
    """:func:`memory_worker` in a fresh process (a process's peak resident memory cannot be reset)."""
    command = [sys.executable, "-m", "swinkit.benchmark", "--model", VARIANT, "--device", device]
    command += ["--memory-worker", name] + (["--grad-checkpointing"] if grad_checkpointing else [])
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def _format_row(row: Row, rate: float, flops_per_image: float) -> str:
    parts = []
    for name, value in row.img_per_s.items():
        share = 100 * value * flops_per_image * (3 if "training" in row.case else 1) / (rate * 1e9)
        parts.append(f"{name} {value:7.2f} img/s ({share:4.1f}% of matmul rate)")
    return f"{row.case}, batch {row.batch}: " + "; ".join(parts) + f"  -> swinkit / fastest peer {row.ratio():.2f}x"


def run(args: argparse.Namespace) -> dict[str, object]:
    """Measure V2-T as ``args`` asks (``--device``, ``--bf16``, ``--compile``, ``--rounds``, ``--repeats``, memory)."""
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available; use --device cpu")
    memory: dict[str, dict[str, float]] = {}
    if args.memory:
        memory = {name: measure_memory(name, args.device) for name in MODELS}
        memory["swinkit, gradient checkpointing"] = measure_memory("swinkit", args.device, grad_checkpointing=True)
        kind = "peak allocated" if device.type == "cuda" else "peak resident memory added"
        for key, label in (("peak", kind), ("activations", "activations saved for backward")):
            lowest = min(memory[name][key] for name in PEERS)
            values = ", ".join(f"{name} {value[key]:.0f}" for name, value in memory.items())
            print(
                f"training step (batch 8, AdamW), {label}, MB: {values}; swinkit / lowest peer "
                f"{memory['swinkit'][key] / lowest:.2f}"
            )

    reference = reference_model().eval()
    models = {name: build(name, reference).to(device).eval() for name in MODELS}
    check = torch.randn(2, 3, IMG_SIZE, IMG_SIZE, device=device)
    with torch.inference_mode():
        expected = models["swinkit"](check)
        differences = {name: (model(check) - expected).abs().max().item() for name, model in models.items()}
    listed = ", ".join(f"{k} {v:.1e}" for k, v in differences.items())
    print(f"max |logits - swinkit's| with identical weights: {listed}")

    rates = {"fp32": matmul_rate(torch.float32, device=device), "bf16": matmul_rate(torch.bfloat16, device=device)}
    flops_per_image = 2 * count_flops(VARIANT).total
    print(f"matrix multiply on {device}: fp32 {rates['fp32']:.0f} GFLOP/s, bf16 {rates['bf16']:.0f} GFLOP/s")
    cases: list[tuple[str, int, str, torch.dtype | None]] = [
        ("inference fp32", 1, "inference", None),
        ("inference fp32", args.batch, "inference", None),
        ("training step fp32", args.batch, "training", None),
    ]
    if args.bf16:
        cases += [
            ("inference bf16", args.batch, "inference", torch.bfloat16),
            ("training step bf16", args.batch, "training", torch.bfloat16),
        ]
    rows: list[Row] = []
    for label, batch_size, kind, dtype in cases:
        batch = torch.randn(batch_size, 3, IMG_SIZE, IMG_SIZE, device=device)
        steps = {}
        for name in MODELS:
            if kind == "training":
                steps[name] = training_step(build(name, reference).to(device).train(), batch, dtype)
            else:
                steps[name] = inference_step(models[name], batch, dtype)
        repeats = max(1, args.repeats // batch_size) if kind == "inference" else 1
        times = interleaved(steps, args.rounds, repeats, device)
        row = Row(label, batch_size, {name: batch_size / statistics.median(t) for name, t in times.items()})
        rows.append(row)
        print(_format_row(row, rates["bf16" if dtype is not None else "fp32"], flops_per_image))
    if args.compile:
        batch = torch.randn(8, 3, IMG_SIZE, IMG_SIZE, device=device)
        compiled = {name: inference_step(torch.compile(model), batch, None) for name, model in models.items()}
        times = interleaved(compiled, args.rounds, 1, device)
        row = Row("inference fp32, torch.compile", 8, {name: 8 / statistics.median(t) for name, t in times.items()})
        rows.append(row)
        print(_format_row(row, rates["fp32"], flops_per_image))
    return {
        "model": VARIANT,
        "timm_name": TIMM_NAME,
        "img_size": IMG_SIZE,
        "device": str(device),
        "machine": machine(),
        "versions": _versions(),
        "logit_differences": differences,
        "matmul_gflops": rates,
        "rows": [dataclasses.asdict(row) | {"ratio_to_fastest_peer": row.ratio()} for row in rows],
        "memory_mb": memory,
    }


def to_markdown(results: dict[str, object]) -> str:
    """The V2 results as the Markdown table the README quotes."""
    info = results["machine"]
    on_gpu = results["device"].startswith("cuda")
    where = f"GPU {info['gpu']}" if on_gpu else f"{info['cpu']}, {info['threads']} threads"
    lines = [
        f"Swin V2-T at {results['img_size']}x{results['img_size']} (window 8; timm `{results['timm_name']}`, "
        f"torchvision `swin_v2_t`, transformers `Swinv2ForImageClassification`), same weights. "
        f"Machine: {where}, torch {info['torch']}.",
        "",
        "| case | batch | " + " | ".join(MODELS) + " | swinkit / fastest peer |",
        "| --- | --- |" + " --- |" * len(MODELS) + " --- |",
    ]
    for row in results["rows"]:
        speeds = row["img_per_s"]
        lines.append(
            f"| {row['case']} | {row['batch']} | "
            + " | ".join(f"{speeds[name]:.2f}" for name in MODELS)
            + f" | {row['ratio_to_fastest_peer']:.2f}x |"
        )
    lines += ["", "Images per second, medians of interleaved rounds."]
    differences = results["logit_differences"]
    lines.append("Max |logits - swinkit's|: " + ", ".join(f"{k} {v:.1e}" for k, v in differences.items()) + ".")
    memory = results["memory_mb"]
    if memory:
        peak = "peak allocated" if results["device"].startswith("cuda") else "peak resident memory added"
        lines += ["", "| training step (batch 8, AdamW), MB | " + " | ".join(memory) + " |"]
        lines.append("| --- |" + " --- |" * len(memory))
        for key, label in (("peak", peak), ("activations", "activations saved for backward")):
            lines.append(f"| {label} | " + " | ".join(f"{value[key]:.0f}" for value in memory.values()) + " |")
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> int:
    """``swinkit.benchmark --model swinv2_t``: measure, print, and write ``{tag}.json`` and ``{tag}.md``.

    The tag defaults to ``swinv2_t-cpu`` or ``swinv2_t-cuda``.
    """
    if args.memory_worker:
        print(json.dumps(memory_worker(args.memory_worker, args.grad_checkpointing, args.device)))
        return 0
    results = run(args)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    tag = args.tag or f"{VARIANT}-{torch.device(args.device).type}"
    (output / f"{tag}.json").write_text(json.dumps(results, indent=2) + "\n")
    (output / f"{tag}.md").write_text(to_markdown(results))
    print(f"wrote {output / (tag + '.json')} and {output / (tag + '.md')}")
    return 0
