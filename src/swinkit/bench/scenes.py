"""A segmentation set built without downloads: scikit-learn's digits on procedural textures, with their masks.

:func:`build_scenes` writes ``train/`` and ``val/`` folders of ``images/``, ``masks/`` and
``classes.txt`` (the layout ``swinkit train --task segment`` reads): one to three of the 8x8
digits, enlarged, coloured and placed on :func:`texture` backgrounds; masks hold 0 for the
background, ``d + 1`` for digit ``d`` and 255 (ignored) on each digit's faint rim. Training
and validation scenes draw on disjoint source digits (:func:`source_split`); the same seed
writes the same files. Used by ``swinkit bench segmentation``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from swinkit.data.segmentation import IGNORE_INDEX

#: The classes: the background and the ten digits.
SCENE_CLASSES = ("background", *(f"digit {digit}" for digit in range(10)))
#: Digits at or above this opacity are labelled, those between the two limits are ignored.
LABELLED_ALPHA, RIM_ALPHA = 0.5, 0.2


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # scikit-learn loads a second or more: only when building the data

    bunch = load_digits()
    return bunch.images / 16.0, bunch.target.astype(np.int64)


def texture(side: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``(side, side, 3)`` float background in 0..255: value noise, stripes, a gradient or checks,
    between two random colours, with pixel noise."""
    y, x = np.mgrid[0:side, 0:side] / side
    angle = rng.uniform(0, math.pi)
    along = x * math.cos(angle) + y * math.sin(angle)
    kind = rng.integers(4)
    if kind == 0:
        cells = int(rng.integers(3, 9))
        coarse = Image.fromarray(rng.random((cells, cells)).astype(np.float32))
        pattern = np.asarray(coarse.resize((side, side), Image.BICUBIC), dtype=np.float64)
    elif kind == 1:
        pattern = 0.5 + 0.5 * np.sin(2 * math.pi * rng.uniform(2, 8) * along + rng.uniform(0, 2 * math.pi))
    elif kind == 2:
        pattern = (along - along.min()) / max(1e-6, np.ptp(along))
    else:
        cells = rng.uniform(3, 8)
        pattern = ((np.floor(x * cells) + np.floor(y * cells)) % 2).astype(np.float64)
    low, high = rng.uniform(0, 255, (2, 3))
    image = low + np.clip(pattern, 0, 1)[..., None] * (high - low)
    return image + rng.normal(0, 8, image.shape)


def digit_scenes(
    sources: np.ndarray, labels: np.ndarray, count: int, rng: np.random.Generator, side: int = 64
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``count`` RGB uint8 scenes of ``side`` pixels and their masks: one to three source digits (opacity
    0..1), each enlarged to 35-55% of the side, in a colour set off from the background, on a :func:`texture`.

    A mask holds 0 for the background, ``d + 1`` where digit ``d`` is at least half opaque and
    255 on its faint rim (opacity 0.2-0.5); a later digit covers an earlier one.
    """
    images, masks = [], []
    for _ in range(count):
        image = texture(side, rng)
        mask = np.zeros((side, side), dtype=np.uint8)
        for _ in range(rng.integers(1, 4)):
            pick = rng.integers(len(sources))
            size = int(rng.integers(round(0.35 * side), round(0.55 * side) + 1))
            glyph = Image.fromarray(sources[pick].astype(np.float32)).resize((size, size), Image.BILINEAR)
            alpha = np.clip(np.asarray(glyph, dtype=np.float64), 0, 1)
            top, left = rng.integers(0, side - size + 1, 2)
            region = (slice(top, top + size), slice(left, left + size))
            colour = rng.uniform(0, 255, 3)
            if np.abs(colour - image[region].mean((0, 1))).sum() < 150:
                colour = 255 - colour
            image[region] = image[region] * (1 - alpha[..., None]) + colour * alpha[..., None]
            mask[region] = np.where(alpha >= LABELLED_ALPHA, labels[pick] + 1, mask[region])
            mask[region] = np.where((alpha > RIM_ALPHA) & (alpha < LABELLED_ALPHA), IGNORE_INDEX, mask[region])
        images.append(np.clip(image, 0, 255).astype(np.uint8))
        masks.append(mask)
    return images, masks


def source_split(count: int, seed: int = 0, share: float = 0.75) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint indices of the source digits that training (``share`` of them) and validation scenes draw on."""
    order = np.random.default_rng(seed).permutation(count)
    cut = int(share * count)
    return np.sort(order[:cut]), np.sort(order[cut:])


def _write_pairs(root: Path, images: list[np.ndarray], masks: list[np.ndarray]) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for index, (image, mask) in enumerate(zip(images, masks)):
        Image.fromarray(image).save(root / "images" / f"{index:05d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{index:05d}.png")
    (root / "classes.txt").write_text("\n".join(SCENE_CLASSES) + "\n")
    return root


def build_scenes(root: Path, train: int = 2000, val: int = 500, side: int = 64, seed: int = 0) -> tuple[Path, Path]:
    """The digit scenes as ``root/train`` and ``root/val``, each ``images/``, ``masks/`` and ``classes.txt``.

    The two draw on disjoint source digits (:func:`source_split`); the same ``seed`` writes the same files.
    """
    pixels, labels = _digits()
    rng = np.random.default_rng(seed)
    train_rows, val_rows = source_split(len(pixels), seed)
    train_root = _write_pairs(root / "train", *digit_scenes(pixels[train_rows], labels[train_rows], train, rng, side))
    val_root = _write_pairs(root / "val", *digit_scenes(pixels[val_rows], labels[val_rows], val, rng, side))
    return train_root, val_root


def load_pairs(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """A folder of :func:`build_scenes` as ``(N, 3, H, W)`` uint8 images and ``(N, H, W)`` int64 masks."""
    images, masks = [], []
    for path in sorted((root / "images").iterdir()):
        with Image.open(path) as image, Image.open(root / "masks" / path.name) as mask:
            images.append(np.asarray(image.convert("RGB")))
            masks.append(np.asarray(mask))
    return torch.as_tensor(np.stack(images)).permute(0, 3, 1, 2).contiguous(), torch.as_tensor(np.stack(masks)).long()
