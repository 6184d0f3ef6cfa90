"""Joint image/mask transforms: exact mask pixels after flips and rescales, crops aligned, no class invented."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import default_collate
from torchvision import tv_tensors

from swinkit.data.images import DataError
from swinkit.data.seg_transforms import PairDataset, SegAugment, build_seg_transforms

PLAIN = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
STILL = SegAugment(ratio_range=(1.0, 1.0), cat_max_ratio=1.0, hflip=0.0, photometric=False)


def coordinates(height: int, width: int) -> tuple[Image.Image, tv_tensors.Mask]:
    """An image whose red is the column and green the row, and a mask of (row + column) mod 5."""
    rows, columns = np.mgrid[:height, :width]
    pixels = np.stack([columns, rows, np.full_like(rows, 9)], -1).astype(np.uint8)
    return Image.fromarray(pixels), tv_tensors.Mask(torch.from_numpy(((rows + columns) % 5).astype(np.uint8)))


def test_flip_mirrors_image_and_mask_exactly() -> None:
    image, mask = coordinates(8, 8)
    transform = build_seg_transforms(True, size=8, **PLAIN, aug=replace(STILL, hflip=1.0))

    pixels, labels = transform(image, mask)

    assert labels.dtype == torch.int64 and pixels.dtype == torch.float32 and pixels.shape == (3, 8, 8)
    assert torch.equal(labels, mask.flip(-1).long())
    assert torch.equal((pixels[0] * 255).round(), torch.arange(7, -1, -1.0).expand(8, 8))


def test_random_crops_keep_image_and_mask_aligned_and_pad_the_mask_with_ignore() -> None:
    image, mask = coordinates(24, 20)
    torch.manual_seed(0)
    crop = build_seg_transforms(True, size=20, crop=16, **PLAIN, aug=STILL)
    corners = set()
    for _ in range(8):
        pixels, labels = crop(image, mask)
        values = (pixels * 255).round().long()
        assert labels.shape == (16, 16) and torch.equal(labels, (values[0] + values[1]) % 5)
        corners.add((int(values[1, 0, 0]), int(values[0, 0, 0])))
    assert len(corners) > 1

    mean = (0.2, 0.4, 0.6)
    padded, labels = build_seg_transforms(True, size=20, crop=32, mean=mean, std=(1, 1, 1), aug=STILL)(image, mask)
    outside = labels == 255
    assert int((~outside).sum()) == 24 * 20 and padded.shape == (3, 32, 32)
    fill = torch.tensor([round(255 * m) / 255 - m for m in mean])
    assert torch.allclose(padded.permute(1, 2, 0)[outside], fill.expand(int(outside.sum()), 3), atol=1e-6)


def test_rescaling_keeps_the_classes_of_the_mask() -> None:
    rng = np.random.default_rng(1)
    mask = tv_tensors.Mask(torch.from_numpy(rng.choice(np.array([0, 3, 7, 255], np.uint8), (10, 14))))
    image = Image.fromarray(rng.integers(0, 256, (10, 14, 3), dtype=np.uint8))
    doubled = build_seg_transforms(True, size=10, crop=(20, 28), **PLAIN, aug=replace(STILL, ratio_range=(2.0, 2.0)))
    assert torch.equal(doubled(image, mask)[1], mask.long().repeat_interleave(2, 0).repeat_interleave(2, 1))

    torch.manual_seed(0)
    transform = build_seg_transforms(True, size=10, crop=12, **PLAIN)
    for _ in range(10):
        pixels, labels = transform(image, mask)
        assert set(labels.unique().tolist()) <= {0, 3, 7, 255} and pixels.shape == (3, 12, 12)


def test_crops_avoid_one_class_filling_them() -> None:
    labels = np.zeros((32, 32), np.uint8)
    labels[:, :8] = 1
    mask = tv_tensors.Mask(torch.from_numpy(labels))
    image = Image.fromarray(np.zeros((32, 32, 3), np.uint8))

    def balanced_share(cat_max_ratio: float) -> float:
        torch.manual_seed(0)
        aug = SegAugment((1.0, 1.0), cat_max_ratio, hflip=0.0, photometric=False)
        transform = build_seg_transforms(True, size=32, crop=16, **PLAIN, aug=aug)
        shares = [float((transform(image, mask)[1] == 0).float().mean()) for _ in range(40)]
        return sum(share < 0.75 for share in shares) / len(shares)

    assert balanced_share(1.0) < 0.5 < 0.9 < balanced_share(0.75)


def test_photometric_distortion_changes_the_image_only() -> None:
    image, mask = coordinates(16, 16)
    torch.manual_seed(0)
    transform = build_seg_transforms(True, size=16, **PLAIN, aug=replace(STILL, photometric=True))
    plain = build_seg_transforms(True, size=16, **PLAIN, aug=STILL)(image, mask)[0]
    changed = [transform(image, mask) for _ in range(4)]
    assert all(torch.equal(labels, mask.long()) for _, labels in changed)
    assert any(not torch.allclose(pixels, plain) for pixels, _ in changed)


def test_evaluation_resizes_the_image_and_keeps_the_mask() -> None:
    image, mask = coordinates(8, 12)
    pixels, labels = build_seg_transforms(False, size=16, mean=(0.5,) * 3, std=(0.5,) * 3)(image, mask)
    assert pixels.shape == (3, 16, 24) and labels.dtype == torch.int64 and torch.equal(labels, mask.long())
    kept, _ = build_seg_transforms(False, size=None, mean=(0.0,), std=(1.0,), mode="L")(image, mask)
    assert kept.shape == (1, 8, 12)


def test_grey_pairs_batch_and_bad_settings_are_refused() -> None:
    pairs = [coordinates(10, 10), coordinates(12, 9)]
    grey = [(image.convert("L"), mask) for image, mask in pairs]
    transform = build_seg_transforms(True, size=10, crop=8, mean=(0.5,), std=(0.25,), mode="L")
    images, masks = default_collate([PairDataset(grey, transform)[i] for i in range(2)])
    assert images.shape == (2, 1, 8, 8) and masks.shape == (2, 8, 8) and masks.dtype == torch.int64
    with pytest.raises(DataError, match="ratio_range"):
        SegAugment(ratio_range=(2.0, 0.5))
    with pytest.raises(DataError, match="cat_max_ratio"):
        SegAugment(cat_max_ratio=0.0)
