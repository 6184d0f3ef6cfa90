"""Pictures of segmentation: class colours, masks laid over images, the per-class IoU chart, a validation grid.

Masks are ``(H, W)`` integer arrays of class indices, 255 for ignored pixels; images are
``(H, W, 3)`` or ``(H, W)`` uint8. Figures are drawn on their own Agg canvas
(:func:`~swinkit.viz.figure.new_figure`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image

from swinkit.data.segmentation import IGNORE_INDEX
from swinkit.viz.figure import new_figure

#: The colour of ignored pixels in a coloured mask (they keep the image's colour in an overlay).
IGNORE_COLOUR = (255, 255, 255)
#: Samples a validation grid shows at most.
GRID_ROWS = 8


def palette(num_classes: int) -> np.ndarray:
    """``(num_classes, 3)`` uint8 colours, all different: PASCAL VOC's bit-spread palette from its entry 1.

    Entry ``i`` spreads the bits of ``i + 1`` over the high bits of red, green and blue (bit
    0 to red's top bit, bit 1 to green's, bit 2 to blue's, the next three one bit lower ...),
    so that neighbouring classes get distant colours and none is black.
    """
    if not 1 <= num_classes <= IGNORE_INDEX:
        raise ValueError(f"a palette has 1 to {IGNORE_INDEX} classes, got {num_classes}")
    codes = np.arange(1, num_classes + 1)
    colours = np.zeros((num_classes, 3), np.int64)
    for level in range(8):
        for channel in range(3):
            colours[:, channel] |= ((codes >> (3 * level + channel)) & 1) << (7 - level)
    return colours.astype(np.uint8)


def colorize(mask: np.ndarray | torch.Tensor, colours: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8: each pixel in its class's colour, ignored pixels in :data:`IGNORE_COLOUR`.

    Raises ``ValueError`` for an index with no colour.
    """
    indices = np.asarray(mask, dtype=np.int64)
    wrong = (indices < 0) | ((indices >= len(colours)) & (indices != IGNORE_INDEX))
    if wrong.any():
        raise ValueError(f"mask index {int(indices[wrong][0])} has no colour (palette of {len(colours)} classes)")
    return _colour_table(colours)[indices]


def overlay(
    image: np.ndarray, mask: np.ndarray | torch.Tensor, colours: np.ndarray, alpha: float = 0.5
) -> np.ndarray:
    """``(H, W, 3)`` uint8: the image blended with its classes' colours (``alpha`` of the colour).

    Ignored pixels keep the image's colour; a grey image is drawn as RGB.
    """
    picture = np.asarray(image, dtype=np.float64)
    if picture.ndim == 2:
        picture = np.repeat(picture[..., None], 3, axis=2)
    indices = np.asarray(mask)
    if picture.shape[:2] != indices.shape:
        image_size, mask_size = picture.shape[1::-1], indices.shape[::-1]
        raise ValueError(f"the image is {image_size[0]}x{image_size[1]}, the mask {mask_size[0]}x{mask_size[1]}")
    blended = (1 - alpha) * picture + alpha * colorize(indices, colours)
    blended[indices == IGNORE_INDEX] = picture[indices == IGNORE_INDEX]
    return np.rint(blended).astype(np.uint8)


def mask_image(mask: np.ndarray | torch.Tensor, colours: np.ndarray) -> Image.Image:
    """The mask as a palette (``P``) image: its pixel values are the class indices, shown in ``colours``.

    Saved as PNG it reads back as indices (:func:`~swinkit.data.segmentation.mask_indices`)
    and shows in colour in any image viewer.
    """
    indices = np.asarray(mask)
    if indices.size and (indices.min() < 0 or indices.max() > IGNORE_INDEX):
        raise ValueError(f"mask values go from 0 to {IGNORE_INDEX}, got {indices.min()} to {indices.max()}")
    picture = Image.fromarray(indices.astype(np.uint8), mode="P")
    picture.putpalette(_colour_table(colours).ravel().tolist())
    return picture


def _colour_table(colours: np.ndarray) -> np.ndarray:
    """``(256, 3)`` uint8: ``colours`` first, :data:`IGNORE_COLOUR` for every other value."""
    table = np.full((IGNORE_INDEX + 1, 3), IGNORE_COLOUR, np.uint8)
    table[: len(colours)] = colours
    return table


def draw_class_iou(iou: Sequence[float], classes: Sequence[str], title: str = "") -> Figure:
    """A bar per class of its IoU (percent), ``n/a`` for a class with none, and the mean as a line."""
    if len(iou) != len(classes):
        raise ValueError(f"{len(iou)} IoU values for {len(classes)} classes")
    present = [value for value in iou if not math.isnan(value)]
    figure = new_figure(7.5, min(40.0, 1.2 + 0.24 * len(classes)))
    axes = figure.subplots()
    rows = np.arange(len(classes))
    values = [0.0 if math.isnan(value) else value for value in iou]
    axes.barh(rows, values, color=[tuple(c / 255 for c in colour) for colour in palette(max(1, len(classes)))])
    for row, value in zip(rows, iou):
        axes.text(1 if math.isnan(value) else value + 1, row, "n/a" if math.isnan(value) else f"{value:.1f}",
                  va="center", fontsize=8)  # fmt: skip
    if present:
        mean = sum(present) / len(present)
        axes.axvline(mean, color="black", linestyle="--", linewidth=1, label=f"mIoU {mean:.1f}")
        axes.legend(loc="lower right")
    axes.set_yticks(rows, [str(name) for name in classes])
    axes.invert_yaxis()
    axes.set(xlim=(0, 105), xlabel="IoU (%)", title=title or "IoU per class")
    figure.tight_layout()
    return figure


def draw_segmentation_grid(
    images: Sequence[np.ndarray],
    truths: Sequence[np.ndarray | torch.Tensor],
    predictions: Sequence[np.ndarray | torch.Tensor],
    classes: Sequence[str],
    title: str = "",
) -> Figure:
    """Rows of image, ground truth and prediction (in the classes' colours), with a legend of the classes shown.

    At most :data:`GRID_ROWS` samples are drawn; pixels are shown unsmoothed.
    """
    if not len(images) == len(truths) == len(predictions) or not images:
        raise ValueError(f"got {len(images)} images, {len(truths)} masks and {len(predictions)} predictions")
    count = min(GRID_ROWS, len(images))
    colours = palette(len(classes))
    figure = new_figure(9, 0.6 + 2.6 * count)
    axes = np.asarray(figure.subplots(count, 3, squeeze=False))
    shown: set[int] = set()
    for row in range(count):
        truth, predicted = np.asarray(truths[row]), np.asarray(predictions[row])
        shown |= set(np.unique(truth).tolist()) | set(np.unique(predicted).tolist())
        image = np.asarray(images[row])
        panels = (image, colorize(truth, colours), colorize(predicted, colours))
        for column, (panel, name) in enumerate(zip(panels, ("image", "ground truth", "prediction"))):
            axes[row, column].imshow(panel, cmap="gray" if panel.ndim == 2 else None, interpolation="nearest")
            axes[row, column].set_axis_off()
            if row == 0:
                axes[row, column].set_title(name)
    handles = [Patch(color=tuple(c / 255 for c in colours[index]), label=classes[index])
               for index in sorted(shown - {IGNORE_INDEX})]  # fmt: skip
    figure.legend(handles=handles, loc="lower center", ncol=min(6, max(1, len(handles))), fontsize=8)
    if title:
        figure.suptitle(title)
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    return figure
