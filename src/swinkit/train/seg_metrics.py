"""Segmentation metrics as mmsegmentation computes them: one confusion matrix over all pixels of a data set.

Pixels whose label is the ignore index (255) count nowhere. Per class ``c``:
IoU = TP / (TP + FP + FN), the intersection of prediction and ground truth over their union,
and accuracy = TP / (TP + FN), the share of the class's pixels predicted as it. A class
absent from both the ground truth and the predictions (union 0) has no IoU (NaN) and is left
out of the mean, so mIoU is the mean over the classes present in either; a class absent from
the ground truth has no accuracy. Pixel accuracy is the share of all labelled pixels predicted
right. All are percentages.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from swinkit.data.segmentation import IGNORE_INDEX


def confusion_matrix(
    predictions: torch.Tensor, targets: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """``(K, K)`` int64 counts: ``[t, p]`` pixels of true class ``t`` predicted as ``p`` (``ignore_index`` left out).

    ``predictions`` and ``targets`` are integer tensors of one shape. Raises ``ValueError``
    for a target or prediction outside ``0 .. num_classes - 1`` (other than ``ignore_index``).
    """
    if predictions.shape != targets.shape:
        raise ValueError(f"predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)} differ in shape")
    keep = targets != ignore_index
    truth, predicted = targets[keep].long(), predictions[keep].long()
    for name, values in (("target", truth), ("prediction", predicted)):
        if values.numel() and (int(values.min()) < 0 or int(values.max()) >= num_classes):
            raise ValueError(
                f"a {name} class index is outside 0..{num_classes - 1} (values {int(values.min())} to "
                f"{int(values.max())}; {ignore_index} marks ignored pixels)"
            )
    counts = torch.bincount(truth * num_classes + predicted, minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes)


@dataclasses.dataclass(frozen=True)
class SegmentationScores:
    """The scores of a confusion matrix (``confusion[t, p]``; see the module docstring), and the mean ``loss``."""

    confusion: torch.Tensor
    loss: float = math.nan

    @property
    def iou(self) -> list[float]:
        """IoU per class, percent; NaN for a class in neither ground truth nor predictions."""
        matrix = self.confusion.double()
        hits = matrix.diagonal()
        union = matrix.sum(0) + matrix.sum(1) - hits
        return (100.0 * hits / union).tolist()

    @property
    def accuracy(self) -> list[float]:
        """Accuracy per class (recall), percent; NaN for a class absent from the ground truth."""
        matrix = self.confusion.double()
        return (100.0 * matrix.diagonal() / matrix.sum(1)).tolist()

    @property
    def miou(self) -> float:
        """Mean IoU over the classes that have one."""
        return _nanmean(self.iou)

    @property
    def mean_accuracy(self) -> float:
        """Mean per-class accuracy over the classes in the ground truth."""
        return _nanmean(self.accuracy)

    @property
    def pixel_accuracy(self) -> float:
        """Labelled pixels predicted right, percent (NaN for none)."""
        total = int(self.confusion.sum())
        return 100.0 * int(self.confusion.diagonal().sum()) / total if total else math.nan

    @property
    def pixels(self) -> int:
        """How many labelled pixels were scored."""
        return int(self.confusion.sum())

    def table(self, classes: Sequence[str]) -> str:
        """The per-class table as text: class, IoU, accuracy and ground-truth pixels, then the means."""
        if len(classes) != len(self.confusion):
            raise ValueError(f"{len(classes)} class names for a {len(self.confusion)}-class confusion matrix")
        width = max(5, *(len(name) for name in classes))
        lines = [f"{'class':<{width}}  {'IoU':>6}  {'acc':>6}  {'pixels':>10}"]
        for name, iou, accuracy, pixels in zip(classes, self.iou, self.accuracy, self.confusion.sum(1).tolist()):
            lines.append(f"{name:<{width}}  {_percent(iou)}  {_percent(accuracy)}  {pixels:>10,}")
        lines.append(f"{'mean':<{width}}  {_percent(self.miou)}  {_percent(self.mean_accuracy)}  {self.pixels:>10,}")
        lines.append(f"pixel accuracy {_percent(self.pixel_accuracy).strip()}%")
        return "\n".join(lines)


class ConfusionMeter:
    """Accumulates :func:`confusion_matrix` over batches of logits and targets.

    ``update`` takes logits ``(B, K, h, w)`` and targets ``(B, H, W)``; logits of another size
    are resized to the targets' bilinearly (align_corners False, as mmsegmentation scores at
    the label's resolution) before the argmax. ``confusion`` is the running matrix on
    ``device``, to be summed over processes when distributed.
    """

    def __init__(self, num_classes: int, device: torch.device | str = "cpu", ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Add a batch; return its predictions ``(B, H, W)`` at the targets' size."""
        if logits.shape[-2:] != targets.shape[-2:]:
            logits = F.interpolate(logits.float(), size=targets.shape[-2:], mode="bilinear", align_corners=False)
        predictions = logits.argmax(1)
        self.confusion += confusion_matrix(predictions, targets, self.num_classes, self.ignore_index)
        return predictions

    def scores(self, loss: float = math.nan) -> SegmentationScores:
        """The scores of what has been added so far (a copy on the CPU)."""
        return SegmentationScores(self.confusion.cpu().clone(), loss)


def _nanmean(values: Sequence[float]) -> float:
    present = [value for value in values if not math.isnan(value)]
    return sum(present) / len(present) if present else math.nan


def _percent(value: float) -> str:
    return f"{'-':>6}" if math.isnan(value) else f"{value:6.2f}"
