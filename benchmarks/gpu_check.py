"""Does swinkit on a GPU give the numbers it gives on a CPU? Every way of running it, against float64.

    python benchmarks/gpu_check.py                          # on a CUDA machine: all models, all checks
    python benchmarks/gpu_check.py --models tiny_v1 --skip compile,graphs   # a quick look

Each model (tiny V1 and V2 at odd sizes, where padding and the shift mask matter, and Swin-T-sized
V1 and V2) is built once with weights drawn off their initial values, and a float64 copy on the
CPU is the reference. Every check runs the float32 model on the device and compares its logits
with the reference's, and, for the eager and compiled runs, each stage's output
(``forward_intermediates``) too, so that a difference is placed in the stage where it starts:

- ``eager``: the model as it is (swinkit's own choice of attention kernel: on CUDA, any but cuDNN's,
  see ``swinkit.model.ops.MASKED_CUDA_BACKENDS``);
- ``sdpa:NAME``: the attention forced onto one kernel of ``scaled_dot_product_attention`` (math,
  efficient, flash, cudnn), and ``sdpa:any`` with every kernel allowed, cuDNN's included (PyTorch's
  own choice, as swinkit called it before it kept cuDNN out); forward and the gradients of a
  backward pass; kernels that do not take float32 run in bfloat16, reported but held to no bound;
- ``compile``: ``torch.compile`` (inductor) with batch sizes in sequence on one compiled model (the
  first static, then a dynamic batch), ``compile:dynamic`` (dynamic from the start) and
  ``compile:static`` (``dynamic=False``: a recompile per size);
  a compiler error is reported as a failed row;
- ``graphs``: a CUDA graph captured by hand from the eager model and replayed on new inputs, and
  ``torch.compile(mode="reduce-overhead")`` (inductor's CUDA graphs).

Prints one table and exits 1 when any float32 difference exceeds ``--tolerance`` (1e-4) or any
output is not finite. Without CUDA it runs on the CPU and says so: the GPU-only checks are left out
and the rest is a smoke test of this script (the tests run it that way).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import functools
import math
import sys
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend

import swinkit
from swinkit.model import ops

#: Kernels of ``scaled_dot_product_attention`` forced one at a time (PyTorch's names).
KERNELS = {
    "math": SDPBackend.MATH,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "flash": SDPBackend.FLASH_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
}
CHECKS = ("eager", "sdpa", "compile", "graphs")


@dataclasses.dataclass(frozen=True)
class Case:
    """A model to check: its registered variant, config changes, input size and the batch sizes in sequence.

    ``thorough`` adds the compile modes beyond the default (dynamic from the start, static), which
    cost a compile each: worth it on the tiny models, where compiling is quick.
    """

    name: str
    variant: str
    overrides: dict
    size: tuple[int, int]
    batches: tuple[int, ...]
    thorough: bool = False


TINY = {"embed_dim": 16, "depths": (2, 2), "num_heads": (1, 2), "num_classes": 5}
CASES = {
    case.name: case
    for case in (
        # 37x45: 10x12 tokens, no multiple of the window 4, so the windows and the shift mask see padding.
        Case("tiny_v1", "swin_t", TINY | {"window_size": 4}, (37, 45), (2, 3, 5, 8), thorough=True),
        # Window 8 is 64 tokens, a length where cuDNN's attention has had bugs with masks.
        Case("tiny_v2", "swinv2_t", TINY | {"window_size": 8}, (75, 61), (2, 3, 5, 8), thorough=True),
        Case("swin_t", "swin_t", {}, (224, 224), (2, 3, 5)),
        Case("swinv2_t", "swinv2_t", {}, (256, 256), (2, 3, 5)),
    )
}


@dataclasses.dataclass
class Row:
    """One line of the table: a check of a model at a batch size, and what it found."""

    model: str
    check: str
    batch: int | str
    dtype: str
    logits: float | None = None
    stages: list[float] = dataclasses.field(default_factory=list)
    gradients: float | None = None
    note: str = ""

    def failed(self, tolerance: float) -> bool:
        """True for a float32 result off by more than ``tolerance``, or any result that is not finite."""
        found = [value for value in (self.logits, self.gradients, *self.stages) if value is not None]
        if any(not math.isfinite(value) for value in found):
            return True
        return self.dtype == "fp32" and any(value > tolerance for value in found)


def build(case: Case) -> nn.Module:
    """The case's model with every parameter drawn: LayerNorm weights around 1 (V2's post-norms start at 0)."""
    torch.manual_seed(0)
    model = swinkit.create_model(case.variant, img_size=case.size, drop_path_rate=0.0, **case.overrides)
    with torch.no_grad():
        for module in model.modules():
            for name, param in module.named_parameters(recurse=False):
                noise = torch.randn_like(param)
                if isinstance(module, nn.LayerNorm) and name == "weight":
                    param.copy_(1 + 0.1 * noise)
                elif "relative_position_bias_table" in name:
                    param.copy_(0.5 * noise)
                else:
                    param.copy_(0.1 * noise)
    return model.eval()


def stage_outputs(model: nn.Module) -> Callable[[torch.Tensor], list[torch.Tensor]]:
    """The model's ``forward_intermediates`` for all of its stages (NCHW maps)."""
    return functools.partial(model.forward_intermediates, indices=tuple(range(len(model.stages))))


def difference(got: torch.Tensor, want: torch.Tensor) -> float:
    """Largest absolute difference of ``got`` (any device and dtype) from the float64 ``want``."""
    return (got.detach().double().cpu() - want).abs().max().item()


@contextlib.contextmanager
def attention_kernels(kernels: tuple[SDPBackend, ...]) -> Iterator[None]:
    """Let swinkit's window attention use only ``kernels`` on CUDA (it reads the tuple at every call)."""
    kept = ops.MASKED_CUDA_BACKENDS
    ops.MASKED_CUDA_BACKENDS = kernels
    try:
        yield
    finally:
        ops.MASKED_CUDA_BACKENDS = kept


class Checker:
    """Runs the checks of one case on ``device`` and collects their rows."""

    def __init__(self, case: Case, device: torch.device, tolerance: float) -> None:
        self.case, self.device, self.tolerance = case, device, tolerance
        self.model = build(case).to(device)
        self.reference = copy.deepcopy(self.model).cpu().double()
        generator = torch.Generator().manual_seed(1)
        self.inputs = {b: torch.randn(b, 3, *case.size, generator=generator, dtype=torch.float64) for b in case.batches}
        self.labels = {b: torch.randint(0, self.model.num_classes, (b,), generator=generator) for b in case.batches}
        with torch.no_grad():
            self.expected = {b: self.reference(x) for b, x in self.inputs.items()}
            self.expected_stages = {b: stage_outputs(self.reference)(x) for b, x in self.inputs.items()}
        self.rows: list[Row] = []

    def row(self, check: str, batch: int | str, dtype: str = "fp32", **found: object) -> Row:
        """Add a row for this case."""
        row = Row(self.case.name, check, batch, dtype, **found)  # type: ignore[arg-type]
        self.rows.append(row)
        return row

    def pixels(self, batch: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self.inputs[batch].to(self.device, dtype)

    def compare(
        self,
        check: str,
        run: Callable[[torch.Tensor], torch.Tensor],
        stages: Callable | None = None,
        batches: tuple[int, ...] | None = None,
    ) -> list[Row]:
        """Logits of ``run`` (and stage outputs of ``stages``) at each batch size in sequence, against float64."""
        rows = []
        for batch in batches or self.case.batches:
            with torch.no_grad():
                logits = difference(run(self.pixels(batch)), self.expected[batch])
                found = stages(self.pixels(batch)) if stages is not None else []
            stage_differences = [difference(got, want) for got, want in zip(found, self.expected_stages[batch])]
            rows.append(self.row(check, batch, logits=logits, stages=stage_differences))
        return rows

    def eager(self) -> None:
        self.compare("eager", self.model, stage_outputs(self.model))

    def gradients(self, batch: int, dtype: torch.dtype) -> tuple[float, float]:
        """Differences of the logits and of every parameter's gradient after a cross-entropy backward pass."""
        model = copy.deepcopy(self.model).to(dtype).train()
        reference = copy.deepcopy(self.reference).train()
        outputs = []
        for net, pixels in ((model, self.pixels(batch, dtype)), (reference, self.inputs[batch])):
            logits = net(pixels)
            F.cross_entropy(logits.double().cpu(), self.labels[batch]).backward()
            outputs.append(logits)
        grads = {name: p.grad for name, p in reference.named_parameters()}
        worst = max(difference(p.grad, grads[name]) for name, p in model.named_parameters())
        return difference(outputs[0], outputs[1].detach()), worst

    def sdpa(self) -> None:
        batch = self.case.batches[-1]
        options = [(name, (kernel,)) for name, kernel in KERNELS.items()]
        options.append(("any", tuple(KERNELS.values())))
        for name, kernels in options:
            for dtype, label in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
                try:
                    with attention_kernels(kernels):
                        logits, grads = self.gradients(batch, dtype)
                except RuntimeError as error:
                    self.row(f"sdpa:{name}", batch, label, note=f"not run: {str(error).splitlines()[0][:60]}")
                    continue
                self.row(f"sdpa:{name}", batch, label, logits=logits, gradients=grads)
                if dtype == torch.float32:
                    break  # this kernel takes float32: no bfloat16 row needed

    def compiled(self) -> None:
        modes = [("compile", {})]
        if self.case.thorough:
            modes += [("compile:dynamic", {"dynamic": True}), ("compile:static", {"dynamic": False})]
        for check, options in modes:
            torch._dynamo.reset()
            model = copy.deepcopy(self.model)
            started = time.perf_counter()
            # A static graph per size: two sizes show whether a recompile for a new shape is right.
            batches = self.case.batches[:2] if check == "compile:static" else None
            try:
                rows = self.compare(check, torch.compile(model, **options), batches=batches)
            except Exception as error:  # a compiler crash is a result too: this mode cannot run the model
                message = str(error).strip().splitlines()[0][:80]
                self.row(check, "-", logits=math.nan, note=f"failed: {type(error).__name__}: {message}")
                continue
            rows[-1].note = f"{time.perf_counter() - started:.0f} s with compiling"
            for row in rows:
                if row.failed(self.tolerance):  # place the difference: the compiled stages at that size
                    stages = torch.compile(stage_outputs(model), **options)
                    with torch.no_grad():
                        found = stages(self.pixels(row.batch))  # type: ignore[arg-type]
                    row.stages = [difference(got, want) for got, want in zip(found, self.expected_stages[row.batch])]

    def graphs(self) -> None:
        batch = self.case.batches[-1]
        static = torch.zeros_like(self.pixels(batch))
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(3):  # warm-up: the attention biases and masks are made and cached here
                self.model(static)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.no_grad():
            captured = self.model(static)
        static.copy_(self.pixels(batch))  # the inputs arrive after the capture, as they do when serving
        graph.replay()
        self.row("graphs:captured", batch, logits=difference(captured, self.expected[batch]))
        torch._dynamo.reset()
        compiled = torch.compile(copy.deepcopy(self.model), mode="reduce-overhead")
        for other in self.case.batches:
            with torch.no_grad():
                for _ in range(3):  # cudagraph trees record on a later call than the first
                    logits = compiled(self.pixels(other)).clone()
            self.row("graphs:reduce-overhead", other, logits=difference(logits, self.expected[other]))


def format_table(rows: list[Row], tolerance: float) -> str:
    """The rows as an aligned text table, one line each, with a verdict column."""
    header = ("model", "check", "batch", "dtype", "logits", "stages", "gradients", "", "note")
    lines = [header]
    for row in rows:
        stages = " ".join(f"{value:.1e}" for value in row.stages)
        lines.append(
            (
                row.model,
                row.check,
                str(row.batch),
                row.dtype,
                "" if row.logits is None else f"{row.logits:.2e}",
                stages,
                "" if row.gradients is None else f"{row.gradients:.2e}",
                "FAIL" if row.failed(tolerance) else "ok",
                row.note,
            )
        )
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--skip", default="", help=f"comma-separated checks to leave out, of {', '.join(CHECKS)}")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest float32 difference allowed")
    args = parser.parse_args(argv)
    names, skipped = args.models.split(","), {name for name in args.skip.split(",") if name}
    unknown = sorted(set(names) - set(CASES)) + sorted(skipped - set(CHECKS))
    if unknown:
        parser.error(f"unknown models or checks {unknown}; models: {', '.join(CASES)}; checks: {', '.join(CHECKS)}")
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        # Full float32 products (no TF32) in matmuls and convolutions: the float64 reference is what counts.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        versions = f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
        print(f"device: {torch.cuda.get_device_name()}, {versions}")
    else:
        skipped |= {"sdpa", "graphs"}
        print("no CUDA device: running on the CPU, without the SDPA-kernel and CUDA-graph checks (a smoke test)")
    rows, started = [], time.perf_counter()
    for name in names:
        checker = Checker(CASES[name], device, args.tolerance)
        for check in ("eager", "sdpa", "compiled", "graphs"):
            if check.replace("compiled", "compile") not in skipped:
                getattr(checker, check)()
        rows += checker.rows
    print(format_table(rows, args.tolerance))
    failed = [row for row in rows if row.failed(args.tolerance)]
    print(
        f"{len(rows)} checks in {time.perf_counter() - started:.0f} s on {device.type}; "
        f"{len(failed)} over {args.tolerance:.0e} (float32) or not finite"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
