"""A plain PyTorch training loop over decoded small images, generic over the model: what a user writes.

The small-data benchmark trains its baselines with it (:mod:`swinkit.bench.small_data`): uint8
images held as one tensor, normalised per channel, zero-padded and randomly cropped, flipped;
AdamW with weight decay on the weights only, linear warm-up then cosine, label smoothing 0.1.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def channels_first(images: np.ndarray) -> torch.Tensor:
    """uint8 images ``(N, H, W)`` or ``(N, H, W, C)`` as a ``(N, C, H, W)`` uint8 tensor."""
    tensor = torch.as_tensor(images)
    return tensor[:, None] if tensor.ndim == 3 else tensor.permute(0, 3, 1, 2).contiguous()


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Mean and std of each channel of uint8 images ``(N, H, W)`` or ``(N, H, W, C)``, on the 0-1 scale."""
    values = channels_first(images).double() / 255.0
    return values.mean((0, 2, 3)).tolist(), values.std((0, 2, 3)).tolist()


def pad_crop_flip(images: torch.Tensor, pad: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """The typical small-image augmentation on a float batch: zero-pad, random crop, random flip."""
    batch, _, height, width = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    tops = torch.randint(0, 2 * pad + 1, (batch,), generator=generator)
    lefts = torch.randint(0, 2 * pad + 1, (batch,), generator=generator)
    out = torch.stack([padded[i, :, t : t + height, l : l + width] for i, (t, l) in enumerate(zip(tops, lefts))])
    if flip:
        mirrored = torch.rand(batch, generator=generator) < 0.5
        out = torch.where(mirrored[:, None, None, None], out.flip(3), out)
    return out


class PlainLoop:
    """A plain PyTorch training loop over uint8 images ``(N, H, W)`` or ``(N, H, W, C)`` (what a user writes for small
    images), generic over the model."""

    def __init__(
        self,
        model: nn.Module,
        images: np.ndarray,
        labels: np.ndarray,
        batch: int,
        lr: float,
        mean: Sequence[float],
        std: Sequence[float],
        pad: int,
        flip: bool,
        clip: float,
        seed: int,
        warmup: float = 0.05,
    ) -> None:
        self.model = model
        self.images, self.labels = channels_first(images), torch.as_tensor(labels)
        self.batch, self.lr, self.pad, self.flip, self.clip, self.warmup = batch, lr, pad, flip, clip, warmup
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        decay = [p for n, p in model.named_parameters() if p.ndim > 1 and "relative_position_bias_table" not in n]
        rest = [p for n, p in model.named_parameters() if not (p.ndim > 1 and "relative_position_bias_table" not in n)]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0}], lr=lr
        )
        self.generator = torch.Generator().manual_seed(seed)
        self.steps_per_epoch = math.ceil(len(self.images) / batch)
        self.total = 1
        self.done = 0

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of normalised, augmented batches with their labels, in a random order."""
        order = torch.randperm(len(self.images), generator=self.generator)
        for start in range(0, len(order), self.batch):
            rows = order[start : start + self.batch]
            images = (self.images[rows].float() / 255.0 - self.mean) / self.std
            yield pad_crop_flip(images, self.pad, self.flip, self.generator), self.labels[rows]

    def endless(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches as :meth:`batches` gives them, epoch after epoch without end (for timing steps)."""
        while True:
            yield from self.batches()

    def rate(self) -> float:
        """The learning rate of the next step: linear warm-up over ``warmup`` of the steps, then cosine."""
        warm = max(1, round(self.warmup * self.total))
        if self.done < warm:
            return self.lr * (self.done + 1) / warm
        progress = (self.done - warm) / max(1, self.total - warm)
        return self.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """One optimiser step on a batch; returns its loss."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.rate()
        loss = F.cross_entropy(self.model(images), labels, label_smoothing=0.1)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        self.done += 1
        return loss.item()

    def evaluate(self, images: np.ndarray, labels: np.ndarray) -> float:
        """Top-1 accuracy on uint8 images ``(N, H, W)`` or ``(N, H, W, C)``, percent."""
        images = channels_first(images)
        self.model.eval()
        correct = 0
        with torch.no_grad():
            for start in range(0, len(images), 256):
                batch = (images[start : start + 256].float() / 255.0 - self.mean) / self.std
                correct += int((self.model(batch).argmax(1) == torch.as_tensor(labels[start : start + 256])).sum())
        self.model.train()
        return 100.0 * correct / len(images)
