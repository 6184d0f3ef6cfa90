"""Training on images held as one uint8 tensor: augmentation on whole batches, no loader processes.

When every image is in memory and no larger than the model's input, resizing once loses
nothing: :func:`stack_images` applies the evaluation geometry (mode, resize, centre crop)
once and stacks the pixels as ``(N, C, H, W)`` uint8. :class:`BatchAugment` then does a
training transform's work on a whole batch at once, on the batch's device:

- the crop: pad-and-crop as integer shifts read through reflected indices (exact pixels),
  or RandomResizedCrop with torchvision's sampling of the box (ten tries, then the centre
  crop) and one ``grid_sample`` per batch;
- the horizontal flip, folded into the crop's indices or sampling grid;
- RandAugment / TrivialAugmentWide per image (torchvision's, on uint8 tensors, whose
  rotations and shears interpolate bilinearly where the PIL path uses bicubic);
- conversion to float and normalisation;
- random erasing with per-pixel normal noise (timm's "pixel" mode), torchvision's sampling.

Crop, flip and erasing draw from a ``torch.Generator`` the caller seeds (per epoch, so that
a resumed run sees the same batches); the automatic augmentations draw from torch's
global generator, as torchvision's do. :class:`TensorBatches` serves batches in a
sampler's order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from swinkit.data.images import DataError
from swinkit.data.imagesets import ArrayImageDataset, ImageDataset, default_workers
from swinkit.data.memory import DecodedImageDataset
from swinkit.data.transforms import INTERPOLATIONS, AugmentConfig, _auto_augment, eval_geometry
from swinkit.preprocessing import Preprocessing

#: Images up to this factor larger than the input (and this far from its aspect ratio) are
#: stored at the input size: resizing them once loses next to nothing.
TENSOR_SLACK = 1.25
TENSOR_ASPECT = 1.1
#: RandomResizedCrop's tries before it falls back to the centre crop, as in torchvision.
CROP_TRIES = 10
#: Random erasing's area and aspect-ratio ranges, as in torchvision and timm.
ERASE_SCALE = (0.02, 1 / 3)
ERASE_RATIO = (0.3, 3.3)


def image_sizes(dataset: ImageDataset) -> np.ndarray:
    """``(N, 2)`` heights and widths of a dataset held in memory."""
    if isinstance(dataset, ArrayImageDataset):
        return np.tile(np.asarray(dataset.pixels.shape[1:3]), (len(dataset), 1))
    if isinstance(dataset, DecodedImageDataset):
        return np.asarray([array.shape[:2] for array in dataset.arrays]).reshape(-1, 2)
    raise DataError(
        f"image sizes are known without reading files only for images in memory, not {type(dataset).__name__}"
    )


def fits_as_tensor(dataset: ImageDataset, pre: Preprocessing, limit: int) -> bool:
    """Whether ``dataset`` can be trained on from one uint8 tensor at the input size of ``pre``.

    True when its images are in memory, typically no larger than :data:`TENSOR_SLACK` times
    the input and of about its aspect ratio, ``pre`` crops nothing (``crop_pct`` 1), and the
    tensor takes at most ``limit`` bytes.
    """
    if len(dataset) == 0 or pre.crop_pct != 1.0 or not isinstance(dataset, (ArrayImageDataset, DecodedImageDataset)):
        return False
    sizes = np.median(image_sizes(dataset), axis=0)
    height, width = pre.img_size
    if sizes[0] > TENSOR_SLACK * height or sizes[1] > TENSOR_SLACK * width:
        return False
    if abs(math.log((sizes[0] / sizes[1]) / (height / width))) > math.log(TENSOR_ASPECT):
        return False
    return len(dataset) * pre.in_chans * height * width <= limit


def stack_images(dataset: ImageDataset, pre: Preprocessing, workers: int | None = None) -> torch.Tensor:
    """Every image of ``dataset`` through the evaluation geometry of ``pre``, as ``(N, C, H, W)`` uint8.

    The same pixels :func:`~swinkit.data.build_transforms` (``train=False``) produces
    before its conversion to float; an image already of the input size and mode is taken
    as it is. Images are converted in ``workers`` threads (default: the usable cores).
    """
    height, width = pre.img_size
    geometry = v2.Compose([*eval_geometry(pre), v2.PILToTensor()])
    channels = pre.in_chans
    out = torch.empty(len(dataset), channels, height, width, dtype=torch.uint8)

    def fill(index: int) -> None:
        image, _ = dataset[index]
        array = np.asarray(image) if image.mode in ("L", "RGB") else None
        shape = (height, width) if channels == 1 else (height, width, 3)
        if array is not None and array.shape == shape:
            tensor = torch.from_numpy(array.copy())
            out[index] = tensor[None] if channels == 1 else tensor.permute(2, 0, 1)
        else:
            out[index] = geometry(image)

    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        list(pool.map(fill, range(len(dataset))))
    return out


class BatchAugment:
    """``augment(uint8 (B, C, H, W), generator) -> float32 (B, C, H, W)``: a training transform on a batch.

    Does what :func:`~swinkit.data.build_transforms` does to each image for images already
    of the input size: ``aug`` gives the crop, flip, automatic augmentation and erasing
    (mixing is the loop's), ``pre`` the normalisation and the interpolation of resized
    crops. ``aug=None`` only converts and normalises (the evaluation transform on stored
    images). Random numbers are drawn on the CPU from ``generator``, so a batch's
    augmentation does not depend on the device it runs on.
    """

    def __init__(self, pre: Preprocessing, aug: AugmentConfig | None) -> None:
        self.pre = pre
        self.aug = aug
        self.mode = pre.interpolation
        # torchvision's geometric ops on tensors interpolate bilinearly at most.
        interpolation = INTERPOLATIONS["nearest" if pre.interpolation == "nearest" else "bilinear"]
        self.auto = (
            _auto_augment(aug.auto_augment, interpolation, [round(255 * m) for m in pre.mean])
            if aug is not None
            else None
        )

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise DataError(f"expected a uint8 batch (B, C, H, W), got {images.dtype} of shape {tuple(images.shape)}")
        if tuple(images.shape[2:]) != self.pre.img_size:
            raise DataError(f"expected images of {self.pre.img_size}, got {tuple(images.shape[2:])}")
        aug = self.aug
        if aug is None:
            return self.normalise(images)
        flips = torch.rand(images.shape[0], generator=generator) < aug.hflip
        if aug.crop == "pad":
            images = self.pad_crop(images, aug.pad, flips, generator)
        else:
            images = self.resized_crop(images, aug.scale, aug.ratio, flips, generator)
        if self.auto is not None:
            images = torch.stack([self.auto(image) for image in images])
        out = self.normalise(images)
        if aug.re_prob > 0:
            out = self.erase(out, aug.re_prob, generator)
        return out

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (or 0..255 float) -> float32 ``(x / 255 - mean) / std``."""
        mean = torch.tensor(self.pre.mean, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.pre.std, device=images.device).view(1, -1, 1, 1)
        return (images.float() / 255.0 - mean) / std

    @staticmethod
    def pad_crop(
        images: torch.Tensor, pad: int, flips: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """A random crop of each image padded by ``pad`` pixels (reflected), mirrored where ``flips``.

        Pixels are read, not interpolated: shifts are whole pixels, drawn uniformly in
        ``[-pad, pad]`` along each axis.
        """
        batch, _, height, width = images.shape
        shifts = torch.randint(-pad, pad + 1, (2, batch), generator=generator)
        rows = _reflect(shifts[0, :, None] + torch.arange(height), height)
        cols = torch.arange(width).expand(batch, width)
        cols = torch.where(flips[:, None], cols.flip(1), cols)
        cols = _reflect(shifts[1, :, None] + cols, width)
        rows, cols = rows.to(images.device), cols.to(images.device)
        picked = images.gather(2, rows[:, None, :, None].expand(-1, images.shape[1], -1, width))
        return picked.gather(3, cols[:, None, None, :].expand(-1, images.shape[1], height, -1))

    def resized_crop(
        self,
        images: torch.Tensor,
        scale: tuple[float, float],
        ratio: tuple[float, float],
        flips: torch.Tensor,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """RandomResizedCrop of each image to its own size (torchvision's box sampling), mirrored where ``flips``.

        Returns uint8. A box covering the whole image samples every pixel at its centre, so
        it returns the image unchanged.
        """
        batch, _, height, width = images.shape
        top, left, box_h, box_w = resized_crop_boxes(batch, height, width, scale, ratio, generator)
        whole = (box_h == height) & (box_w == width)
        if bool(whole.all()):
            return torch.where(flips[:, None, None, None].to(images.device), images.flip(3), images)
        sign = 1.0 - 2.0 * flips.double()
        theta = torch.zeros(batch, 2, 3, dtype=torch.float64)
        theta[:, 0, 0] = sign * box_w / width
        theta[:, 0, 2] = (2 * left + box_w) / width - 1
        theta[:, 1, 1] = box_h / height
        theta[:, 1, 2] = (2 * top + box_h) / height - 1
        grid = F.affine_grid(theta, [batch, 1, height, width], align_corners=False).float().to(images.device)
        sampled = F.grid_sample(images.float(), grid, mode=self.mode, padding_mode="border", align_corners=False)
        return sampled.round_().clamp_(0, 255).to(torch.uint8)

    @staticmethod
    def erase(images: torch.Tensor, probability: float, generator: torch.Generator | None) -> torch.Tensor:
        """Random erasing: with ``probability``, one box per image filled with N(0, 1) noise."""
        batch, _, height, width = images.shape
        area = height * width
        low, high = ERASE_SCALE
        target = area * (low + (high - low) * torch.rand(batch, CROP_TRIES, generator=generator))
        log_low, log_high = math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1])
        ratio = torch.exp(log_low + (log_high - log_low) * torch.rand(batch, CROP_TRIES, generator=generator))
        box_h = torch.sqrt(target * ratio).round().long()
        box_w = torch.sqrt(target / ratio).round().long()
        fits = (box_h < height) & (box_w < width)
        first = fits.long().argmax(1)
        chosen = torch.arange(batch)
        box_h, box_w = box_h[chosen, first], box_w[chosen, first]
        erased = (torch.rand(batch, generator=generator) < probability) & fits.any(1)
        top = (torch.rand(batch, generator=generator) * (height - box_h + 1)).long()
        left = (torch.rand(batch, generator=generator) * (width - box_w + 1)).long()
        noise = torch.randn(images.shape, generator=generator).to(images.device)
        rows = torch.arange(height)[None, :, None]
        cols = torch.arange(width)[None, None, :]
        inside = (
            (rows >= top[:, None, None])
            & (rows < (top + box_h)[:, None, None])
            & (cols >= left[:, None, None])
            & (cols < (left + box_w)[:, None, None])
            & erased[:, None, None]
        )
        return torch.where(inside[:, None].to(images.device), noise, images)


def resized_crop_boxes(
    batch: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """RandomResizedCrop's boxes for ``batch`` images of ``height x width``: ``(top, left, h, w)``, each ``(batch,)``.

    torchvision's sampling: an area fraction uniform in ``scale`` and a log-uniform aspect
    ratio in ``ratio``, up to ten tries for a box that fits, else the largest centred box
    within the ratio range; then a uniform position.
    """
    area = height * width
    target = area * (scale[0] + (scale[1] - scale[0]) * torch.rand(batch, CROP_TRIES, generator=generator))
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_low + (log_high - log_low) * torch.rand(batch, CROP_TRIES, generator=generator))
    box_w = torch.sqrt(target * aspect).round().long()
    box_h = torch.sqrt(target / aspect).round().long()
    fits = (box_w > 0) & (box_w <= width) & (box_h > 0) & (box_h <= height)
    first = fits.long().argmax(1)
    chosen = torch.arange(batch)
    box_h, box_w = box_h[chosen, first], box_w[chosen, first]
    # The fallback: the whole image, narrowed to the ratio range.
    in_ratio = width / height
    if in_ratio < min(ratio):
        fallback_w, fallback_h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fallback_h, fallback_w = height, int(round(height * max(ratio)))
    else:
        fallback_w, fallback_h = width, height
    found = fits.any(1)
    box_h = torch.where(found, box_h, torch.full_like(box_h, fallback_h))
    box_w = torch.where(found, box_w, torch.full_like(box_w, fallback_w))
    top_draw = torch.rand(batch, generator=generator)
    left_draw = torch.rand(batch, generator=generator)
    top = torch.where(found, (top_draw * (height - box_h + 1)).long(), (height - box_h) // 2)
    left = torch.where(found, (left_draw * (width - box_w + 1)).long(), (width - box_w) // 2)
    return top, left, box_h, box_w


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Indices outside ``[0, size)`` mirrored back in, without repeating the edge (``reflect`` padding)."""
    if size == 1:
        return torch.zeros_like(index)
    period = 2 * (size - 1)
    index = index.remainder(period)
    return torch.where(index >= size, period - index, index)


class TensorBatches:
    """Batches of ``(augmented images, labels)`` from a uint8 image tensor, in a sampler's order.

    ``images``: ``(N, C, H, W)`` uint8 (moved to ``device`` once when that is a GPU);
    ``labels``: ``(N,)``; ``order``: any iterable of indices with a length (a
    ``DistributedSampler``, a ``range``). Each batch is gathered, moved to ``device`` and
    passed through ``augment`` with ``generator``. ``len()`` is the number of batches (the
    last may be smaller), as a DataLoader's.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        order: Iterable[int],
        augment: BatchAugment,
        device: torch.device,
        generator: torch.Generator | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise DataError(
                f"expected uint8 images (N, C, H, W) and N labels, got {images.dtype} {tuple(images.shape)} "
                f"and {len(labels)} labels"
            )
        self.images = images.to(device) if device.type == "cuda" else images
        self.labels = labels.to(self.images.device)
        self.batch_size = batch_size
        self.order = order
        self.augment = augment
        self.device = device
        self.generator = generator

    @property
    def dataset_size(self) -> int:
        return len(self.images)

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.batch_size)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        indices = torch.as_tensor(list(self.order), dtype=torch.long)
        for start in range(0, len(indices), self.batch_size):
            rows = indices[start : start + self.batch_size].to(self.images.device)
            images = self.images.index_select(0, rows).to(self.device, non_blocking=True)
            labels = self.labels.index_select(0, rows).to(self.device, non_blocking=True)
            yield self.augment(images, self.generator), labels
