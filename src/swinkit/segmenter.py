"""Using a trained segmenter: evaluate it on images with masks, predict a mask for each image.

Any segmenter :func:`swinkit.create_model` loads works: a swinkit run (its best checkpoint)
or export, transformers' UperNet, mmsegmentation's checkpoints. Images are read as in
validation: resized so that the shorter side is the training crop's (or kept), scored at
the mask's resolution; a sliding window over crops (overlaps averaged) serves images much
larger than the training crop.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import tv_tensors

import swinkit
from swinkit.classifier import expand_inputs
from swinkit.data.images import BadImage, load_images
from swinkit.data.seg_transforms import build_seg_transforms
from swinkit.data.segmentation import IGNORE_INDEX, load_segmentation
from swinkit.model import SwinUperNet
from swinkit.precision import apply_precision, check_precision, input_dtype
from swinkit.preprocessing import Preprocessing
from swinkit.train.seg_metrics import ConfusionMeter, SegmentationScores
from swinkit.viz.segmentation import mask_image, overlay, palette


@dataclasses.dataclass
class Segmenter:
    """A segmenter ready for inference, with its preprocessing, class names and precision.

    ``window`` and ``stride`` (pixels) switch on sliding-window inference: crops of
    ``window`` taken every ``stride`` (default two thirds of the window), their logits
    averaged where they overlap.
    """

    model: SwinUperNet
    preprocessing: Preprocessing
    classes: list[str]
    device: torch.device
    precision: str = "fp32"
    window: int | None = None
    stride: int | None = None

    @property
    def size(self) -> int:
        """The shorter side images are resized to: the training crop's."""
        return min(self.preprocessing.img_size)

    def transform(self, image: Image.Image, mask: tv_tensors.Mask) -> tuple[torch.Tensor, torch.Tensor]:
        """The evaluation transform: the image resized and normalised, the mask as it is (int64)."""
        pre = self.preprocessing
        return build_seg_transforms(False, size=self.size, mean=pre.mean, std=pre.std, mode=pre.mode)(image, mask)

    @torch.no_grad()
    def logits(self, pixels: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """Float32 logits ``(1, K, *size)`` of one preprocessed image ``(C, h, w)``, resized to ``size``."""
        batch = pixels[None].to(self.device, input_dtype(self.precision))
        if self.window is None:
            logits = self.model(batch)
        else:
            logits = self.model.sliding_window(batch, self.window, self.stride)
        return F.interpolate(logits.float(), size=tuple(size), mode="bilinear", align_corners=False)

    def predict(self, image: Image.Image) -> np.ndarray:
        """The class of each pixel of ``image``, ``(H, W)`` uint8 at the image's own size."""
        blank = tv_tensors.Mask(torch.zeros(image.height, image.width, dtype=torch.uint8))
        pixels, _ = self.transform(image, blank)
        return self.logits(pixels, (image.height, image.width)).argmax(1)[0].to(torch.uint8).cpu().numpy()


def open_segmenter(
    source: str | os.PathLike[str],
    device: str | None = None,
    precision: str = "fp32",
    window: int | None = None,
    stride: int | None = None,
) -> Segmenter:
    """Load the segmenter in ``source`` in eval mode and ``precision`` (``fp32``, ``bf16`` or ``int8``).

    Classes are the checkpoint's labels, else ``"0"``, ``"1"``, .... The device defaults to
    CUDA when available (int8 runs on the CPU only). Raises ValueError when ``source`` holds
    a classifier, or for a ``window`` or ``stride`` below 1.
    """
    check_precision(precision, device)
    for name, value in (("window", window), ("stride", stride)):
        if value is not None and value < 1:
            raise ValueError(f"the sliding window's {name} is a number of pixels >= 1, got {value}")
    model = swinkit.create_model(pretrained=str(source))
    if not isinstance(model, SwinUperNet):
        raise ValueError(f"{source} holds a {type(model).__name__}, not a segmenter; use it with --task classify")
    chosen = torch.device(device or ("cuda" if torch.cuda.is_available() and precision != "int8" else "cpu"))
    model.to(chosen).eval()
    stored = getattr(model, "pretrained_cfg", None)
    backbone = model.config.backbone
    preprocessing = (
        Preprocessing.from_dict(stored) if stored else Preprocessing.default(backbone.img_size, backbone.in_chans)
    )
    classes = list(model.config.labels) or [str(index) for index in range(model.num_classes)]
    model = apply_precision(model, precision, inplace=True)
    return Segmenter(model, preprocessing, classes, chosen, precision, window, stride)


@dataclasses.dataclass(frozen=True)
class Evaluated:
    """What :func:`evaluate_masks` found: the scores, the images scored, and the data's source."""

    scores: SegmentationScores
    images: int
    source: str


def evaluate_masks(segmenter: Segmenter, data: str, zero_is_ignore: bool | None = None) -> Evaluated:
    """mIoU, pixel accuracy and per-class IoU of ``segmenter`` on every pair of ``data`` (a segmentation source).

    The data's classes are matched to the model's by position; a data set naming more
    classes than the model has raises ValueError.
    """
    bundle = load_segmentation(data, val_split=0.0, zero_is_ignore=zero_is_ignore)
    if len(bundle.classes) > len(segmenter.classes):
        raise ValueError(
            f"{data} names {len(bundle.classes)} classes but the model has {len(segmenter.classes)} "
            f"({', '.join(segmenter.classes[:10])})"
        )
    meter = ConfusionMeter(len(segmenter.classes))
    loss_sum, pixels = 0.0, 0
    for index in range(len(bundle.train)):
        image, mask = segmenter.transform(*bundle.train[index])
        logits = segmenter.logits(image, mask.shape).cpu()
        loss_sum += float(F.cross_entropy(logits, mask[None], ignore_index=IGNORE_INDEX, reduction="sum"))
        pixels += int((mask != IGNORE_INDEX).sum())
        meter.update(logits, mask[None])
    return Evaluated(meter.scores(loss_sum / max(1, pixels)), len(bundle.train), bundle.source)


@dataclasses.dataclass(frozen=True)
class MaskPrediction:
    """One input's answer: the mask and overlay files written, the share of pixels per class; or why it failed."""

    path: str
    mask: str | None = None
    overlay: str | None = None
    shares: dict[str, float] = dataclasses.field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        return {"path": self.path, "mask": self.mask, "overlay": self.overlay, "shares": self.shares}


def predict_masks(segmenter: Segmenter, inputs: Sequence[str | os.PathLike[str]], folder: Path) -> list[MaskPrediction]:
    """Segment every image in ``inputs`` (files or folders) into ``folder``.

    For each image ``NAME.ext``: ``NAME_mask.png``, the class indices as a palette PNG (its
    values are the classes, shown in colour), and ``NAME_overlay.png``, the classes' colours
    laid over the image. Unreadable files get an ``error``.
    """
    paths = expand_inputs(inputs)
    if not paths:
        raise ValueError(f"no files found in {list(map(str, inputs))}")
    folder.mkdir(parents=True, exist_ok=True)
    colours = palette(len(segmenter.classes))
    results = []
    for path, image in load_images(paths):
        if isinstance(image, BadImage):
            results.append(MaskPrediction(path, error=image.reason))
            continue
        mask = segmenter.predict(image)
        stem = Path(path).stem
        mask_path, overlay_path = folder / f"{stem}_mask.png", folder / f"{stem}_overlay.png"
        mask_image(mask, colours).save(mask_path)
        Image.fromarray(overlay(np.asarray(image.convert("RGB")), mask, colours)).save(overlay_path)
        counts = np.bincount(mask.ravel(), minlength=len(segmenter.classes))
        shares = {name: round(float(count) / mask.size, 4) for name, count in zip(segmenter.classes, counts) if count}
        results.append(MaskPrediction(path, str(mask_path), str(overlay_path), shares))
    return results
