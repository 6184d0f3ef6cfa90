"""Images decoded once and kept in memory as uint8, so that epochs do not decode files again.

:func:`decode_into_memory` decodes every image of a dataset (in threads, as the scan for
unreadable files does, and in place of it) and keeps the pixels while their total stays
within a byte limit; :class:`DecodedImageDataset` serves them as PIL images like any
other source. Each image is kept grey (``"L"``) when it has one channel and ``"RGB"``
otherwise, converted as the transforms would convert it.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from swinkit.data.images import BadImage, DataError
from swinkit.data.imagesets import ArrayImageDataset, ImageDataset, default_workers

#: The most memory decoded images may take by default: 4 GiB, or half of what is available.
DEFAULT_MEMORY_LIMIT = 4 * 2**30
#: Pillow modes kept as one grey channel; every other mode is kept as RGB.
GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_SIZE = re.compile(r"(?P<number>\d+(\.\d*)?|\.\d+)\s*(?P<unit>[kmgt]?i?b?)?", re.IGNORECASE)
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


class DecodedImageDataset(ImageDataset):
    """Decoded images held in memory, one uint8 array per item: ``(H, W)`` grey or ``(H, W, 3)`` RGB.

    ``names`` name the items in reports (their files, or rows). Picklable; items may differ in size.
    """

    def __init__(
        self, arrays: Sequence[np.ndarray], labels: Sequence[int], classes: Sequence[str], names: Sequence[str]
    ) -> None:
        if not len(arrays) == len(labels) == len(names):
            raise DataError(f"got {len(arrays)} images, {len(labels)} labels and {len(names)} names; need one each")
        super().__init__(labels, classes)
        self.arrays = list(arrays)
        self.names = list(names)

    @property
    def nbytes(self) -> int:
        """Memory the pixels take."""
        return sum(array.nbytes for array in self.arrays)

    def item_name(self, index: int) -> str:
        """The name of the file or row the image came from."""
        return self.names[index]

    def _try_decode(self, index: int, *, check_only: bool) -> Image.Image | BadImage:
        return Image.fromarray(self.arrays[index])

    def _take(self, indices: list[int]) -> None:
        self.arrays = [self.arrays[i] for i in indices]
        self.names = [self.names[i] for i in indices]


def in_memory(dataset: ImageDataset) -> bool:
    """Whether ``dataset`` holds decoded pixels (no file is read when an item is)."""
    return isinstance(dataset, (DecodedImageDataset, ArrayImageDataset))


def kept_mode(image: Image.Image) -> str:
    """``"L"`` for one-channel images (grey, 16-bit, float, with or without alpha), else ``"RGB"``."""
    return "L" if image.mode in GREY_MODES else "RGB"


def to_array(image: Image.Image) -> np.ndarray:
    """The image as the uint8 array it is kept as: ``(H, W)`` grey or ``(H, W, 3)`` RGB."""
    mode = kept_mode(image)
    return np.asarray(image if image.mode == mode else image.convert(mode), dtype=np.uint8)


def default_memory_limit() -> int:
    """:data:`DEFAULT_MEMORY_LIMIT`, or half of the memory available now when that is less."""
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return DEFAULT_MEMORY_LIMIT
    return min(DEFAULT_MEMORY_LIMIT, available // 2)


def parse_size(text: str) -> int:
    """A byte count from ``"512MB"``, ``"4G"``, ``"1.5GiB"``, ``"300k"`` or ``"0"`` (units of 1024).

    Raises DataError naming the text and the accepted forms.
    """
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise DataError(f"memory size {text!r} is not understood; write a number and a unit: 0, 500MB, 4GB, 1.5GiB")
    unit = (match["unit"] or "").lower()[:1]
    return int(float(match["number"]) * _UNITS[unit])


def format_size(nbytes: float) -> str:
    """``"13.8 MB"``, ``"4.0 GB"``: bytes in units of 1024, for messages."""
    for unit in ("B", "kB", "MB", "GB"):
        if nbytes < 1024 or unit == "GB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    raise AssertionError("unreachable")


def decode_into_memory(
    dataset: ImageDataset, limit: int, *, workers: int | None = None
) -> tuple[ImageDataset, list[tuple[int, BadImage]]]:
    """Decode every image of ``dataset`` once; keep them in memory when they take at most ``limit`` bytes.

    Returns the dataset to use (a :class:`DecodedImageDataset` when kept, else ``dataset``
    itself) and ``(index, BadImage)`` for each image that cannot be decoded, in index order,
    as :func:`~swinkit.data.scan_images` gives them. The decoding doubles as that scan:
    once the kept pixels pass ``limit`` they are dropped and the remaining images are only
    checked. Datasets already in memory are returned as they are.
    """
    if in_memory(dataset):
        return dataset, []
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise DataError(f"workers must be at least 1, got {workers}")
    size = len(dataset)
    arrays: list[np.ndarray | None] = [None] * size
    state = {"bytes": 0, "over": limit <= 0}
    lock = threading.Lock()
    chunk = max(1, min(256, math.ceil(size / (4 * workers))))

    def decode_chunk(start: int) -> list[tuple[int, BadImage]]:
        found = []
        for index in range(start, min(start + chunk, size)):
            if state["over"]:
                bad = dataset.check(index)
                if bad is not None:
                    found.append((index, bad))
                continue
            result = dataset._try_decode(index, check_only=False)
            if isinstance(result, BadImage):
                found.append((index, result))
                continue
            array = to_array(result)
            with lock:
                state["bytes"] += array.nbytes
                state["over"] = state["over"] or state["bytes"] > limit
            arrays[index] = array
        return found

    with ThreadPoolExecutor(max_workers=workers) as pool:
        bad = [item for found in pool.map(decode_chunk, range(0, size, chunk)) for item in found]
    if state["over"]:
        return dataset, bad
    # Unreadable items keep a 1x1 placeholder until the caller leaves them out.
    kept = [array if array is not None else np.zeros((1, 1), np.uint8) for array in arrays]
    names = [dataset.item_name(index) for index in range(size)]
    return DecodedImageDataset(kept, dataset.labels, dataset.classes, names), bad
