"""The numeric precision a model runs inference in: fp32, bf16 or int8, in one place.

Inference (:func:`swinkit.classifier.load_classifier`), export and serving all turn a
float32 model into the chosen precision with :func:`apply_precision` and feed it inputs of
:func:`input_dtype`:

- ``fp32``: the model as trained.
- ``bf16``: every parameter and buffer in bfloat16; inputs are cast to bfloat16 and the
  logits come out in bfloat16 (callers take ``.float()``).
- ``int8``: dynamic quantization of every ``nn.Linear`` (``torch.ao.quantization.
  quantize_dynamic``, int8 weights per tensor, activations quantized per batch) with the
  x86 (fbgemm) kernels; CPU only. The patch-embedding convolution, the norms and the
  attention products stay in float32.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator

import torch
from torch import nn

#: The precisions :func:`apply_precision` accepts.
PRECISIONS = ("fp32", "bf16", "int8")

#: The quantized engine int8 uses: x86 (fbgemm kernels, with oneDNN where it is faster).
INT8_ENGINES = ("x86", "fbgemm")


def check_precision(precision: str, device: torch.device | str | None = None) -> None:
    """Raise ValueError when ``precision`` is unknown, or cannot run on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "int8":
        kind = torch.device(device).type if device is not None else "cpu"
        if kind != "cpu":
            raise ValueError(
                f"int8 (dynamic quantization of the Linear layers) runs on the CPU only, not on {kind}: "
                f"use --device cpu, or --precision bf16 or fp32 on {kind}"
            )
        if not any(engine in torch.backends.quantized.supported_engines for engine in INT8_ENGINES):
            raise ValueError(
                f"int8 needs PyTorch's x86/fbgemm quantized kernels, and this build has only "
                f"{torch.backends.quantized.supported_engines}"
            )


def input_dtype(precision: str) -> torch.dtype:
    """The dtype a model in ``precision`` takes its images in: bfloat16 for bf16, else float32."""
    check_precision(precision)
    return torch.bfloat16 if precision == "bf16" else torch.float32


def model_precision(model: nn.Module) -> str:
    """Which of :data:`PRECISIONS` ``model`` is in (int8 when any layer is dynamically quantized)."""
    if any(type(module).__module__.startswith("torch.ao.nn.quantized") for module in model.modules()):
        return "int8"
    reference = next(model.parameters(), None)
    return "bf16" if reference is not None and reference.dtype == torch.bfloat16 else "fp32"


@contextlib.contextmanager
def _int8_engine() -> Iterator[None]:
    previous = torch.backends.quantized.engine
    if previous not in INT8_ENGINES:
        torch.backends.quantized.engine = next(
            e for e in INT8_ENGINES if e in torch.backends.quantized.supported_engines
        )
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


def apply_precision(model: nn.Module, precision: str, inplace: bool = False) -> nn.Module:
    """``model`` (float32, in eval mode) converted to ``precision``; a copy unless ``inplace``.

    int8 needs the model on the CPU and quantizes every ``nn.Linear`` (qkv, proj, fc1, fc2,
    the merging reductions, the head); the quantized layers keep the model's structure, so
    hooks and the model's methods still work. Raises ValueError for an unknown precision,
    int8 on a GPU, or a model that is not float32.
    """
    reference = next(model.parameters(), None)
    device = reference.device if reference is not None else torch.device("cpu")
    check_precision(precision, device)
    current = model_precision(model)
    if current != "fp32":
        raise ValueError(f"apply_precision takes a float32 model; this one is already {current}")
    target = model if inplace else copy.deepcopy(model)
    if precision == "bf16":
        return target.to(torch.bfloat16)
    if precision == "int8":
        with _int8_engine(), warnings.catch_warnings():
            # torch.ao.quantization announces its move to torchao; the kernels are the same ones.
            warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
            warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor.*deprecated")
            return torch.ao.quantization.quantize_dynamic(target, {nn.Linear}, dtype=torch.qint8, inplace=True)
    return target
