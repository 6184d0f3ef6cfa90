"""Image and mask transformed together, with torchvision's ``transforms.v2`` and ``tv_tensors.Mask``.

Training follows mmsegmentation's ADE20K pipeline: rescale by a random ratio (0.5-2.0 of a
base size), a random crop that avoids crops filled by one class (``cat_max_ratio``), padding
to the crop (the mask with 255, ignored), a horizontal flip, photometric distortion of the
image alone, then the image to normalised float and the mask to int64. torchvision resizes
masks by nearest neighbour whatever the image's interpolation, so no step invents a class.
Evaluation resizes the image (shorter side to a size, as mmsegmentation's test pipeline)
or keeps it, and keeps the mask as it is: predictions are scored at the mask's resolution.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from swinkit.data.images import DataError
from swinkit.data.segmentation import IGNORE_INDEX

#: The longest side a rescaled image may have, as a multiple of the base shorter side
#: (mmsegmentation's 2048 x 512 scale for ADE20K).
LONG_SIDE_LIMIT = 4
#: Crops drawn at most to find one where no class covers more than ``cat_max_ratio``.
CROP_ATTEMPTS = 10


@dataclasses.dataclass(frozen=True)
class SegAugment:
    """Training augmentation of image/mask pairs; each step can be switched off.

    ``ratio_range``: the rescale ratio's bounds, drawn uniformly (``(1, 1)``: resize to the
    base size only). ``cat_max_ratio``: a crop is redrawn (up to :data:`CROP_ATTEMPTS` times)
    while one class covers this share of its labelled pixels or more (1: any crop).
    ``hflip``: the flip probability. ``photometric``: colour jitter of the image with
    mmsegmentation's ranges (brightness ±12.5%, its ±32 levels; contrast and saturation
    0.5-1.5; hue ±18 degrees).
    """

    ratio_range: tuple[float, float] = (0.5, 2.0)
    cat_max_ratio: float = 0.75
    hflip: float = 0.5
    photometric: bool = True

    def __post_init__(self) -> None:
        low, high = self.ratio_range
        if not 0 < low <= high:
            raise DataError(f"ratio_range must be (low, high) with 0 < low <= high, got {self.ratio_range}")
        if not 0 < self.cat_max_ratio <= 1:
            raise DataError(f"cat_max_ratio is a share of the crop's pixels in (0, 1], got {self.cat_max_ratio}")
        if not 0 <= self.hflip <= 1:
            raise DataError(f"hflip is a probability in [0, 1], got {self.hflip}")


class ToMode(v2.Transform):
    """Convert PIL images to ``mode`` (``"RGB"`` or ``"L"``); masks and tensors pass through."""

    _transformed_types = (Image.Image,)

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        """The image in ``mode``."""
        return inpt if inpt.mode == self.mode else inpt.convert(self.mode)


class ClassBalancedCrop(v2.RandomCrop):
    """``RandomCrop`` (padding when the input is smaller) that avoids crops dominated by one class.

    mmsegmentation's ``cat_max_ratio``: a crop is accepted when it holds at least two classes
    and the largest covers less than ``cat_max_ratio`` of its labelled pixels (255 not
    counted); after :data:`CROP_ATTEMPTS` draws the last is kept. At 1 any crop is kept.
    """

    def __init__(self, size: int | Sequence[int], cat_max_ratio: float, fill: dict[Any, Any]) -> None:
        super().__init__(size, pad_if_needed=True, fill=fill)
        self.cat_max_ratio = cat_max_ratio

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        """The crop's position (and padding), redrawn while one class dominates the mask inside it."""
        masks = [item for item in flat_inputs if isinstance(item, tv_tensors.Mask)]
        params = super().make_params(flat_inputs)
        if self.cat_max_ratio >= 1 or not masks:
            return params
        for _ in range(CROP_ATTEMPTS - 1):
            if self._balanced(masks[0], params):
                break
            params = super().make_params(flat_inputs)
        return params

    def _balanced(self, mask: torch.Tensor, params: dict[str, Any]) -> bool:
        left, top = params["padding"][:2]
        row, column = max(0, params["top"] - top), max(0, params["left"] - left)
        bottom, right = params["top"] - top + params["height"], params["left"] - left + params["width"]
        region = mask[..., row:bottom, column:right].flatten().long()
        counts = torch.bincount(region, minlength=IGNORE_INDEX + 1)[:IGNORE_INDEX]
        counts = counts[counts > 0]
        return len(counts) > 1 and float(counts.max()) / float(counts.sum()) < self.cat_max_ratio


def build_seg_transforms(
    train: bool,
    *,
    size: int | None,
    mean: Sequence[float],
    std: Sequence[float],
    mode: str = "RGB",
    crop: int | tuple[int, int] | None = None,
    aug: SegAugment | None = None,
) -> Callable[[Image.Image, tv_tensors.Mask], tuple[torch.Tensor, torch.Tensor]]:
    """The pair transform: ``(PIL image, Mask) -> (normalised float image (C, H, W), int64 mask (H, W))``.

    Train: convert to ``mode``; rescale so that the shorter side is ``size * r`` with ``r``
    drawn from ``aug.ratio_range`` (the longer side at most :data:`LONG_SIDE_LIMIT` times
    the largest shorter side); :class:`ClassBalancedCrop` of ``crop`` (default ``size``),
    padding the image with the mean colour and the mask with 255; flip; photometric
    distortion; to float; normalise. ``aug=None`` means ``SegAugment()``.
    Eval (``aug`` and ``crop`` unused): the image converted, resized to shorter side ``size``
    (longer side at most :data:`LONG_SIDE_LIMIT` times it; ``size=None``: kept), to float and
    normalised; the mask only converted to int64, at its own size.
    """
    to_tensors = [
        v2.ToImage(),
        v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, "others": None}, scale=True),
        v2.Normalize(list(mean), list(std)),
    ]
    if not train:
        resize = [] if size is None else [v2.Resize(size, max_size=LONG_SIDE_LIMIT * size, antialias=True)]
        return EvalPair(v2.Compose([ToMode(mode), *resize, *to_tensors]))
    if size is None:
        raise DataError("training transforms need a base size (the shorter side before the random rescale)")
    aug = SegAugment() if aug is None else aug
    low, high = round(size * aug.ratio_range[0]), round(size * aug.ratio_range[1])
    levels = [round(255 * value) for value in mean]
    fill = {tv_tensors.Mask: IGNORE_INDEX, "others": levels[0] if mode == "L" else tuple(levels)}
    steps: list[Callable] = [
        ToMode(mode),
        v2.RandomShortestSize(list(range(low, high + 1)), max_size=LONG_SIDE_LIMIT * high, antialias=True),
        ClassBalancedCrop(size if crop is None else crop, aug.cat_max_ratio, fill),
    ]
    if aug.hflip > 0:
        steps.append(v2.RandomHorizontalFlip(aug.hflip))
    if aug.photometric:
        steps.append(v2.ColorJitter(brightness=0.125, contrast=0.5, saturation=0.5, hue=0.05))
    return v2.Compose([*steps, *to_tensors])


class EvalPair:
    """The evaluation transform of a pair: ``image_transform`` on the image, the mask to int64 as it is."""

    def __init__(self, image_transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.image_transform = image_transform

    def __call__(self, image: Image.Image, mask: tv_tensors.Mask) -> tuple[torch.Tensor, torch.Tensor]:
        return self.image_transform(image), mask.to(torch.int64)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.image_transform!r})"


class PairDataset(Dataset):
    """Raw pairs seen through a pair transform: ``(image, mask) -> transform(image, mask)``."""

    def __init__(self, dataset: Dataset, transform: Callable[[Image.Image, tv_tensors.Mask], Any]) -> None:
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]  # map-style datasets have a length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.dataset[index]
        return self.transform(image, mask)
