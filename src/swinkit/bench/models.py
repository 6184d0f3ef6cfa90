"""Speed and memory of swinkit against timm, torchvision and transformers, in one process: Swin-T or Swin V2-T.

Every model is the same variant with the same weights (swinkit's, moved off their initial
values, written into each peer's layout by swinkit's converters), checked to give the same
logits before anything is timed. Timed runs are interleaved (each round times every model
once, in rotating order), and the medians over rounds are reported with their ratio to the
fastest peer. Lower precisions are applied to every model alike with
:func:`swinkit.precision.apply_precision`: ``int8`` (dynamic quantization of the Linear layers,
CPU only) and ``bf16 weights`` (the whole model in bfloat16); ``bf16`` rows are bfloat16
autocast. A model that fails under a precision is reported as failing, with the error. On a
CPU, peak memory of a training step is read from a fresh process per model (the peak resident
set size, which one process cannot reset); on a GPU from the CUDA allocator's peak. The peers
are test extras (``pip install swinkit[test]``); they are imported only here, and nothing is
downloaded.

``swinkit bench models`` measures Swin-T at 224 (``--help`` for options, ``--device cuda`` on a
GPU, ``--quick`` for few rounds) and writes ``benchmarks/results/cpu.{json,md}`` (``gpu.*`` on
a GPU); ``--model swinv2_t`` (or ``swinkit bench v2``) measures Swin V2-T at 256 (window 8)
against timm's ``swinv2_tiny_window8_256``, torchvision's ``swin_v2_t`` and transformers'
``Swinv2ForImageClassification``, and writes ``swinv2_t-cpu.*`` (``swinv2_t-cuda.*``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
from collections.abc import Sequence

import torch
from torch import nn

import swinkit
from swinkit.bench import measure, tables
from swinkit.checkpoints import timm as timm_format
from swinkit.checkpoints import torchvision as torchvision_format
from swinkit.checkpoints.layout import rename_from_native
from swinkit.model import ops
from swinkit.model.flops import count_flops
from swinkit.precision import apply_precision
from swinkit.viz.flops import flops_table

PEERS = ("timm", "torchvision", "transformers")
MODELS = ("swinkit", *PEERS)
#: Stochastic depth of every model, as in the variants' ImageNet recipes (it costs time in training).
DROP_PATH = 0.2
#: Buffers a peer computes itself rather than storing, absent from swinkit's state dict.
BUILT_BUFFERS = ("relative_position_index", "attn_mask", "relative_coords_table")


@dataclasses.dataclass(frozen=True)
class Variant:
    """One measured architecture, by its name in swinkit and in each peer."""

    name: str
    label: str
    img_size: int
    timm_name: str
    torchvision_name: str
    transformers_class: str
    #: The words opening the Markdown table, before the machine (none for Swin-T, the default).
    heading: str = ""


VARIANTS = {
    "swin_t": Variant("swin_t", "Swin-T", 224, "swin_tiny_patch4_window7_224", "swin_t", "SwinForImageClassification"),
    "swinv2_t": Variant(
        "swinv2_t",
        "Swin V2-T",
        256,
        "swinv2_tiny_window8_256",
        "swin_v2_t",
        "Swinv2ForImageClassification",
        heading="Swin V2-T at 256x256 (window 8; timm `swinv2_tiny_window8_256`, torchvision `swin_v2_t`, "
        "transformers `Swinv2ForImageClassification`), same weights. ",
    ),
}


def reference_model(variant: Variant, seed: int = 0) -> nn.Module:
    """swinkit's ``variant`` with every parameter moved off its initial value (V2's post-norms start at zero)."""
    torch.manual_seed(seed)
    model = swinkit.create_model(variant.name, drop_path_rate=DROP_PATH)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    return model


def torchvision_weights(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A swinkit state dict in torchvision's layout: V2's q and v biases folded into one 3C ``qkv.bias``."""
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


class LogitsOnly(nn.Module):
    """transformers' model returning the logits tensor, like the others."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W) -> (B, classes)``."""
        return self.inner(pixel_values=pixels).logits


def build(name: str, variant: Variant, reference: nn.Module, grad_checkpointing: bool = False) -> nn.Module:
    """``variant`` from ``name``'s library, holding ``reference``'s weights (a swinkit model)."""
    torch.manual_seed(0)
    if name == "swinkit":
        model = swinkit.create_model(variant.name, drop_path_rate=DROP_PATH)
        model.set_grad_checkpointing(grad_checkpointing)
        model.load_state_dict(reference.state_dict())
        return model
    if name == "transformers":
        import transformers

        # The user's path: swinkit's Hugging Face export read by from_pretrained.
        with tempfile.TemporaryDirectory() as folder:
            swinkit.save_pretrained(reference, folder, format="hf")
            kind = getattr(transformers, variant.transformers_class)
            return LogitsOnly(kind.from_pretrained(folder, drop_path_rate=DROP_PATH))
    if name == "timm":
        import timm

        model = timm.create_model(variant.timm_name, drop_path_rate=DROP_PATH)
        weights = timm_format.from_native(reference.state_dict())
    elif name == "torchvision":
        import torchvision

        model = getattr(torchvision.models, variant.torchvision_name)()  # stochastic depth 0.2 built in
        weights = torchvision_weights(reference.state_dict())
    else:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    real_missing = [key for key in missing if not key.endswith(BUILT_BUFFERS)]
    if real_missing or unexpected:
        raise RuntimeError(f"{name}: weights did not map: missing {real_missing[:5]}, unexpected {unexpected[:5]}")
    return model


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


def memory_worker(
    name: str, variant: Variant, grad_checkpointing: bool, batch_size: int = 8, device: torch.device = measure.CPU
) -> dict[str, float]:
    """:func:`swinkit.bench.measure.training_memory` of ``name``'s ``variant`` on ``batch_size`` images, in MB."""
    model = build(name, variant, reference_model(variant), grad_checkpointing).train().to(device)
    batch = torch.randn(batch_size, 3, variant.img_size, variant.img_size, device=device)
    return measure.training_memory(model, batch)


def measure_memory(
    name: str,
    variant: Variant,
    grad_checkpointing: bool = False,
    batch_size: int = 8,
    device: torch.device = measure.CPU,
) -> dict[str, float]:
    """:func:`memory_worker` in a fresh process on a CPU (the peak RSS cannot be reset in one); in this one on a GPU."""
    if device.type == "cuda":
        result = memory_worker(name, variant, grad_checkpointing, batch_size, device)
        torch.cuda.empty_cache()
        return result
    arguments = ["bench", "models", "--model", variant.name, "--memory-worker", name, "--batch", str(batch_size)]
    return measure.worker_result(arguments + (["--grad-checkpointing"] if grad_checkpointing else []))


def versions() -> dict[str, str]:
    """The versions of swinkit and of its peers."""
    found = {"swinkit": swinkit.__version__}
    for module in PEERS:
        found[module] = __import__(module).__version__
    return found


def precision_models(
    models: dict[str, nn.Module], precision: str, check: torch.Tensor
) -> tuple[dict[str, nn.Module], dict[str, str], dict[str, float]]:
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
    variant = VARIANTS[args.model]
    device = torch.device(args.device)
    batch_size, side = args.batch, variant.img_size
    # Memory first, in fresh processes: after torch.compile has run here, children started from
    # this process show a far larger resident set for every model alike.
    memory = {}
    if args.memory:
        memory = {name: measure_memory(name, variant, batch_size=batch_size, device=device) for name in MODELS}
        memory["swinkit, gradient checkpointing"] = measure_memory("swinkit", variant, True, batch_size, device)
        for key, label in (("peak_rss", _peak_label(device)), ("activations", "activations saved for backward")):
            lowest = min(memory[name][key] for name in PEERS)
            values = ", ".join(f"{name} {value[key]:.0f}" for name, value in memory.items())
            print(
                f"training step (batch {batch_size}, AdamW), {label}, MB: {values}; swinkit / lowest peer "
                f"{memory['swinkit'][key] / lowest:.2f}, with checkpointing / without "
                f"{memory['swinkit, gradient checkpointing'][key] / memory['swinkit'][key]:.2f}"
            )

    reference = reference_model(variant).eval()
    models = {name: build(name, variant, reference).eval() for name in MODELS}
    check = torch.randn(2, 3, side, side)
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
        int8_models, int8_failed, precision_differences["int8"] = precision_models(models, "int8", check)
    if args.bf16:
        bf16_models, bf16_failed, precision_differences["bf16 weights"] = precision_models(models, "bf16", check)
    for precision, values in precision_differences.items():
        print(f"max |logits {precision} - own fp32 logits|: " + ", ".join(f"{k} {v:.1e}" for k, v in values.items()))
    for name, error in {**int8_failed, **(bf16_failed if args.bf16 else {})}.items():
        print(f"{name} fails: {error}")

    matmul_size = 4096 if device.type == "cuda" else 2048
    matmul_seconds = 0.5 if args.quick else 2.0
    rates = {
        "fp32": measure.matmul_rate(torch.float32, matmul_size, matmul_seconds, device),
        "bf16": measure.matmul_rate(torch.bfloat16, matmul_size, matmul_seconds, device),
    }
    flops_per_image = 2 * count_flops(variant.name, side).total
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
        batch = torch.randn(size, 3, side, side, device=device, dtype=input_dtype)
        steps = {}
        for name, model in chosen.items():
            if kind == "training":
                steps[name] = measure.training_step(build(name, variant, reference).train().to(device), batch, dtype)
            else:
                steps[name] = measure.inference_step(model, batch, dtype)
        repeats = max(1, args.repeats // size) if kind == "inference" else 1
        times = measure.interleaved(steps, args.rounds, repeats, device, warmup)
        row = Row(label, size, {name: size / statistics.median(t) for name, t in times.items()}, dict(failed))
        rows.append(row)
        print(_format_row(row, rates, flops_per_image))
        if kind == "training" and device.type == "cuda":
            torch.cuda.empty_cache()

    if args.compile:
        batch = torch.randn(batch_size, 3, side, side, device=device)
        compiled = {name: torch.compile(model) for name, model in models.items()}
        steps = {name: measure.inference_step(model, batch, None) for name, model in compiled.items()}
        times = measure.interleaved(steps, args.rounds, 1, device, warmup)
        row = Row(
            "inference fp32, torch.compile",
            batch_size,
            {name: batch_size / statistics.median(t) for name, t in times.items()},
        )
        rows.append(row)
        print(_format_row(row, rates, flops_per_image))

    found_speedups = speedups(rows)
    for label, value in found_speedups.items():
        print(f"swinkit {label}: {value:.2f}x")
    growth = _growth(models["swinkit"], variant, args.rounds, device)
    print(
        f"time per image {2 * side} / {side}: {growth['measured']:.2f} (window attention, Eq. 2, counts "
        f"{growth['eq2']:.2f}; global attention, Eq. 1, would count {growth['eq1']:.2f})"
    )
    return {
        "model": variant.name,
        "img_size": side,
        "machine": measure.machine(),
        "device": device.type,
        "versions": versions(),
        "logit_differences": differences,
        "precision_logit_differences": precision_differences,
        "matmul_gflops": rates,
        "rows": [dataclasses.asdict(row) | {"ratio_to_fastest_peer": row.ratio()} for row in rows],
        "swinkit_speedups": found_speedups,
        "peak_memory_mb": memory,
        "memory_batch": batch_size,
        f"growth_{2 * side}_over_{side}": growth,
    }


def speedups(rows: list[Row]) -> dict[str, float]:
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


def _growth(model: nn.Module, variant: Variant, rounds: int, device: torch.device) -> dict[str, float]:
    """Time per image at twice the side over the side, against what Eq. 2 and Eq. 1 count."""
    side = variant.img_size
    small = torch.randn(2, 3, side, side, device=device)
    large = torch.randn(2, 3, 2 * side, 2 * side, device=device)
    steps = {"small": measure.inference_step(model, small, None), "large": measure.inference_step(model, large, None)}
    times = measure.interleaved(steps, rounds, 1, device)
    return {
        "measured": statistics.median(times["large"]) / statistics.median(times["small"]),
        "eq2": count_flops(variant.name, 2 * side).total / count_flops(variant.name, side).total,
        "eq1": flops_table(variant.name, 2 * side).global_total / flops_table(variant.name, side).global_total,
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
    """The results as the Markdown tables the README quotes (results written before V2 was measured name no model)."""
    variant = VARIANTS[results.get("model", "swin_t")]
    side = results.get("img_size", variant.img_size)
    machine_info = results["machine"]
    device = results.get("device", "cpu")
    lines = [
        f"{variant.heading}Machine: {machine_info['cpu']}, {machine_info['cores']} cores, "
        f"{machine_info['threads']} threads, torch {machine_info['torch']}"
        + (f", GPU {machine_info['gpu']} (CUDA {machine_info.get('cuda')})" if machine_info.get("gpu") else "")
        + f"; measured on {device}",
        "",
    ]
    failures: dict[str, str] = {}
    table = []
    for row in results["rows"]:
        speeds, ratio = row["img_per_s"], row["ratio_to_fastest_peer"]
        cells = [f"{speeds[name]:.2f}" if name in speeds else "fails" for name in MODELS]
        table.append([row["case"], row["batch"], *cells, "-" if ratio is None else f"{ratio:.2f}x"])
        for name, error in row.get("failed", {}).items():
            failures[f"{name}, {row['case']}"] = error
    lines += tables.markdown_table(["case", "batch", *MODELS, "swinkit / fastest peer"], table)
    lines.append("")
    flops_per_image = 2 * count_flops(variant.name, side).total
    rates = results["matmul_gflops"]
    lines.append(
        f"Images per second, medians of interleaved rounds. Matrix-multiply rate of the machine: fp32 "
        f"{rates['fp32']:.0f} GFLOP/s, bf16 {rates['bf16']:.0f} GFLOP/s; {variant.label} is "
        f"{flops_per_image / 1e9:.2f} G floating-point operations per image forward (a training step about 3 times "
        f"that), so swinkit's rows use this share of the rate: "
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
    found_speedups = results.get("swinkit_speedups", {})
    if found_speedups:
        notes.append("swinkit " + ", ".join(f"{label}: {value:.2f}x" for label, value in found_speedups.items()) + ".")
    notes += [f"Fails ({label}): `{error}`." for label, error in failures.items()]
    for note in notes:
        lines += ["", note]
    memory = results["peak_memory_mb"]
    if memory:
        batch = results.get("memory_batch", 8)
        labels = (("peak_rss", _peak_label(torch.device(device))), ("activations", "activations saved for backward"))
        lines.append("")
        lines += tables.markdown_table(
            [f"training step (batch {batch}, AdamW), MB", *memory],
            [[label, *(f"{value[key]:.0f}" for value in memory.values())] for key, label in labels],
        )
    growth = results[f"growth_{2 * side}_over_{side}"]
    lines.append("")
    lines.append(
        f"Time per image at {2 * side} over {side}: {growth['measured']:.2f} measured; Eq. 2 (windows) counts "
        f"{growth['eq2']:.2f}, Eq. 1 (global attention) would count {growth['eq1']:.2f}."
    )
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    """The options of ``swinkit bench models``."""
    parser = argparse.ArgumentParser(
        prog="swinkit bench models",
        description="Swin-T (or V2-T) speed and memory: swinkit against timm, torchvision, transformers.",
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
    parser.add_argument("--output", default=str(tables.RESULTS), help="folder for the JSON and Markdown results")
    parser.add_argument(
        "--tag",
        help="results file name (default cpu, gpu with --device cuda; swinv2_t-cpu or swinv2_t-cuda with --model "
        "swinv2_t)",
    )
    parser.add_argument(
        "--model", choices=tuple(VARIANTS), default="swin_t", help="Swin-T at 224 (default), or Swin V2-T at 256"
    )
    parser.add_argument("--memory-worker", help=argparse.SUPPRESS)
    parser.add_argument("--grad-checkpointing", action="store_true", help=argparse.SUPPRESS)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The options, with the defaults that depend on the device, the model and ``--quick`` filled in."""
    args = build_parser().parse_args(argv)
    if args.batch is None:
        args.batch = 64 if args.device == "cuda" else 8
    if args.rounds is None:
        args.rounds = 3 if args.quick else 7
    if args.tag is None:
        # Swin-T's results kept their first names, cpu and gpu.
        first = "gpu" if args.device == "cuda" else "cpu"
        args.tag = first if args.model == "swin_t" else f"{args.model}-{args.device}"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """``swinkit bench models``: measure, print, and write ``{tag}.json`` and ``{tag}.md``."""
    args = parse_args(argv)
    variant = VARIANTS[args.model]
    if args.memory_worker:
        print(json.dumps(memory_worker(args.memory_worker, variant, args.grad_checkpointing, args.batch)))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here")
    results = run(args)
    tables.write_results(args.output, args.tag, results, to_markdown(results))
    return 0
