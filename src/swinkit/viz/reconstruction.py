"""SimMIM's reconstructions as a picture: per image, the original, what the encoder saw, and the prediction."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from swinkit.preprocessing import Preprocessing
from swinkit.viz.attention import denormalize
from swinkit.viz.figure import new_figure

#: The grey that stands for a hidden patch in the middle column.
MASKED_GREY = 0.5
_COLUMNS = ("original", "masked (the encoder's input)", "reconstruction of the masked patches")


def reconstruction_panels(
    pixels: torch.Tensor, mask: torch.Tensor, reconstruction: torch.Tensor, preprocessing: Preprocessing
) -> np.ndarray:
    """The three panels of each image as ``(B, 3, H, W, C)`` values in ``[0, 1]``.

    ``pixels`` and ``reconstruction`` are normalised ``(B, C, H, W)`` batches and ``mask``
    ``(B, h, w)`` booleans on the patch grid (``H / h`` pixels per patch). Panel 0 is the
    image, panel 1 the image with the masked patches grey, panel 2 the image with the masked
    patches replaced by the model's prediction (SimMIM's loss sees only those).
    """
    if pixels.shape != reconstruction.shape or pixels.dim() != 4:
        raise ValueError(
            f"pixels {tuple(pixels.shape)} and reconstruction {tuple(reconstruction.shape)} must have one "
            f"(B, C, H, W) shape"
        )
    patch = pixels.shape[2] // mask.shape[1]
    hidden = mask.repeat_interleave(patch, 1).repeat_interleave(patch, 2).cpu().numpy()[..., None]
    panels = []
    for image, predicted, covered in zip(pixels, reconstruction, hidden):
        original = denormalize(image, preprocessing)
        filled = np.where(covered, denormalize(predicted, preprocessing), original)
        panels.append(np.stack([original, np.where(covered, MASKED_GREY, original), filled]))
    return np.stack(panels)


def draw_reconstructions(
    pixels: torch.Tensor,
    mask: torch.Tensor,
    reconstruction: torch.Tensor,
    preprocessing: Preprocessing,
    title: str = "",
) -> Figure:
    """A figure with one row per image: original, masked, reconstruction (see :func:`reconstruction_panels`)."""
    panels = reconstruction_panels(pixels, mask, reconstruction, preprocessing)
    rows = len(panels)
    figure = new_figure(7.5, 2.4 * rows + (0.4 if title else 0.0))
    axes = figure.subplots(rows, 3, squeeze=False)
    for row, images in enumerate(panels):
        for column, image in enumerate(images):
            axis = axes[row][column]
            gray = image.shape[-1] == 1
            axis.imshow(image[..., 0] if gray else image, cmap="gray" if gray else None, vmin=0.0, vmax=1.0)
            axis.set_axis_off()
            if row == 0:
                axis.set_title(_COLUMNS[column], fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure
