"""Raw image datasets: items are ``(PIL.Image.Image, label)``, labels index ``classes``.

Three storages share one interface (:class:`ImageDataset`): image files on disk, decoded
lazily (:class:`FileImageDataset`); a uint8 array in memory (:class:`ArrayImageDataset`);
rows of a Hugging Face ``datasets`` table holding encoded images (:class:`HFImageDataset`).
All are picklable, so DataLoader workers can use them, and an item depends only on its index.

Also here: the scan that decodes every image before training (:func:`scan_images`) and
the stratified train/validation split (:func:`stratified_split`).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from swinkit.data.images import BadImage, DataError, UnreadableImageError, try_decode

_Set = TypeVar("_Set", bound="ImageDataset")


class ImageDataset(Dataset):
    """Base of the raw datasets: ``dataset[i] -> (PIL.Image.Image, int)`` with ``0 <= label < len(classes)``.

    Subclasses store one entry per item and say how to decode it (``_try_decode``), how to name
    it in reports (``item_name``) and how to keep a subset of entries (``_take``).
    """

    def __init__(self, labels: Sequence[int], classes: Sequence[str]) -> None:
        self.labels = [int(label) for label in labels]
        self.classes = list(classes)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        index %= len(self)
        result = self._try_decode(index, check_only=False)
        if isinstance(result, BadImage):
            raise UnreadableImageError(
                f"cannot read image {result} (load_data(verify=True) finds such files before training)"
            )
        return result, self.labels[index]

    def item_name(self, index: int) -> str:
        """How item ``index`` is named in reports: its file path, or its row in a table."""
        raise NotImplementedError

    def check(self, index: int) -> BadImage | None:
        """Decode item ``index`` (as :func:`~swinkit.data.decode_image` with ``check_only``); why it fails, or None."""
        result = self._try_decode(index, check_only=True)
        return result if isinstance(result, BadImage) else None

    def subset(self: _Set, indices: Sequence[int]) -> _Set:
        """A dataset of the same kind and classes holding the items ``indices``, in that order."""
        indices = [int(i) for i in indices]
        new = copy.copy(self)
        new.labels = [self.labels[i] for i in indices]
        new._take(indices)
        return new

    def _try_decode(self, index: int, *, check_only: bool) -> Image.Image | BadImage:
        raise NotImplementedError

    def _take(self, indices: list[int]) -> None:
        raise NotImplementedError


class FileImageDataset(ImageDataset):
    """Images as files on disk, one path per item, decoded by Pillow on each access."""

    def __init__(self, paths: Sequence[str | os.PathLike[str]], labels: Sequence[int], classes: Sequence[str]) -> None:
        if len(paths) != len(labels):
            raise DataError(f"got {len(paths)} paths but {len(labels)} labels; each image needs one label")
        super().__init__(labels, classes)
        self.paths = [os.fspath(path) for path in paths]

    def item_name(self, index: int) -> str:
        """The image file's path."""
        return self.paths[index]

    def _try_decode(self, index: int, *, check_only: bool) -> Image.Image | BadImage:
        return try_decode(self.paths[index], self.paths[index], check_only=check_only)

    def _take(self, indices: list[int]) -> None:
        self.paths = [self.paths[i] for i in indices]


class ArrayImageDataset(ImageDataset):
    """Images held in memory as a ``(N, H, W)`` (grey) or ``(N, H, W, 3)`` (RGB) uint8 array."""

    def __init__(self, pixels: np.ndarray, labels: Sequence[int], classes: Sequence[str], origin: str) -> None:
        if pixels.dtype != np.uint8 or pixels.ndim not in (3, 4) or len(pixels) != len(labels):
            raise DataError(
                f"expected a uint8 array of shape (N, H, W) or (N, H, W, 3) with N = {len(labels)} labels, "
                f"got {pixels.dtype} of shape {pixels.shape}"
            )
        super().__init__(labels, classes)
        self.pixels = pixels
        self.origin = origin

    def item_name(self, index: int) -> str:
        """``origin[index]``."""
        return f"{self.origin}[{index}]"

    def _try_decode(self, index: int, *, check_only: bool) -> Image.Image | BadImage:
        return Image.fromarray(self.pixels[index])

    def _take(self, indices: list[int]) -> None:
        self.pixels = self.pixels[np.asarray(indices, dtype=np.int64)]


class HFImageDataset(ImageDataset):
    """Rows of a Hugging Face ``datasets.Dataset`` whose image column holds encoded files.

    ``table`` keeps only the image column, cast to ``Image(decode=False)``, so a row gives the
    encoded ``bytes`` (or a ``path``) and decoding goes through :func:`decode_image` like
    every other source. The table stays memory-mapped Arrow; ``rows`` selects and orders the
    items.
    """

    def __init__(
        self, table: Any, column: str, rows: Sequence[int], labels: Sequence[int], classes: Sequence[str], origin: str
    ) -> None:
        if len(rows) != len(labels):
            raise DataError(f"got {len(rows)} rows but {len(labels)} labels; each image needs one label")
        super().__init__(labels, classes)
        self.table = table
        self.column = column
        self.rows = [int(row) for row in rows]
        self.origin = origin

    def item_name(self, index: int) -> str:
        """``origin[row]``, the row in the original table."""
        return f"{self.origin}[{self.rows[index]}]"

    def _try_decode(self, index: int, *, check_only: bool) -> Image.Image | BadImage:
        cell = self.table[self.rows[index]][self.column]
        if cell is None or (cell.get("bytes") is None and cell.get("path") is None):
            return BadImage(self.item_name(index), "no image in this row")
        source = cell["bytes"] if cell.get("bytes") is not None else cell["path"]
        return try_decode(source, self.item_name(index), check_only=check_only)

    def _take(self, indices: list[int]) -> None:
        self.rows = [self.rows[i] for i in indices]


def default_workers() -> int:
    """Threads for the scan: the CPU cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def scan_images(dataset: ImageDataset, *, workers: int | None = None) -> list[tuple[int, BadImage]]:
    """Decode every image of ``dataset`` in a thread pool; return ``(index, BadImage)`` for each failure.

    Pillow releases the GIL while decoding, so threads use all cores without the start-up
    cost of processes. Items are handed out in chunks so that millions of files do not make
    millions of futures. Results are in index order.
    """
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise DataError(f"workers must be at least 1, got {workers}")
    size = len(dataset)
    chunk = max(1, min(256, math.ceil(size / (4 * workers))))
    starts = range(0, size, chunk)

    def check_chunk(start: int) -> list[tuple[int, BadImage]]:
        found = []
        for index in range(start, min(start + chunk, size)):
            bad = dataset.check(index)
            if bad is not None:
                found.append((index, bad))
        return found

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [item for found in pool.map(check_chunk, starts) for item in found]


def stratified_split(labels: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split item indices into ``(train, val)``, each class contributing ``round(fraction * n_c)`` to val.

    Each class's share of the validation set is within half an item of ``fraction`` times its
    count, and every class keeps at least one training item (a class of one item goes wholly
    to training). Which items go to validation is drawn with ``numpy.random.default_rng(seed)``,
    class by class in label order, so the split depends only on the labels and the seed. Both
    lists are sorted.
    """
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"the validation fraction must be in [0, 1), got {fraction}")
    label_array = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for label in np.unique(label_array):
        members = np.flatnonzero(label_array == label)
        count = min(math.floor(fraction * len(members) + 0.5), len(members) - 1)
        val.extend(rng.permutation(members)[:count].tolist())
    val_set = set(val)
    return [i for i in range(len(label_array)) if i not in val_set], sorted(val)
