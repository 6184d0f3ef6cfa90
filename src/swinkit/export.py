"""Export a model for deployment: ONNX (checked against onnxruntime) and torch.export programs.

Both take a fixed image size (the model's by default) and a dynamic batch axis.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from swinkit.model import SwinTransformer


def _example(model: SwinTransformer, img_size: int | tuple[int, int] | None, batch: int = 2) -> torch.Tensor:
    height, width = (img_size, img_size) if isinstance(img_size, int) else (img_size or model.config.img_size)
    reference = next(model.parameters())
    return torch.randn(batch, model.config.in_chans, height, width, device=reference.device, dtype=reference.dtype)


def export_onnx(
    model: SwinTransformer, path: str | os.PathLike[str], img_size: int | tuple[int, int] | None = None, opset: int = 17
) -> Path:
    """Write ``model`` (in eval mode) as ONNX with input ``pixels`` and output ``logits``, batch axis dynamic.

    Uses PyTorch's TorchScript-based exporter: the newer torch.export-based one fails on
    PyTorch's own decomposition of ``scaled_dot_product_attention`` for this graph.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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
                dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=opset,
            )
    finally:
        model.train(was_training)
    return path


def check_onnx(
    model: SwinTransformer,
    path: str | os.PathLike[str],
    img_size: int | tuple[int, int] | None = None,
    batch_sizes: tuple[int, ...] = (1, 3),
) -> float:
    """Largest absolute difference between onnxruntime's and PyTorch's logits over a few batch sizes."""
    try:
        import onnxruntime
    except ImportError as error:
        raise ValueError("checking an ONNX export needs onnxruntime: pip install onnxruntime") from error
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    model.eval()
    for batch in batch_sizes:
        pixels = _example(model, img_size, batch).float().cpu()
        with torch.no_grad():
            expected = model.float().cpu()(pixels)
        (got,) = session.run(["logits"], {"pixels": pixels.numpy()})
        worst = max(worst, float((torch.from_numpy(got) - expected).abs().max()))
    return worst


def export_program(
    model: SwinTransformer, path: str | os.PathLike[str] | None = None, img_size: int | tuple[int, int] | None = None
) -> torch.export.ExportedProgram:
    """``torch.export`` the model (eval mode) with a dynamic batch; saved as ``.pt2`` when ``path`` is given."""
    model.eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(model, (_example(model, img_size),), dynamic_shapes=({0: batch},))
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.export.save(program, str(path))
    return program
