"""Pictures of detections: boxes with labels and scores, masks tinted, ground truth beside predictions.

Drawn with torchvision's :func:`~torchvision.utils.draw_bounding_boxes` and
:func:`~torchvision.utils.draw_segmentation_masks` onto the image itself (uint8 pixels, no
resampling), one colour per class.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

#: Class colours, cycled by label (label 1 takes the first).
PALETTE = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128),
)  # fmt: skip
MASK_ALPHA = 0.4
GAP = 4


def class_colour(label: int) -> tuple[int, int, int]:
    """The colour of class ``label`` (1..K)."""
    return PALETTE[(label - 1) % len(PALETTE)]


def draw_detections(
    image: torch.Tensor | Image.Image,
    boxes: torch.Tensor,
    labels: torch.Tensor,
    names: Sequence[str],
    scores: torch.Tensor | None = None,
    masks: torch.Tensor | None = None,
) -> Image.Image:
    """``image`` (``(3, H, W)`` float in [0, 1] or uint8, or a PIL image) with its boxes drawn.

    Each box is outlined in its class's colour and captioned with the class name
    (``names[label - 1]``) and, given ``scores``, the score; ``masks`` (``(N, H, W)`` or
    ``(N, 1, H, W)``, probabilities or 0/1) are tinted over at 0.5.
    """
    pixels = TF.pil_to_tensor(image) if isinstance(image, Image.Image) else image
    if pixels.is_floating_point():
        pixels = (pixels.clamp(0, 1) * 255).round().to(torch.uint8)
    pixels = pixels.cpu()
    colours = [class_colour(int(label)) for label in labels]
    if masks is not None and len(masks):
        binary = masks.reshape(len(masks), *masks.shape[-2:]).cpu() > 0.5
        pixels = draw_segmentation_masks(pixels, binary, alpha=MASK_ALPHA, colors=colours)
    if len(boxes):
        captions = [names[int(label) - 1] if 0 < label <= len(names) else str(int(label)) for label in labels]
        if scores is not None:
            captions = [f"{caption} {float(score):.2f}" for caption, score in zip(captions, scores)]
        pixels = draw_bounding_boxes(pixels, boxes.detach().cpu().float(), captions, colors=colours, width=2)
    return TF.to_pil_image(pixels)


def side_by_side(left: Image.Image, right: Image.Image) -> Image.Image:
    """Two pictures next to each other on white, ``GAP`` pixels apart (ground truth left, predictions right)."""
    canvas = Image.new("RGB", (left.width + GAP + right.width, max(left.height, right.height)), "white")
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width + GAP, 0))
    return canvas
