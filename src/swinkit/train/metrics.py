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
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros(2, dtype=torch.int64, device=device)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    for images, targets in loader:
        images, targets = images.to(device), targets.to(device)
        with autocast(device, precision):
            logits = model(images)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, targets, reduction="sum").double()
        correct += torch.tensor(topk_correct(logits, targets), device=device)
        confusion += torch.bincount(targets * num_classes + logits.argmax(1), minlength=num_classes**2).view(
            num_classes, num_classes
        )
    if context is not None:
        for tensor in (loss_sum, correct, confusion):
            context.all_reduce_sum(tensor)
    model.train(was_training)
    count = int(confusion.sum())
    if count == 0:
        raise ValueError("evaluation data is empty: there is nothing to evaluate")
    return Evaluation(
        loss=float(loss_sum) / count,
        top1=100.0 * int(correct[0]) / count,
        top5=100.0 * int(correct[1]) / count,
        count=count,
        confusion=confusion.cpu(),
    )
