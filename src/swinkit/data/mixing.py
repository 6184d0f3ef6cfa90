"""Batch-level MixUp / CutMix with label smoothing, and the cross-entropy that takes their soft targets.

A mixed batch has soft targets: the label of image ``i`` becomes ``lam * onehot(y_i) + (1 -
lam) * onehot(y_j)``. Label smoothing is linear too, so it is applied to the mixed targets:
``(1 - eps) * target + eps / K``, which equals mixing the smoothed one-hots.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import default_collate
from torchvision.transforms import v2

from swinkit.data.images import DataError
from swinkit.data.transforms import AugmentConfig


class BatchMix:
    """``mix(images, labels) -> (images, soft_targets)``: MixUp or CutMix, chosen at random per batch.

    ``images`` is ``(B, C, H, W)`` float, ``labels`` ``(B,)`` integer class indices; the soft
    targets are ``(B, num_classes)`` rows that sum to 1, smoothed by ``label_smoothing``.
    Either alpha may be 0 to use only the other mix. Use it on the batch in the training
    loop (on the GPU it costs nothing), or as a DataLoader ``collate_fn`` through
    :meth:`collate`. Picklable.
    """

    def __init__(self, num_classes: int, mixup_alpha: float, cutmix_alpha: float, label_smoothing: float) -> None:
        if num_classes < 2:
            raise DataError(f"mixing needs at least 2 classes, got num_classes={num_classes}")
        if mixup_alpha < 0 or cutmix_alpha < 0 or mixup_alpha == cutmix_alpha == 0:
            raise DataError(
                f"mixup and cutmix alphas must be >= 0 and not both 0, got {mixup_alpha} and {cutmix_alpha}"
            )
        if not 0.0 <= label_smoothing < 1.0:
            raise DataError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        mixes = []
        if mixup_alpha > 0:
            mixes.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
        if cutmix_alpha > 0:
            mixes.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
        self.mix = mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images.ndim != 4 or labels.shape != (images.shape[0],) or labels.is_floating_point():
            raise DataError(
                "expected images (B, C, H, W) and integer labels (B,), "
                f"got {tuple(images.shape)} and {tuple(labels.shape)} {labels.dtype}"
            )
        images, targets = self.mix(images, labels.long())
        return images, targets * (1.0 - self.label_smoothing) + self.label_smoothing / self.num_classes

    def collate(self, batch: Sequence[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Stack ``(image, label)`` items as the default collate does, then mix the batch."""
        images, labels = default_collate(list(batch))
        return self(images, labels)


def build_mixup(aug: AugmentConfig, num_classes: int) -> BatchMix | None:
    """The batch mix of ``aug`` (alphas ``aug.mixup`` and ``aug.cutmix``, smoothing ``aug.label_smoothing``).

    Returns ``None`` when both alphas are 0; the loss then applies the smoothing itself
    (``soft_target_cross_entropy(logits, labels, aug.label_smoothing)``). The returned mix
    already smooths its targets, so pair it with ``label_smoothing=0`` in the loss.
    """
    if aug.mixup == 0 and aug.cutmix == 0:
        return None
    return BatchMix(num_classes, aug.mixup, aug.cutmix, aug.label_smoothing)


def soft_target_cross_entropy(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy of ``(B, K)`` logits against hard ``(B,)`` class indices or soft ``(B, K)`` targets.

    Soft targets are probability rows (from :class:`BatchMix`); with ``label_smoothing`` eps
    either kind becomes ``(1 - eps) * target + eps / K`` first, so the result equals
    ``F.cross_entropy(logits, target, label_smoothing=eps)``, which computes it.
    """
    if logits.ndim != 2:
        raise DataError(f"logits must be (batch, classes), got shape {tuple(logits.shape)}")
    if not 0.0 <= label_smoothing < 1.0:
        raise DataError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    hard = target.shape == logits.shape[:1] and not target.is_floating_point()
    soft = target.shape == logits.shape and target.is_floating_point()
    if not (hard or soft):
        raise DataError(
            f"target must be integer class indices of shape {tuple(logits.shape[:1])} or float probabilities of "
            f"shape {tuple(logits.shape)}, got {target.dtype} of shape {tuple(target.shape)}"
        )
    return F.cross_entropy(logits, target.long() if hard else target, label_smoothing=label_smoothing)
