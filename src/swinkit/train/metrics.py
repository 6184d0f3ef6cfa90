"""Classification metrics: top-k accuracy, per-class accuracy, the confusion matrix, and evaluation."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from swinkit.train.distributed import Distributed


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Results over a data set: mean loss, top-1 and top-5 accuracy (percent), confusion matrix.

    ``confusion[i, j]`` counts images of true class ``i`` predicted as ``j``.
    """

    loss: float
    top1: float
    top5: float
    count: int
    confusion: torch.Tensor

    @property
    def metrics(self) -> dict[str, float]:
        """The mean loss and the top-1 and top-5 accuracies by name, as a training run's metrics file has them."""
        return {"loss": self.loss, "top1": self.top1, "top5": self.top5}

    @property
    def per_class(self) -> list[float]:
        """Accuracy per true class, percent (NaN for a class with no images)."""
        totals = self.confusion.sum(1).double()
        return (100.0 * self.confusion.diagonal().double() / totals).tolist()


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast for ``bf16``/``fp16`` on the device's type; nothing for ``fp32``."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks: Iterable[int] = (1, 5)) -> list[int]:
    """How many of ``targets`` are among the top-k logits, for each k (k capped at the class count)."""
    largest = min(max(ks), logits.shape[1])
    top = logits.topk(largest, dim=1).indices
    hits = top.eq(targets[:, None])
    return [int(hits[:, : min(k, largest)].any(1).sum()) for k in ks]


class ConfusionCounter:
    """Sums over batches of logits and class indices: cross-entropy, top-1/top-5 hits and the confusion matrix."""

    def __init__(self, num_classes: int, device: torch.device) -> None:
        self.num_classes = num_classes
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros(2, dtype=torch.int64, device=device)
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def add(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Count float ``(B, K)`` logits against ``(B,)`` class indices on the same device."""
        classes = self.num_classes
        self.loss_sum += F.cross_entropy(logits, targets, reduction="sum").double()
        self.correct += torch.tensor(topk_correct(logits, targets), device=self.correct.device)
        self.confusion += torch.bincount(targets * classes + logits.argmax(1), minlength=classes**2).view(
            classes, classes
        )

    def result(self, context: Distributed | None = None) -> Evaluation:
        """The :class:`Evaluation` of everything counted, summed over processes when distributed."""
        if context is not None:
            for tensor in (self.loss_sum, self.correct, self.confusion):
                context.all_reduce_sum(tensor)
        count = int(self.confusion.sum())
        if count == 0:
            raise ValueError("evaluation data is empty: there is nothing to evaluate")
        return Evaluation(
            loss=float(self.loss_sum) / count,
            top1=100.0 * int(self.correct[0]) / count,
            top5=100.0 * int(self.correct[1]) / count,
            count=count,
            confusion=self.confusion.cpu(),
        )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    device: torch.device,
    precision: str = "fp32",
    context: Distributed | None = None,
) -> Evaluation:
    """Run ``model`` over ``loader`` in eval mode; sums are reduced over processes when distributed."""
    was_training = model.training
    model.eval()
    counter = ConfusionCounter(num_classes, device)
    for images, targets in loader:
        images, targets = images.to(device), targets.to(device)
        with autocast(device, precision):
            logits = model(images)
        counter.add(logits.float(), targets)
    model.train(was_training)
    return counter.result(context)
