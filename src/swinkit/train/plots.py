"""Training pictures: loss and metric curves per epoch, and the confusion matrix (drawn without pyplot)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from swinkit.viz.figure import new_figure


def _column(rows: Sequence[Mapping[str, object]], key: str) -> list[float]:
    return [float(row[key]) if row.get(key) not in (None, "") else float("nan") for row in rows]


def plot_curves(
    rows: Sequence[Mapping[str, object]],
    path: str | Path,
    metrics: Mapping[str, str] | None = None,
    title: str = "validation",
) -> None:
    """Draw train/validation loss, the ``metrics`` columns (column -> label, under ``title``) and the learning rate.

    Without ``metrics`` only the loss and the learning rate are drawn.
    """
    epochs = _column(rows, "epoch")
    panels = 3 if metrics else 2
    figure = new_figure(13 if metrics else 9, 3.6)
    axes = figure.subplots(1, panels)
    loss_axes, lr_axes = axes[0], axes[-1]
    loss_axes.plot(epochs, _column(rows, "train_loss"), label="train")
    loss_axes.plot(epochs, _column(rows, "val_loss"), label="validation")
    loss_axes.set(title="loss", xlabel="epoch")
    loss_axes.legend()
    if metrics:
        for column, label in metrics.items():
            axes[1].plot(epochs, _column(rows, column), label=label)
        axes[1].set(title=title, xlabel="epoch")
        axes[1].legend()
    lr_axes.plot(epochs, _column(rows, "lr"))
    lr_axes.set(title="learning rate (end of epoch)", xlabel="epoch")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def plot_confusion(confusion: torch.Tensor, classes: Sequence[str], path: str | Path, title: str = "") -> None:
    """Draw a confusion matrix (rows: true class, columns: predicted), counts in the cells."""
    count = len(classes)
    size = min(4 + 0.45 * count, 24)
    figure = new_figure(size, size * 0.9)
    axes = figure.subplots()
    image = axes.imshow(confusion.numpy(), cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046)
    ticks = range(count)
    axes.set_xticks(ticks, [str(c) for c in classes], rotation=90 if count > 10 else 0)
    axes.set_yticks(ticks, [str(c) for c in classes])
    axes.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    if count <= 30:
        limit = confusion.max().item() / 2
        for i in range(count):
            for j in range(count):
                value = int(confusion[i, j])
                if value:
                    axes.text(
                        j, i, value, ha="center", va="center", color="white" if value > limit else "black", fontsize=8
                    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
