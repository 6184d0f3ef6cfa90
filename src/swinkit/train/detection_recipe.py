"""What a detector's settings should be for a set of boxes: input size, anchor sizes and aspect ratios.

The anchors follow the boxes' statistics at the detector's input scale: the smallest level's
anchor is the 5th percentile of the boxes' sizes (square root of the area), each next level
doubles it (more when the 95th percentile lies further out than the levels reach), and the
aspect ratios (height / width) are the 10th, 50th and 90th percentiles, rounded to a tenth
(once each). The input size is the median shorter side, to a multiple of 32.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

#: The input sizes (shorter side) the recipe chooses among, and torchvision's default.
MIN_INPUT, MAX_INPUT = 64, 800
#: Aspect ratios when there are no boxes to measure (torchvision's).
DEFAULT_RATIOS = (0.5, 1.0, 2.0)


@dataclasses.dataclass(frozen=True)
class AnchorChoice:
    """Anchor ``sizes`` (one tuple per level) and ``ratios``, with the reason for each as a sentence."""

    sizes: tuple[tuple[int, ...], ...]
    ratios: tuple[float, ...]
    sizes_reason: str
    ratios_reason: str


def choose_input_size(shorter_sides: Sequence[int]) -> int:
    """The median shorter side of the images, rounded to a multiple of 32, within 64..800."""
    median = float(np.median(shorter_sides)) if len(shorter_sides) else MAX_INPUT
    return int(min(MAX_INPUT, max(MIN_INPUT, 32 * round(median / 32))))


def choose_anchors(boxes: Sequence[tuple[float, float]], levels: int) -> AnchorChoice:
    """Anchors for ``boxes`` given as ``(width, height)`` at the detector's input scale, one size per level."""
    if not len(boxes):
        sizes = tuple((32 * 2**level,) for level in range(levels))
        return AnchorChoice(sizes, DEFAULT_RATIOS, "no boxes to measure: torchvision's sizes", "no boxes: 0.5, 1, 2")
    widths, heights = np.asarray(boxes, dtype=np.float64).T
    scales = np.sqrt(widths * heights)
    low, median, high = np.percentile(scales, [5, 50, 95])
    base = max(4.0, float(low))
    factor = max(2.0, (float(high) / base) ** (1 / max(levels - 1, 1)))
    sizes = tuple((int(round(base * factor**level)),) for level in range(levels))
    shapes = np.percentile(heights / widths, [10, 50, 90])
    ratios = tuple(sorted({round(float(ratio), 1) or 0.1 for ratio in shapes}))
    return AnchorChoice(
        sizes,
        ratios,
        f"box sizes 5/50/95th percentiles {low:.0f}/{median:.0f}/{high:.0f} px at the input scale: "
        f"{sizes[0][0]} px on the finest level, x{factor:.2f} per level",
        f"box height/width 10/50/90th percentiles {shapes[0]:.2f}/{shapes[1]:.2f}/{shapes[2]:.2f}",
    )
