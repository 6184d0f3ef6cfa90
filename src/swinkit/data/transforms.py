"""Image transforms for training and evaluation, built from torchvision's ``transforms.v2``.

The recipe is the Swin paper's (Sec. 4.1, after DeiT): RandomResizedCrop, horizontal flip,
RandAugment (m9, two ops), random erasing (p 0.25), and at batch level MixUp (0.8) / CutMix
(1.0) with label smoothing 0.1 (:mod:`swinkit.data.mixing`). Evaluation resizes the shorter
side to ``img_size / crop_pct`` and centre-crops ``img_size``. What depends on the model
(size, normalisation, channels) is in :class:`Preprocessing`; what is a training choice is
in :class:`AugmentConfig`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from swinkit.data.images import DataError
from swinkit.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

__all__ = [
    "CROPS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AugmentConfig",
    "Preprocessing",
    "TransformedDataset",
    "build_transforms",
    "eval_geometry",
]

INTERPOLATIONS = {
    "nearest": v2.InterpolationMode.NEAREST,
    "bilinear": v2.InterpolationMode.BILINEAR,
    "bicubic": v2.InterpolationMode.BICUBIC,
}
#: Training crops: RandomResizedCrop, or pad-and-crop (see :class:`AugmentConfig`).
CROPS = ("resized", "pad")
_RAND_AUGMENT = re.compile(r"rand(-m(?P<m>\d+)|-n(?P<n>\d+)|-mstd(?P<mstd>[\d.]+))*")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation; every step can be switched off for data where it makes no sense.

    ``crop`` is ``"resized"`` (RandomResizedCrop, whose area and aspect ratio ``scale`` and
    ``ratio`` bound; ``(1, 1)`` and ``(1, 1)`` keep the whole image of a square picture) or
    ``"pad"`` (the image resized as for evaluation, padded by ``pad`` pixels on each side by
    reflection, and a random crop of the input size taken: shifts of up to ``pad`` pixels,
    the usual small-image augmentation). ``hflip`` is the flip probability (0 disables it; do so for
    digits or text). ``auto_augment`` is ``"none"``, ``"trivial"`` (TrivialAugmentWide),
    ``"randaugment"`` (2 ops at magnitude 9) or a timm-style ``"rand-m9-n2-mstd0.5"``. The
    magnitude uses timm's scale, on which 10 is the strongest (torchvision's RandAugment with
    11 magnitude bins): m9 rotates by up to 27 degrees, as in the Swin recipe, where
    torchvision's default 31 bins would make m9 a third as strong. torchvision has no magnitude
    noise, so an ``mstd`` term is accepted for recipe strings but the magnitude stays fixed.
    ``re_prob`` is the random-erasing probability (0 disables it). ``mixup`` and ``cutmix`` are
    the Beta-distribution alphas of the batch mixes (both 0: no mixing), ``label_smoothing``
    the weight spread uniformly over the classes.
    """

    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    crop: str = "resized"
    pad: int = 4
    hflip: float = 0.5
    auto_augment: str = "rand-m9-mstd0.5"
    re_prob: float = 0.25
    mixup: float = 0.8
    cutmix: float = 1.0
    label_smoothing: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", tuple(float(s) for s in self.scale))
        object.__setattr__(self, "ratio", tuple(float(r) for r in self.ratio))
        if len(self.scale) != 2 or not 0.0 < self.scale[0] <= self.scale[1] <= 1.0:
            raise DataError(f"scale must be (low, high) with 0 < low <= high <= 1, got {self.scale}")
        if len(self.ratio) != 2 or not 0.0 < self.ratio[0] <= self.ratio[1]:
            raise DataError(f"ratio must be (low, high) with 0 < low <= high, got {self.ratio}")
        if self.crop not in CROPS:
            raise DataError(f"crop must be one of {', '.join(CROPS)}, got {self.crop!r}")
        if self.pad < 0:
            raise DataError(f"pad is a number of pixels >= 0, got {self.pad}")
        for name in ("hflip", "re_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise DataError(f"{name} is a probability in [0, 1], got {getattr(self, name)}")
        if self.mixup < 0 or self.cutmix < 0:
            raise DataError(f"mixup and cutmix alphas must be >= 0 (0 disables), got {self.mixup} and {self.cutmix}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise DataError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        _auto_augment(self.auto_augment, v2.InterpolationMode.BICUBIC, [0, 0, 0])


class ConvertMode:
    """Convert a PIL image to the model's mode (``"RGB"`` or ``"L"``); a no-op when it already is.

    A module-level class rather than a lambda, so that transforms pickle into DataLoader workers.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def __call__(self, image: Image.Image) -> Image.Image:
        if not isinstance(image, Image.Image):
            raise DataError(f"transforms take PIL images (as the datasets yield), got {type(image).__name__}")
        return image if image.mode == self.mode else image.convert(self.mode)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mode={self.mode!r})"


def build_transforms(train: bool, pre: Preprocessing, aug: AugmentConfig | None = None) -> Callable:
    """The per-image transform, PIL image -> normalised ``pre.input_size`` float32 tensor.

    Train: convert mode, RandomResizedCrop(``img_size``, ``aug.scale``, ``aug.ratio``,
    antialiased) or, with ``aug.crop == "pad"``, the evaluation resize and a random crop of
    the image padded by ``aug.pad`` pixels (reflected), horizontal flip, RandAugment /
    TrivialAugmentWide (filling with the mean colour), to float in 0..1,
    Normalize(``pre.mean``, ``pre.std``), RandomErasing with per-pixel normal noise (timm's
    "pixel" mode). Steps whose ``aug`` flag is 0 or ``"none"`` are left out; ``aug=None``
    means ``AugmentConfig()``. Eval (``aug`` unused): convert mode,
    Resize(shorter side ``int(img_size / crop_pct)``), CenterCrop(``img_size``), to float,
    Normalize; it is deterministic.
    """
    interpolation = INTERPOLATIONS[pre.interpolation]
    to_tensor = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(pre.mean, pre.std)]
    height, width = pre.img_size
    if not train:
        return v2.Compose([*eval_geometry(pre), *to_tensor])
    aug = AugmentConfig() if aug is None else aug
    if aug.crop == "pad":
        pad = [v2.RandomCrop((height, width), padding=aug.pad, padding_mode="reflect")] if aug.pad else []
        steps: list[Callable] = [*eval_geometry(pre), *pad]
    else:
        crop = v2.RandomResizedCrop((height, width), aug.scale, aug.ratio, interpolation=interpolation, antialias=True)
        steps = [ConvertMode(pre.mode), crop]
    if aug.hflip > 0:
        steps.append(v2.RandomHorizontalFlip(aug.hflip))
    auto = _auto_augment(aug.auto_augment, interpolation, fill=[round(255 * m) for m in pre.mean])
    if auto is not None:
        steps.append(auto)
    steps += to_tensor
    if aug.re_prob > 0:
        steps.append(v2.RandomErasing(p=aug.re_prob, value="random"))
    return v2.Compose(steps)


def eval_geometry(pre: Preprocessing) -> list[Callable]:
    """Mode conversion, resize and centre crop of the evaluation transform: PIL image -> PIL image.

    The shorter side of a square input is resized to ``int(img_size / crop_pct)`` (keeping
    the aspect ratio, as timm does); a rectangular one resizes both sides by ``1 / crop_pct``.
    Then the centre ``img_size`` is cropped.
    """
    height, width = pre.img_size
    scaled = (int(height / pre.crop_pct), int(width / pre.crop_pct))
    interpolation = INTERPOLATIONS[pre.interpolation]
    resize = v2.Resize(scaled[0] if height == width else scaled, interpolation=interpolation, antialias=True)
    return [ConvertMode(pre.mode), resize, v2.CenterCrop((height, width))]


class TransformedDataset(Dataset):
    """A raw dataset seen through a transform: ``(image, label) -> (transform(image), label)``.

    Picklable when the transform is (those of :func:`build_transforms` are).
    """

    def __init__(self, dataset: Sequence[tuple[Image.Image, int]] | Dataset, transform: Callable) -> None:
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]  # map-style datasets have a length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.dataset[index]
        return self.transform(image), label


def _auto_augment(name: str, interpolation: v2.InterpolationMode, fill: list[int]) -> v2.Transform | None:
    """The automatic-augmentation transform ``name`` names (see :class:`AugmentConfig`), or None for "none"."""
    key = name.strip().lower()
    if key in ("none", ""):
        return None
    if key in ("trivial", "trivialaugment"):
        return v2.TrivialAugmentWide(interpolation=interpolation, fill=fill)
    if key == "randaugment":
        key = "rand-m9-n2"
    match = _RAND_AUGMENT.fullmatch(key)
    if match is None:
        raise DataError(
            f"auto_augment must be 'none', 'trivial', 'randaugment' or like 'rand-m9-n2-mstd0.5', got {name!r}"
        )
    magnitude = int(match["m"] or 9)
    num_ops = int(match["n"] or 2)
    if magnitude > 10:
        raise DataError(f"RandAugment magnitude goes from 0 to 10 (timm's scale), got m{magnitude} in {name!r}")
    return v2.RandAugment(
        num_ops=num_ops, magnitude=magnitude, num_magnitude_bins=11, interpolation=interpolation, fill=fill
    )
