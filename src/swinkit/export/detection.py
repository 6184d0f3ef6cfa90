"""Export of a Swin detector as far as PyTorch allows: ONNX, checked against onnxruntime.

ONNX (PyTorch's TorchScript-based exporter, opset >= 11 as torchvision's detectors need)
works for Faster and Mask R-CNN: the graph takes one ``(3, H, W)`` float image in [0, 1]
of the size it was exported for (the resize, normalisation, RPN, NMS and heads are all in
the graph) and gives ``boxes``, ``labels``, ``scores`` (and ``masks``), one row per
detection, their number dynamic. Two limits:

- The image size is fixed: the Swin's window partition is traced for the maps of that
  size, and onnxruntime refuses an image whose resized, padded map differs (a ``Reshape``
  node fails); resize images to the export size first.
- The size must need no window padding: every stage map (after torchvision's resize and
  padding to a multiple of 32) must be a multiple of the window or smaller than it. Where
  the Swin pads a map to whole windows, the traced graph mixes traced and constant shapes
  and onnxruntime refuses to load it (``ShapeInferenceError`` in a ``Reshape``). For patch
  4 and window 7 (Swin-T/S/B at 224) multiples of 224 work (896 x 896, 672 x 1120, ...);
  :func:`onnx_image_size_problem` says whether a size does.

``torch.export`` does not: torchvision's post-processing keeps a data-dependent number of
boxes (``batched_nms`` in ``torchvision/ops/boxes.py`` guards on it:
``GuardOnDataDependentSymNode``), so the whole detector cannot be captured. The backbone
alone (:class:`~swinkit.model.detection.SwinFPN`) exports for one input size, but its
window padding specialises the program to that size, and on a CPU the capture of even a
tiny backbone takes minutes; swinkit offers no ``.pt2`` for detectors.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torchvision.models.detection import FasterRCNN, MaskRCNN

from swinkit.model.ops import window_layout

#: Lowest ONNX opset torchvision's detection models export to.
MIN_OPSET = 11


def output_names(model: FasterRCNN | MaskRCNN) -> list[str]:
    """The ONNX graph's outputs, in order: ``boxes``, ``labels``, ``scores`` and, for Mask R-CNN, ``masks``."""
    return ["boxes", "labels", "scores"] + (["masks"] if isinstance(model, MaskRCNN) else [])


def onnx_image_size_problem(model: FasterRCNN | MaskRCNN, image_size: tuple[int, int]) -> str | None:
    """Why an image of ``image_size`` ``(H, W)`` cannot be exported to ONNX (see the module), or None when it can."""
    transform, was_training = model.transform, model.transform.training
    try:
        batch = transform.eval()([torch.zeros(3, *image_size)])[0].tensors
    finally:
        transform.train(was_training)
    height, width = (-(-side // model.config.backbone.patch_size) for side in batch.shape[-2:])
    window = model.config.backbone.window_size
    for stage in range(model.config.backbone.num_stages):
        if stage:
            height, width = -(-height // 2), -(-width // 2)
        window_h, window_w, _, _ = window_layout(height, width, window, 0)
        if height % window_h or width % window_w:
            return (
                f"an image of {image_size[0]}x{image_size[1]} becomes a {batch.shape[-2]}x{batch.shape[-1]} input "
                f"whose stage {stage} map ({height}x{width}) needs padding to whole {window}x{window} windows, which "
                f"the ONNX graph cannot hold; choose a size whose stage maps are multiples of the window"
            )
    return None


def export_detector_onnx(
    model: FasterRCNN | MaskRCNN,
    path: str | os.PathLike[str],
    image_size: tuple[int, int] | None = None,
    opset: int = 17,
) -> Path:
    """Write ``model`` (evaluation mode, float32) as ONNX: input ``image`` ``(3, H, W)``, outputs :func:`output_names`.

    ``image_size`` ``(H, W)`` is the size the graph takes (default: a square of the
    detector's evaluation size). ``model`` is put back in the mode it was in.
    """
    if opset < MIN_OPSET:
        raise ValueError(f"torchvision's detectors export to ONNX opset {MIN_OPSET} or later, got {opset}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = image_size or (model.config.min_sizes[-1],) * 2
    problem = onnx_image_size_problem(model, (height, width))
    if problem is not None:
        raise ValueError(problem)
    names = output_names(model)
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's warnings about Python values in torchvision's code
            torch.onnx.export(
                model,
                ([torch.rand(3, height, width)],),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=["image"],
                output_names=names,
                dynamic_axes={name: {0: "detections"} for name in names},
            )
    finally:
        model.train(was_training)
    return path


def check_detector_onnx(
    model: FasterRCNN | MaskRCNN, path: str | os.PathLike[str], image: torch.Tensor
) -> dict[str, float] | None:
    """Largest difference per output between onnxruntime and ``model`` on ``image`` ``(3, H, W)``.

    Returns None when the two give a different number of detections (then they cannot be
    compared box by box); labels are compared exactly (0.0 or the largest difference).
    """
    try:
        import onnxruntime
    except ImportError as error:
        raise ValueError("checking an ONNX export needs onnxruntime: pip install 'swinkit[export]'") from error
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            (expected,) = model([image])
    finally:
        model.train(was_training)
    got = dict(zip(output_names(model), session.run(None, {"image": image.numpy()})))
    if len(got["boxes"]) != len(expected["boxes"]):
        return None
    return {
        name: float((torch.from_numpy(got[name]) - expected[name]).abs().max()) if len(got[name]) else 0.0
        for name in got
    }
