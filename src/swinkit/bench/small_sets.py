"""The small-data benchmark's data sets, built without any download, and the per-class cuts of them.

Three sets of ``(N, H, W)`` grey or ``(N, H, W, 3)`` colour uint8 images with integer labels, each
with a training part and a validation part that share no source:

- ``digits``: scikit-learn's 8x8 handwritten digits (1,797), 10% held out, stratified;
- ``cluttered``: those digits enlarged to 32x32 with a random rotation, scale, shear and shift,
  among fragments of other digits, on a random background level with pixel noise; 3,000
  training and 1,000 validation images from disjoint source digits (75% / 25%);
- ``photos``: 32x32 colour crops of ten photographs that ship inside scikit-learn and
  scikit-image (no fetching), one class per photograph; each crop a random square of 24 to
  60 pixels of the photograph (its shorter side scaled to 300), rotated by up to 30 degrees,
  mirrored half the time, with random brightness, contrast and saturation and pixel noise;
  300 training and 100 validation crops per class, the training crops from the first 70% of
  each photograph's longer side, the validation crops from the last 30%, so that no pixel
  of a validation crop appears in a training crop.

:func:`per_class_cut` takes a seeded, stratified subset of a training part (20 or 60 images a
class); the validation part stays whole.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from swinkit.data import stratified_split


class SmallSet(NamedTuple):
    """A training and a validation part: uint8 images ``(N, H, W)`` or ``(N, H, W, 3)``, int64 labels ``(N,)``."""

    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray


#: The photographs of the ``photos`` set, in class order: (package, loader) of images shipped in the wheels.
PHOTOS = (
    ("sklearn", "china.jpg"),
    ("sklearn", "flower.jpg"),
    ("skimage", "astronaut"),
    ("skimage", "chelsea"),
    ("skimage", "coffee"),
    ("skimage", "rocket"),
    ("skimage", "hubble_deep_field"),
    ("skimage", "immunohistochemistry"),
    ("skimage", "retina"),
    ("skimage", "stereo_motorcycle"),
)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # scikit-learn loads a second or more: only when building the data

    bunch = load_digits()
    return np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8), bunch.target.astype(np.int64)


def digits_set() -> SmallSet:
    """The bundled 8x8 digits, 10% held out for validation (stratified, seed 0)."""
    pixels, labels = _digits()
    train, val = stratified_split(labels.tolist(), 0.1, seed=0)
    return SmallSet(pixels[train], labels[train], pixels[val], labels[val])


def cluttered_digits(
    sources: np.ndarray, labels: np.ndarray, count: int, rng: np.random.Generator, side: int = 32
) -> tuple[list[np.ndarray], list[int]]:
    """``count`` grey images of ``side`` pixels, with their labels: a random source digit, distorted, among
    clutter, on a noisy background."""
    images, out = [], []
    for _ in range(count):
        pick = rng.integers(len(sources))
        digit = Image.fromarray(sources[pick]).resize((20, 20), Image.BICUBIC)
        canvas = np.zeros((side, side))
        for _ in range(rng.integers(1, 4)):
            other = np.asarray(Image.fromarray(sources[rng.integers(len(sources))]).resize((20, 20), Image.BICUBIC))
            top, left = rng.integers(0, 14, 2)
            fragment = other[top : top + 6, left : left + 6] * rng.uniform(0.3, 0.7)
            y, x = rng.integers(0, side - 6, 2)
            canvas[y : y + 6, x : x + 6] = np.maximum(canvas[y : y + 6, x : x + 6], fragment)
        angle, scale, shear = math.radians(rng.uniform(-15, 15)), rng.uniform(0.9, 1.2), rng.uniform(-0.15, 0.15)
        shift = rng.uniform(-3, 3, 2)
        rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        inverse = np.linalg.inv(rotation @ np.array([[1.0, shear], [0.0, 1.0]]) * scale)
        offset = np.array([9.5, 9.5]) - inverse @ (np.array([side / 2 - 0.5, side / 2 - 0.5]) + shift)
        coefficients = (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1])
        warped = digit.transform((side, side), Image.AFFINE, coefficients, Image.BILINEAR)
        canvas = np.maximum(canvas, np.asarray(warped, dtype=np.float64))
        canvas = rng.uniform(0, 40) + rng.uniform(0.7, 1.0) * canvas + rng.normal(0, 12, canvas.shape)
        images.append(np.clip(canvas, 0, 255).astype(np.uint8))
        out.append(int(labels[pick]))
    return images, out


def cluttered_set(train: int = 3000, val: int = 1000) -> SmallSet:
    """The cluttered 32x32 digits, training and validation images drawn from disjoint source digits."""
    pixels, labels = _digits()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(pixels))
    cut = int(0.75 * len(pixels))
    train_images, train_labels = cluttered_digits(pixels[order[:cut]], labels[order[:cut]], train, rng)
    val_images, val_labels = cluttered_digits(pixels[order[cut:]], labels[order[cut:]], val, rng)
    return SmallSet(np.stack(train_images), np.asarray(train_labels), np.stack(val_images), np.asarray(val_labels))


def _photo(package: str, name: str) -> np.ndarray:
    """One bundled photograph as ``(H, W, 3)`` uint8, from the files inside the installed package."""
    if package == "sklearn":
        from sklearn.datasets import load_sample_image

        return load_sample_image(name)
    import skimage.data  # the bench extra; these photographs are in the wheel, none is fetched

    image = getattr(skimage.data, name)()
    return image[0] if name == "stereo_motorcycle" else image  # (left, right, disparity): the left view


def photo_crops(
    photo: Image.Image, count: int, rng: np.random.Generator, side: int = 32, smallest: int = 24, largest: int = 60
) -> list[np.ndarray]:
    """``count`` colour crops of ``side`` pixels from anywhere in ``photo`` (a PIL RGB image).

    Each: a square of ``smallest`` to ``largest`` pixels (at most what a rotated square leaves
    inside ``photo``), rotated by up to 30 degrees, mirrored half the time, scaled to ``side``;
    then brightness and contrast (x0.6 to 1.4), saturation (x0.5 to 1.5) and noise (sd 4).
    """
    width, height = photo.size
    largest = min(largest, math.floor((min(width, height) - 2) / math.sqrt(2)))
    if largest < smallest:
        raise ValueError(f"a region of {width}x{height} pixels is too small for crops of {smallest} pixels")
    crops = []
    for _ in range(count):
        size = rng.uniform(smallest, largest)
        reach = math.ceil(size * math.sqrt(2)) + 2  # a square that holds the crop at any rotation
        left, top = rng.integers(0, width - reach + 1), rng.integers(0, height - reach + 1)
        window = photo.crop((left, top, left + reach, top + reach)).rotate(rng.uniform(-30, 30), Image.BILINEAR)
        margin = (reach - size) / 2
        crop = window.resize((side, side), Image.BICUBIC, box=(margin, margin, margin + size, margin + size))
        pixels = np.asarray(crop, dtype=np.float64)
        if rng.random() < 0.5:
            pixels = pixels[:, ::-1]
        grey = pixels.mean(axis=2, keepdims=True)
        pixels = grey + rng.uniform(0.5, 1.5) * (pixels - grey)
        pixels = pixels.mean() + rng.uniform(0.6, 1.4) * (pixels - pixels.mean())
        pixels = rng.uniform(0.6, 1.4) * pixels + rng.normal(0, 4, pixels.shape)
        crops.append(np.clip(pixels, 0, 255).astype(np.uint8))
    return crops


def photo_regions(photo: Image.Image, held_out: float) -> tuple[Image.Image, Image.Image]:
    """``photo`` cut across its longer side: the first ``1 - held_out`` (for training crops) and the rest (for
    validation crops), sharing no pixel."""
    wide = photo.width >= photo.height
    cut = round((1 - held_out) * (photo.width if wide else photo.height))
    if wide:
        return photo.crop((0, 0, cut, photo.height)), photo.crop((cut, 0, photo.width, photo.height))
    return photo.crop((0, 0, photo.width, cut)), photo.crop((0, cut, photo.width, photo.height))


def photos_set(train_per_class: int = 300, val_per_class: int = 100, held_out: float = 0.3) -> SmallSet:
    """Crops of the ten bundled photographs (:data:`PHOTOS`), one class each: training crops from the first
    ``1 - held_out`` of each photograph's longer side, validation crops from the rest."""
    rng = np.random.default_rng(0)
    parts: dict[str, tuple[list[np.ndarray], list[int]]] = {"train": ([], []), "val": ([], [])}
    for label, (package, name) in enumerate(PHOTOS):
        photo = Image.fromarray(_photo(package, name)).convert("RGB")
        scale = 300 / min(photo.size)
        photo = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.BICUBIC)
        regions = photo_regions(photo, held_out)
        for part, region, count in zip(("train", "val"), regions, (train_per_class, val_per_class)):
            parts[part][0].extend(photo_crops(region, count, rng))
            parts[part][1].extend([label] * count)
    (train_images, train_labels), (val_images, val_labels) = parts["train"], parts["val"]
    return SmallSet(np.stack(train_images), np.asarray(train_labels), np.stack(val_images), np.asarray(val_labels))


#: The sets by name, each built by a function of no arguments.
SETS = {"digits": digits_set, "cluttered": cluttered_set, "photos": photos_set}


def per_class_cut(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of ``per_class`` images of each class (all of a class that has fewer), drawn with ``seed``; sorted."""
    if per_class < 1:
        raise ValueError(f"images per class must be at least 1, got {per_class}")
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(labels == label))[:per_class] for label in np.unique(labels)]
    return np.sort(np.concatenate(picked))


def write_folder(root: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """``images`` as PNG files in one folder per label under ``root`` (an image folder ``swinkit train`` reads)."""
    for index, (image, label) in enumerate(zip(images, labels)):
        folder = root / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index:05d}.png")
    return root


def load_folder(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """An image folder of equally sized images written by :func:`write_folder`: ``(N, H, W)`` uint8 when grey,
    ``(N, H, W, 3)`` when colour, and ``(N,)`` labels."""
    classes = sorted((p.name for p in root.iterdir() if p.is_dir()), key=int)
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((root / name).iterdir()):
            with Image.open(path) as image:
                images.append(np.asarray(image if image.mode == "L" else image.convert("RGB")))
            labels.append(label)
    return np.stack(images), np.asarray(labels)
