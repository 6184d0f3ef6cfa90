"""Segmentation data: images with masks of class indices, read and checked by :func:`load_segmentation`.

Accepted sources (the ``--data`` and ``--val`` strings of ``swinkit train --task segment``):

- a folder holding ``images/`` and ``masks/``: each image (any format Pillow reads) has a mask
  with the same stem (``images/a/0001.jpg`` and ``masks/a/0001.png``; sub-folders allowed), and
  an optional ``classes.txt`` names the classes, one per line in index order. Without it the
  classes are ``0`` .. the largest index found in the masks, named by number.
- ADE20K's layout (``ADEChallengeData2016``): ``images/training`` with ``annotations/training``
  and ``images/validation`` with ``annotations/validation``; found automatically. Its masks
  hold 0 for "other" (ignored) and 1..150 for the classes, shifted down by one on reading
  (``zero_is_ignore``; mmsegmentation's ``reduce_zero_label``); the classes are
  :data:`~swinkit.data.ade20k.ADE20K_CLASSES`. The validation split is used for validation
  unless ``val`` names another source.
- a folder written by ``datasets``' ``save_to_disk`` (or ``hf:NAME[:SPLIT]`` for the Hub) whose
  rows hold an image column and a mask column, both of feature type ``datasets.Image``; the
  mask column is the one named like a mask (:data:`MASK_COLUMNS`). A ``DatasetDict``'s
  ``train`` split trains and its ``validation`` (or ``val``) split validates.

Masks: a single-channel image (PNG, BMP or TIFF: lossless) whose pixel values are class
indices; 0 is a class like any other and 255 marks pixels to ignore. Grey (``L``), palette
(``P``: the palette indices are the classes, whatever colours the palette gives them),
1-bit and 16-bit modes are read; RGB masks are refused, since a colour is not an index.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors

from swinkit.data.ade20k import ADE20K_CLASSES
from swinkit.data.images import SHOWN_BAD_IMAGES, BadImage, DataError, try_decode
from swinkit.data.imagesets import default_workers
from swinkit.data.memory import to_array
from swinkit.data.sources import HUB_PREFIX, _ignored, _import_datasets, _is_saved_hf_dataset

#: The mask value of pixels that count for nothing: not trained on, not scored.
IGNORE_INDEX = 255
#: The most classes a mask can index (0 .. 254; 255 is :data:`IGNORE_INDEX`).
MAX_CLASSES = 255
#: File suffixes read as masks: lossless formats only.
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")
#: Pillow modes that hold one class index per pixel.
INDEX_MODES = ("L", "P", "1", "I", "I;16")
#: The optional file naming the classes, one per line, in the folder given as the source.
CLASSES_FILE = "classes.txt"
#: Column names taken as the mask column of a Hugging Face dataset, most likely first.
MASK_COLUMNS = ("mask", "masks", "label", "labels", "annotation", "segmentation", "semantic_segmentation",
                "seg_map", "gt", "target")  # fmt: skip
#: Pixels of each image (every n-th row and column) that the scan measures for the pixel statistics.
STATS_STRIDE = 4

_ACCEPTED = (
    "a folder holding images/ and masks/ (same file stems, masks as PNGs of class indices, optional "
    "classes.txt), ADE20K's layout (images/training, annotations/training), a folder written by datasets' "
    "save_to_disk with an image and a mask column, or hf:NAME[:SPLIT]"
)
_ADE_SPLITS = {"train": "training", "val": "validation"}
_HF_SPLITS = {"train": ("train",), "val": ("validation", "val", "test")}
_Pairs = TypeVar("_Pairs", bound="SegmentationDataset")


@dataclasses.dataclass(frozen=True)
class PairStats:
    """What the scan measured on one image and its mask.

    ``pixel_sum`` and ``pixel_squares`` are per RGB channel, in 0..1, over ``sampled`` pixels
    (every :data:`STATS_STRIDE`-th row and column); ``class_pixels[v]`` counts the mask's pixels
    of value ``v`` after reading (index 255: ignored); ``grey`` is true for a one-channel image
    or an RGB one whose channels agree.
    """

    height: int
    width: int
    grey: bool
    pixel_sum: np.ndarray
    pixel_squares: np.ndarray
    sampled: int
    class_pixels: np.ndarray

    @property
    def top_class(self) -> int:
        """The largest class index in the mask (-1 when every pixel is ignored)."""
        used = np.flatnonzero(self.class_pixels[:IGNORE_INDEX])
        return int(used[-1]) if len(used) else -1


def mask_indices(mask: Image.Image, name: str, zero_is_ignore: bool = False) -> np.ndarray:
    """The class index of each pixel of a decoded mask, ``(H, W)`` uint8; 255 marks ignored pixels.

    ``mask`` must be single-channel (:data:`INDEX_MODES`): a ``P`` image gives its palette
    indices, a 1-bit image 0 and 1. With ``zero_is_ignore`` (ADE20K) 0 becomes 255 and the
    other values move down by one, 255 staying 255. Raises :class:`DataError` naming ``name``
    for a colour mask or a 16-bit value above 255.
    """
    if mask.mode not in INDEX_MODES:
        bands = len(mask.getbands())
        raise DataError(
            f"mask {name} is a {mask.mode} image with {bands} channels; a mask holds one class index per pixel: "
            f"a single-channel PNG (mode L, or P whose palette indices are the classes), {IGNORE_INDEX} for pixels "
            "to ignore. Convert colour-coded masks to class indices first"
        )
    values = np.array(mask)
    if values.dtype != np.uint8:
        if values.size and (values.min() < 0 or values.max() > IGNORE_INDEX):
            raise DataError(
                f"mask {name} holds values from {values.min()} to {values.max()}; class indices go from 0 to "
                f"{MAX_CLASSES - 1}, and {IGNORE_INDEX} marks pixels to ignore"
            )
        values = values.astype(np.uint8)
    if zero_is_ignore:
        shift = (np.arange(256) - 1).astype(np.uint8)
        shift[0] = shift[IGNORE_INDEX] = IGNORE_INDEX
        values = shift[values]
    return values


class SegmentationDataset(Dataset):
    """Raw segmentation pairs: ``dataset[i] -> (PIL image, tv_tensors.Mask)``.

    The image keeps its own mode (the transforms convert it); the mask is ``(H, W)`` uint8 of
    class indices into ``classes`` (:func:`mask_indices`), 255 for ignored pixels.
    Subclasses say where item ``i``'s encoded image and mask are (``_sources``), how they are
    named in reports and how to keep a subset. Picklable, for DataLoader workers.
    """

    def __init__(self, classes: Sequence[str], origin: str, zero_is_ignore: bool) -> None:
        self.classes = list(classes)
        self.origin = origin
        self.zero_is_ignore = zero_is_ignore

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[Image.Image, tv_tensors.Mask]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} pairs")
        result = self._decode(index % len(self))
        if isinstance(result, str):
            raise DataError(f"cannot read pair {index}: {result}")
        image, mask = result
        return image, tv_tensors.Mask(torch.from_numpy(mask))

    def image_name(self, index: int) -> str:
        """How item ``index``'s image is named in reports."""
        raise NotImplementedError

    def mask_name(self, index: int) -> str:
        """How item ``index``'s mask is named in reports."""
        raise NotImplementedError

    def subset(self: _Pairs, indices: Sequence[int]) -> _Pairs:
        """A dataset of the same kind and classes holding the items ``indices``, in that order."""
        new = _copy(self)
        new._take([int(i) for i in indices])
        return new

    def with_classes(self: _Pairs, classes: Sequence[str]) -> _Pairs:
        """The same pairs, their indices read as ``classes``."""
        new = _copy(self)
        new.classes = list(classes)
        return new

    def measure(self, index: int) -> PairStats | str:
        """Decode item ``index`` and measure it (:class:`PairStats`), or say why it cannot be used."""
        result = self._decode(index)
        if isinstance(result, str):
            return result
        image, mask = result
        array = to_array(image)[::STATS_STRIDE, ::STATS_STRIDE]
        pixels = array.reshape(-1, 1 if array.ndim == 2 else 3)
        colour = np.broadcast_to(pixels, (len(pixels), 3)).astype(np.float64) / 255.0
        grey = pixels.shape[1] == 1 or bool(np.abs(colour - colour[:, :1]).mean() <= 1 / 255)
        return PairStats(
            height=image.height,
            width=image.width,
            grey=grey,
            pixel_sum=colour.sum(0),
            pixel_squares=(colour**2).sum(0),
            sampled=len(colour),
            class_pixels=np.bincount(mask.ravel(), minlength=256).astype(np.int64),
        )

    def _decode(self, index: int) -> tuple[Image.Image, np.ndarray] | str:
        image_source, mask_source = self._sources(index)
        image = try_decode(image_source, self.image_name(index))
        if isinstance(image, BadImage):
            return str(image)
        mask = try_decode(mask_source, self.mask_name(index))
        if isinstance(mask, BadImage):
            return str(mask)
        if mask.size != image.size:
            return (
                f"{self.mask_name(index)}: the mask is {mask.width}x{mask.height} but its image "
                f"{self.image_name(index)} is {image.width}x{image.height}; a mask has its image's size"
            )
        try:
            return image, mask_indices(mask, self.mask_name(index), self.zero_is_ignore)
        except DataError as exc:
            return str(exc)

    def _sources(self, index: int) -> tuple[str | bytes, str | bytes]:
        raise NotImplementedError

    def _take(self, indices: list[int]) -> None:
        raise NotImplementedError


class FileSegmentationDataset(SegmentationDataset):
    """Pairs of image and mask files on disk."""

    def __init__(
        self,
        images: Sequence[str],
        masks: Sequence[str],
        classes: Sequence[str],
        origin: str,
        zero_is_ignore: bool = False,
    ) -> None:
        if len(images) != len(masks):
            raise DataError(f"got {len(images)} images but {len(masks)} masks; each image needs one mask")
        super().__init__(classes, origin, zero_is_ignore)
        self.images = list(images)
        self.masks = list(masks)

    def __len__(self) -> int:
        return len(self.images)

    def image_name(self, index: int) -> str:
        """The image file's path."""
        return self.images[index]

    def mask_name(self, index: int) -> str:
        """The mask file's path."""
        return self.masks[index]

    def _sources(self, index: int) -> tuple[str | bytes, str | bytes]:
        return self.images[index], self.masks[index]

    def _take(self, indices: list[int]) -> None:
        self.images = [self.images[i] for i in indices]
        self.masks = [self.masks[i] for i in indices]


class HFSegmentationDataset(SegmentationDataset):
    """Rows of a ``datasets.Dataset`` holding an encoded image and an encoded mask (``Image(decode=False)``)."""

    def __init__(
        self,
        table: Any,
        image_column: str,
        mask_column: str,
        classes: Sequence[str],
        origin: str,
        zero_is_ignore: bool = False,
    ) -> None:
        super().__init__(classes, origin, zero_is_ignore)
        self.table = table
        self.image_column = image_column
        self.mask_column = mask_column
        self.rows = list(range(len(table)))

    def __len__(self) -> int:
        return len(self.rows)

    def image_name(self, index: int) -> str:
        """``origin[row].image_column``."""
        return f"{self.origin}[{self.rows[index]}].{self.image_column}"

    def mask_name(self, index: int) -> str:
        """``origin[row].mask_column``."""
        return f"{self.origin}[{self.rows[index]}].{self.mask_column}"

    def _sources(self, index: int) -> tuple[str | bytes, str | bytes]:
        row = self.table[self.rows[index]]
        return _cell(row[self.image_column]), _cell(row[self.mask_column])

    def _take(self, indices: list[int]) -> None:
        self.rows = [self.rows[i] for i in indices]


@dataclasses.dataclass(frozen=True)
class SegmentationProfile:
    """A segmentation training set in numbers, from the scan of :func:`load_segmentation`.

    ``count`` pairs, typically ``height x width`` (medians); ``channels`` 1 when every image is
    grey, else 3, with the pixel ``mean`` and ``std`` per channel in 0..1; ``class_pixels[c]``
    counts the training pixels of class ``c``, and ``ignored`` is the share of pixels marked 255.
    """

    count: int
    height: int
    width: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_pixels: tuple[int, ...]
    ignored: float

    @property
    def num_classes(self) -> int:
        """How many classes the masks can name (``len(class_pixels)``)."""
        return len(self.class_pixels)

    @property
    def present(self) -> int:
        """How many classes have at least one training pixel."""
        return sum(1 for pixels in self.class_pixels if pixels)

    @property
    def short_side(self) -> int:
        """The typical image's shorter side."""
        return min(self.height, self.width)


def profile_pairs(stats: Sequence[PairStats], num_classes: int) -> SegmentationProfile:
    """:class:`SegmentationProfile` of the scanned pairs ``stats`` whose masks index ``num_classes`` classes."""
    if not stats:
        raise DataError("cannot profile an empty segmentation set")
    grey = all(item.grey for item in stats)
    channels = 1 if grey else 3
    pixels = sum(item.sampled for item in stats)
    mean = sum(item.pixel_sum for item in stats)[:channels] / pixels
    squares = sum(item.pixel_squares for item in stats)[:channels] / pixels
    std = np.sqrt(np.maximum(squares - mean**2, 1e-12))
    counts = sum(item.class_pixels for item in stats)
    return SegmentationProfile(
        count=len(stats),
        height=round(float(np.median([item.height for item in stats]))),
        width=round(float(np.median([item.width for item in stats]))),
        channels=channels,
        mean=tuple(round(float(v), 4) for v in mean),
        std=tuple(round(float(v), 4) for v in std),
        class_pixels=tuple(int(v) for v in counts[:num_classes]),
        ignored=float(counts[IGNORE_INDEX] / max(1, counts.sum())),
    )


@dataclasses.dataclass
class SegmentationBundle:
    """What :func:`load_segmentation` returns: the checked train and validation pairs and what describes them."""

    train: SegmentationDataset
    val: SegmentationDataset | None
    classes: list[str]
    source: str
    profile: SegmentationProfile


def load_segmentation(
    data: str | os.PathLike[str],
    *,
    val: str | os.PathLike[str] | None = None,
    val_split: float = 0.1,
    seed: int = 0,
    zero_is_ignore: bool | None = None,
    workers: int | None = None,
) -> SegmentationBundle:
    """Read a segmentation source (and a validation source, or split one off), and check every pair.

    ``data`` and ``val`` are sources as this module's docstring lists them. The validation set
    is ``val`` when given; else the source's own validation split (ADE20K's, a
    ``DatasetDict``'s); else a seeded random ``val_split`` fraction of ``data`` (0: none).
    ``zero_is_ignore`` reads mask value 0 as ignored and shifts the rest down (default: only
    for ADE20K's layout). The classes are the training source's ``classes.txt``, ADE20K's 150,
    or ``0`` .. the largest index in any mask. Every image and mask is decoded once, in
    ``workers`` threads, and measured (:class:`SegmentationProfile`); a :class:`DataError`
    lists every pair that cannot be used (unreadable, a colour mask, a mask whose size differs
    from its image's, an index beyond the classes named) before training starts.
    """
    if not 0.0 <= val_split < 1.0:
        raise DataError(f"val_split must be in [0, 1) (0 for no validation set), got {val_split}")
    train, source, own_val = read_segmentation_source(data, "train", zero_is_ignore)
    validation = own_val
    if val is not None:
        validation, val_source, _ = read_segmentation_source(val, "val", zero_is_ignore)
        source = f"{source}; validation: {val_source}"
    elif validation is not None:
        source = f"{source}; validation: its {validation.origin}"
    train_stats = _scan(train, workers)
    val_stats = _scan(validation, workers) if validation is not None else []
    classes = train.classes or _numbered_classes([*train_stats, *val_stats])
    _check_indices(train, train_stats, classes)
    if validation is not None:
        _check_indices(validation, val_stats, classes)
        validation = validation.with_classes(classes)
    train = train.with_classes(classes)
    if validation is None and val_split > 0:
        if len(train) < 2:
            raise DataError(f"{source} holds {len(train)} pair(s); a validation split needs at least 2 (or val_split=0)")
        order = np.random.default_rng(seed).permutation(len(train))
        count = min(len(train) - 1, max(1, round(val_split * len(train))))
        val_rows, train_rows = sorted(order[:count].tolist()), sorted(order[count:].tolist())
        validation, train = train.subset(val_rows), train.subset(train_rows)
        train_stats = [train_stats[i] for i in train_rows]
        source = f"{source}; validation: {val_split:g} of it (random, seed {seed})"
    return SegmentationBundle(train, validation, classes, source, profile_pairs(train_stats, len(classes)))


def read_segmentation_source(
    data: str | os.PathLike[str], role: str, zero_is_ignore: bool | None = None
) -> tuple[SegmentationDataset, str, SegmentationDataset | None]:
    """Read one source for ``role`` (``"train"`` or ``"val"``) without decoding it.

    Returns the pairs, a description, and the source's own validation split when ``role`` is
    ``"train"`` and it has one (else None). The pairs' ``classes`` are the names the source
    gives (``classes.txt``, ADE20K's), or empty when it gives none.
    """
    if isinstance(data, str) and data.startswith(HUB_PREFIX):
        name, _, split = data[len(HUB_PREFIX) :].partition(":")
        if not name:
            raise DataError(f"{data!r} names no dataset; write hf:NAME or hf:NAME:SPLIT")
        datasets = _import_datasets()
        try:
            loaded = datasets.load_dataset(name, split=split) if split else datasets.load_dataset(name)
        except (OSError, ValueError) as exc:
            raise DataError(f"could not load Hugging Face Hub dataset {name!r}: {exc}") from exc
        return _from_hf_tables(loaded, data, role, [], bool(zero_is_ignore))
    if not os.fspath(data):
        raise DataError(f"the data source is an empty string; accepted: {_ACCEPTED}")
    root = Path(data).expanduser()
    if not root.is_dir():
        problem = "does not exist" if not root.exists() else "is a file"
        raise DataError(f"segmentation source {str(data)!r} {problem}; accepted: {_ACCEPTED}")
    classes = read_classes_file(root / CLASSES_FILE) if (root / CLASSES_FILE).is_file() else []
    if _is_saved_hf_dataset(root):
        loaded = _import_datasets().load_from_disk(os.fspath(root))
        return _from_hf_tables(loaded, f"datasets folder {root.resolve()}", role, classes, bool(zero_is_ignore))
    if (root / "images" / "training").is_dir() and (root / "annotations").is_dir():
        shift = True if zero_is_ignore is None else zero_is_ignore
        names = classes or list(ADE20K_CLASSES)
        split = _ade_split(root, _ADE_SPLITS[role], names, shift)
        own_val = None
        if role == "train" and (root / "images" / "validation").is_dir():
            own_val = _ade_split(root, "validation", names, shift)
        return split, f"ADE20K layout {root.resolve()} ({split.origin})", own_val
    pairs = _pair_folder(root, root / "images", root / "masks", classes, bool(zero_is_ignore), root)
    return pairs, f"image/mask folder {root.resolve()}", None


def read_classes_file(path: Path) -> list[str]:
    """The class names of a ``classes.txt``: one per line, in index order (blank lines at the end ignored).

    Raises :class:`DataError` naming the file for a blank line among the names, a name given
    twice, or more than :data:`MAX_CLASSES` names.
    """
    lines = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise DataError(f"{path} names no class; write one class name per line, in index order (line 1: class 0)")
    blank = [number for number, line in enumerate(lines, 1) if not line]
    if blank:
        raise DataError(f"{path}: line {blank[0]} is blank; each line names the class of its index (line 1: class 0)")
    repeated = sorted({line for line in lines if lines.count(line) > 1})
    if repeated:
        raise DataError(f"{path} names {', '.join(repeated)} more than once; each class has one line")
    if len(lines) > MAX_CLASSES:
        raise DataError(f"{path} names {len(lines)} classes; masks hold at most {MAX_CLASSES} (0..254, 255 = ignore)")
    return lines


def _ade_split(root: Path, split: str, classes: list[str], shift: bool) -> FileSegmentationDataset:
    dataset = _pair_folder(root, root / "images" / split, root / "annotations" / split, classes, shift, root)
    dataset.origin = f"{split} split"
    return dataset


def _pair_folder(
    root: Path, image_dir: Path, mask_dir: Path, classes: list[str], shift: bool, origin: Path
) -> FileSegmentationDataset:
    """Pair every file below ``image_dir`` with the mask file of the same relative stem below ``mask_dir``."""
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            raise DataError(f"{root} has no {folder.relative_to(root)}/ folder; accepted: {_ACCEPTED}")
    images = _by_stem(image_dir, "image")
    masks = _by_stem(mask_dir, "mask")
    lossy = sorted(path for path in masks.values() if Path(path).suffix.lower() not in MASK_SUFFIXES)
    if lossy:
        raise DataError(
            f"{len(lossy)} mask file(s) are not {', '.join(MASK_SUFFIXES)} (lossless formats; a lossy format such "
            f"as JPEG changes the class indices): {_listed(lossy)}"
        )
    lonely = [f"image {images[stem]} has no mask in {mask_dir}" for stem in sorted(images.keys() - masks.keys())]
    lonely += [f"mask {masks[stem]} has no image in {image_dir}" for stem in sorted(masks.keys() - images.keys())]
    if lonely:
        raise DataError(f"{len(lonely)} file(s) without their pair (pairs share the file stem): {_listed(lonely)}")
    if not images:
        raise DataError(f"{image_dir} holds no images; accepted: {_ACCEPTED}")
    stems = sorted(images)
    return FileSegmentationDataset(
        [images[stem] for stem in stems], [masks[stem] for stem in stems], classes, str(origin.resolve()), shift
    )


def _by_stem(folder: Path, kind: str) -> dict[str, str]:
    """Files below ``folder`` (any depth, hidden ones ignored) by their relative path without suffix."""
    found: dict[str, str] = {}
    for directory, subdirs, names in os.walk(folder, followlinks=True):
        subdirs[:] = sorted(name for name in subdirs if not _ignored(name))
        for name in sorted(names):
            if _ignored(name):
                continue
            path = os.path.join(directory, name)
            stem = os.path.splitext(os.path.relpath(path, folder))[0]
            if stem in found:
                raise DataError(f"{found[stem]} and {path} are two {kind}s of the same stem; keep one")
            found[stem] = path
    return found


def _from_hf_tables(
    loaded: Any, origin: str, role: str, classes: list[str], shift: bool
) -> tuple[SegmentationDataset, str, SegmentationDataset | None]:
    """The ``role`` split of a ``Dataset`` or ``DatasetDict`` (and its validation split, for training)."""
    datasets = _import_datasets()
    if not isinstance(loaded, datasets.DatasetDict):
        return _hf_pairs(loaded, origin, classes, shift), origin, None
    splits = list(loaded)
    chosen = next((name for name in _HF_SPLITS[role] if name in loaded), splits[0] if len(splits) == 1 else None)
    if chosen is None:
        raise DataError(
            f"{origin} holds splits {splits} and none is {' or '.join(_HF_SPLITS[role])}; point at one split's folder"
        )
    table = _hf_pairs(loaded[chosen], f"{origin}:{chosen}", classes, shift)
    own_val = None
    if role == "train":
        val_name = next((name for name in _HF_SPLITS["val"] if name in loaded and name != chosen), None)
        if val_name is not None:
            own_val = _hf_pairs(loaded[val_name], f"{origin}:{val_name}", classes, shift)
    return table, f"{origin} (split {chosen})", own_val


def _hf_pairs(table: Any, origin: str, classes: list[str], shift: bool) -> HFSegmentationDataset:
    """Find the image and mask columns (both ``datasets.Image``) of a ``datasets.Dataset``."""
    datasets = _import_datasets()
    columns = [name for name, feature in table.features.items() if isinstance(feature, datasets.Image)]
    mask_columns = [name for name in MASK_COLUMNS if name in columns] or [
        name for name in columns if any(word in name.lower() for word in ("mask", "label", "annotation", "seg"))
    ]
    image_columns = [name for name in columns if name not in mask_columns]
    if not mask_columns or not image_columns:
        raise DataError(
            f"{origin}: expected an image column and a mask column, both of feature type datasets.Image, the mask's "
            f"named one of {', '.join(MASK_COLUMNS)}; the image columns are {columns} of {list(table.features)}"
        )
    image_column, mask_column = image_columns[0], mask_columns[0]
    encoded = table.select_columns([image_column, mask_column])
    for column in (image_column, mask_column):
        encoded = encoded.cast_column(column, datasets.Image(decode=False))
    return HFSegmentationDataset(encoded, image_column, mask_column, classes, origin, shift)


def _cell(cell: dict[str, Any] | None) -> str | bytes:
    """The encoded bytes (or the path) of a ``datasets.Image(decode=False)`` cell; empty bytes for none."""
    if cell is None:
        return b""
    return cell["bytes"] if cell.get("bytes") is not None else cell.get("path") or b""


def _scan(dataset: SegmentationDataset, workers: int | None) -> list[PairStats]:
    """Measure every pair in a thread pool; raise one :class:`DataError` listing every unusable pair."""
    if len(dataset) == 0:
        raise DataError(f"{dataset.origin} holds no pairs")
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise DataError(f"workers must be at least 1, got {workers}")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        chunk = max(1, len(dataset) // (4 * workers))
        results = list(pool.map(dataset.measure, range(len(dataset)), chunksize=chunk))
    problems = [result for result in results if isinstance(result, str)]
    if problems:
        raise DataError(f"{len(problems)} of {len(dataset)} pairs cannot be used: {_listed(problems)}")
    return [result for result in results if isinstance(result, PairStats)]


def _numbered_classes(stats: Sequence[PairStats]) -> list[str]:
    """``"0"`` .. the largest index any mask uses."""
    top = max(item.top_class for item in stats)
    return [str(index) for index in range(top + 1)] if top >= 0 else ["0"]


def _check_indices(dataset: SegmentationDataset, stats: Sequence[PairStats], classes: Sequence[str]) -> None:
    beyond = [
        f"{dataset.mask_name(index)} holds class index {item.top_class}"
        for index, item in enumerate(stats)
        if item.top_class >= len(classes)
    ]
    if beyond:
        raise DataError(
            f"{len(beyond)} mask(s) hold class indices beyond the {len(classes)} classes named (0..{len(classes) - 1}; "
            f"{IGNORE_INDEX} = ignore): {_listed(beyond)}"
        )


def _listed(lines: Sequence[str]) -> str:
    """Lines for an error message: the first :data:`SHOWN_BAD_IMAGES`, then how many more."""
    shown = "".join(f"\n  {line}" for line in lines[:SHOWN_BAD_IMAGES])
    more = len(lines) - SHOWN_BAD_IMAGES
    return shown + (f"\n  ... and {more} more" if more > 0 else "")


def _copy(dataset: _Pairs) -> _Pairs:
    new = object.__new__(type(dataset))
    new.__dict__.update(dataset.__dict__)
    return new
