"""Export a model for deployment: ONNX (checked against onnxruntime) and torch.export programs.

Both take a fixed image size (the model's by default) and a dynamic batch axis; an ONNX
segmenter can also take a dynamic height and width (see :func:`export_onnx`). ONNX is
written in fp32 or int8, a torch.export program in fp32 or bf16 (:data:`EXPORT_PRECISIONS`):
onnxruntime has no bfloat16 kernels for this graph on the CPU, and torch.export cannot
trace the packed weights of PyTorch's dynamically quantized layers.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import torch

from swinkit.model import SwinTransformer, SwinUperNet
from swinkit.precision import check_precision

#: The precisions each export format is written in.
EXPORT_PRECISIONS = {"onnx": ("fp32", "int8"), "pt2": ("fp32", "bf16")}

#: Largest accepted difference between onnxruntime's logits and swinkit's, per precision:
#: absolute for fp32; for int8 relative to the largest absolute logit, because the two
#: int8 programs quantize activations differently (onnxruntime to 8 bits over the full
#: range, PyTorch's x86 kernels to 7 bits) and their outputs differ by about a percent
#: of the logit range (1.6% on a trained digits model, 4% on a random Swin-T).
ONNX_TOLERANCE = {"fp32": 1e-4, "int8": 0.1}


def check_export_precision(kind: str, precision: str) -> None:
    """Raise ValueError when ``kind`` (``onnx`` or ``pt2``) cannot be written in ``precision``."""
    check_precision(precision)
    accepted = EXPORT_PRECISIONS[kind]
    if precision not in accepted:
        other = next(k for k, values in EXPORT_PRECISIONS.items() if precision in values)
        raise ValueError(
            f"{kind} export is written in {' or '.join(accepted)}, not {precision}; {precision} is available as {other}"
        )


def _example(
    model: SwinTransformer | SwinUperNet, img_size: int | tuple[int, int] | None, batch: int = 2
) -> torch.Tensor:
    height, width = (img_size, img_size) if isinstance(img_size, int) else (img_size or model.config.img_size)
    reference = next(model.parameters())
    return torch.randn(batch, model.config.in_chans, height, width, device=reference.device, dtype=reference.dtype)


def export_onnx(
    model: SwinTransformer | SwinUperNet,
    path: str | os.PathLike[str],
    img_size: int | tuple[int, int] | None = None,
    opset: int = 17,
    precision: str = "fp32",
    dynamic_size: bool = False,
) -> Path:
    """Write ``model`` (float32, eval mode) as ONNX with input ``pixels`` and output ``logits``, batch axis dynamic.

    A segmenter's logits are ``(B, K, H, W)``. With ``dynamic_size`` (segmenters) the height and
    width are dynamic too: the graph pads each stage's map by what each size asks, which holds
    because a segmenter's backbone keeps its windows whatever the map (``fixed_windows``).

    Uses PyTorch's TorchScript-based exporter: the newer torch.export-based one fails on
    PyTorch's own decomposition of ``scaled_dot_product_attention`` for this graph. With
    ``precision="int8"`` the float32 graph is quantized by onnxruntime's
    ``quantize_dynamic``: int8 weights for the matrix products with a constant weight,
    which are exactly the model's Linear layers (those swinkit's int8 quantizes), and
    activations quantized per batch; the attention products stay float32.
    """
    check_export_precision("onnx", precision)
    axes = _dynamic_size_axes(model) if dynamic_size else {0: "batch"}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if precision == "int8":
        with tempfile.TemporaryDirectory(dir=path.parent) as folder:
            float_path = export_onnx(model, Path(folder) / "fp32.onnx", img_size, opset, dynamic_size=dynamic_size)
            _quantize_onnx(float_path, path, Path(folder))
        return path
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (_example(model, img_size),),
                str(path),
                dynamo=False,
                input_names=["pixels"],
                output_names=["logits"],
                dynamic_axes={"pixels": axes, "logits": axes},
                opset_version=opset,
            )
    finally:
        model.train(was_training)
    return path


def _dynamic_size_axes(model: SwinTransformer | SwinUperNet) -> dict[int, str]:
    if not isinstance(model, SwinUperNet) or not model.config.backbone.fixed_windows:
        raise ValueError(
            "dynamic_size applies to segmenters whose backbone keeps its windows (fixed_windows): a classifier's "
            "window and shift change with the map's size, which a traced graph cannot follow"
        )
    return {0: "batch", 2: "height", 3: "width"}


def _quantize_onnx(source: Path, target: Path, scratch: Path) -> None:
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as error:
        raise ValueError("an int8 ONNX export needs onnxruntime: pip install 'swinkit[export]'") from error
    prepared = scratch / "prepared.onnx"
    # onnxruntime's recommended pre-processing (ONNX shape inference, graph optimisation) before quantizing.
    # Its symbolic shape inference, which serves transformer-specific fusions, gives up on the padding to
    # whole windows of a graph with a dynamic size (and leaves a scratch file in the working directory).
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    quantize_dynamic(
        str(prepared),
        str(target),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul", "Gemm"],
        extra_options={"MatMulConstBOnly": True},
    )


def check_onnx(
    model: SwinTransformer | SwinUperNet,
    path: str | os.PathLike[str],
    img_size: int | tuple[int, int] | None = None,
    batch_sizes: tuple[int, ...] = (1, 3),
    relative: bool = False,
) -> float:
    """Largest difference between onnxruntime's logits and ``model``'s over a few batch sizes of random images.

    ``model`` is the reference in the export's precision (an int8 export is compared with
    ``apply_precision(model, "int8")``). The difference is absolute, or with ``relative``
    divided by the reference's largest absolute logit. ``model`` is left unchanged.
    """
    try:
        import onnxruntime
    except ImportError as error:
        raise ValueError("checking an ONNX export needs onnxruntime: pip install onnxruntime") from error
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    reference = next(model.parameters())
    was_training = model.training
    model.eval()
    worst, scale = 0.0, 0.0
    try:
        for batch in batch_sizes:
            pixels = _example(model, img_size, batch).float().cpu()
            with torch.no_grad():
                expected = model(pixels.to(reference.device, reference.dtype)).float().cpu()
            (got,) = session.run(["logits"], {"pixels": pixels.numpy()})
            worst = max(worst, float((torch.from_numpy(got) - expected).abs().max()))
            scale = max(scale, float(expected.abs().max()))
    finally:
        model.train(was_training)
    return worst / scale if relative else worst


def export_program(
    model: SwinTransformer, path: str | os.PathLike[str] | None = None, img_size: int | tuple[int, int] | None = None
) -> torch.export.ExportedProgram:
    """``torch.export`` the model (eval mode) with a dynamic batch; saved as ``.pt2`` when ``path`` is given.

    The model may be float32 or bfloat16 (the program then takes bfloat16 images).
    """
    model.eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(model, (_example(model, img_size),), dynamic_shapes=({0: batch},))
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.export.save(program, str(path))
    return program
