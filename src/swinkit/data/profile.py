"""What a training set looks like, measured: the facts a recipe can be chosen from.

:func:`profile_data` reads a sample of the images (all of them up to
:data:`PROFILE_SAMPLE`) and reports their typical size, whether they are grey, their
pixel statistics, the class counts, and :class:`MirrorTest`: whether mirroring an image
keeps it looking like its class, which decides if horizontal flips are a fair
augmentation (they are for photos of objects, not for digits or letters).
"""

from __future__ import annotations

import dataclasses
import statistics

import numpy as np
from PIL import Image

from swinkit.data.imagesets import ImageDataset
from swinkit.data.memory import to_array

#: Images read to profile a data set (a seeded random sample when there are more).
PROFILE_SAMPLE = 2000
#: Side of the thumbnails the mirror test compares.
MIRROR_SIDE = 16
#: Mirroring is taken to keep the classes when it keeps this share of a nearest-mean
#: classifier's accuracy above chance.
MIRROR_KEEPS = 0.75
#: Below this accuracy above chance the nearest-mean classifier tells nothing either way.
MIRROR_SIGNAL = 0.1


@dataclasses.dataclass(frozen=True)
class MirrorTest:
    """A nearest-class-mean classifier on pixel thumbnails, scored on images and on their mirror images.

    Class means come from one half of the sample, ``accuracy`` and ``mirrored`` are its
    top-1 on the other half (``tested`` images) as they are and mirrored left to right;
    ``chance`` is one over the number of classes.
    """

    accuracy: float
    mirrored: float
    chance: float
    tested: int = 0

    @property
    def conclusive(self) -> bool:
        """Whether the classifier sees the classes at all (accuracy at least :data:`MIRROR_SIGNAL` above chance)."""
        return self.accuracy - self.chance >= MIRROR_SIGNAL

    @property
    def keeps_classes(self) -> bool:
        """False when mirroring costs more than ``1 -`` :data:`MIRROR_KEEPS` of the accuracy above chance.

        The loss must also exceed three standard errors of the difference of two accuracies
        on ``tested`` images, so that a small sample's noise does not switch flips off; an
        inconclusive test keeps them.
        """
        if not self.conclusive:
            return True
        drop = self.accuracy - self.mirrored
        noise = 3 * (2 * self.accuracy * (1 - self.accuracy) / max(1, self.tested)) ** 0.5
        relative = (self.mirrored - self.chance) < MIRROR_KEEPS * (self.accuracy - self.chance)
        return not (relative and drop > noise)


@dataclasses.dataclass(frozen=True)
class DataProfile:
    """A training set in numbers: ``count`` images of ``num_classes`` classes, typically ``height x width``.

    ``channels`` is 1 when every sampled image is grey (also RGB files whose three channels
    agree), else 3; ``mean`` and ``std`` are the pixel statistics per channel in 0..1 for
    that many channels; ``smallest_class`` counts the images of the rarest class.
    """

    count: int
    num_classes: int
    smallest_class: int
    height: int
    width: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    mirror: MirrorTest

    @property
    def side(self) -> int:
        """The geometric mean of the typical height and width, rounded."""
        return round((self.height * self.width) ** 0.5)


def profile_data(dataset: ImageDataset, *, sample: int = PROFILE_SAMPLE, seed: int = 0) -> DataProfile:
    """Measure ``dataset`` on up to ``sample`` of its images (a seeded random choice when it has more)."""
    if len(dataset) == 0:
        raise ValueError("cannot profile an empty dataset")
    rng = np.random.default_rng(seed)
    indices = np.arange(len(dataset)) if len(dataset) <= sample else np.sort(rng.choice(len(dataset), sample, False))
    arrays, labels = [], []
    for index in indices.tolist():
        image, label = dataset[index]
        arrays.append(to_array(image))
        labels.append(label)
    grey = all(_is_grey(array) for array in arrays)
    if grey:
        arrays = [array if array.ndim == 2 else array[..., 0] for array in arrays]
    channels = 1 if grey else 3
    counts = np.bincount(np.asarray(dataset.labels), minlength=len(dataset.classes))
    present = counts[counts > 0]
    total = np.zeros(channels)
    squares = np.zeros(channels)
    pixels = 0
    for array in arrays:
        values = array.reshape(-1, channels).astype(np.float64) / 255.0
        total += values.sum(0)
        squares += (values**2).sum(0)
        pixels += values.shape[0]
    mean = total / pixels
    std = np.sqrt(np.maximum(squares / pixels - mean**2, 1e-12))
    return DataProfile(
        count=len(dataset),
        num_classes=int(len(present)),
        smallest_class=int(present.min()),
        height=round(statistics.median(array.shape[0] for array in arrays)),
        width=round(statistics.median(array.shape[1] for array in arrays)),
        channels=channels,
        mean=tuple(round(float(v), 4) for v in mean),
        std=tuple(round(float(v), 4) for v in std),
        mirror=mirror_test(arrays, labels),
    )


def mirror_test(arrays: list[np.ndarray], labels: list[int]) -> MirrorTest:
    """:class:`MirrorTest` of uint8 images (``(H, W)`` or ``(H, W, C)``) and their labels.

    Each image becomes a :data:`MIRROR_SIDE`-pixel thumbnail, centred and scaled to unit
    norm (so that brightness and contrast do not count); images at even positions give the
    class means, the others are classified by the nearest mean (cosine similarity).
    """
    thumbs = np.stack([_thumbnail(array) for array in arrays])
    mirrored = thumbs[:, :, ::-1].reshape(len(thumbs), -1)
    flat = thumbs.reshape(len(thumbs), -1)
    labels_array = np.asarray(labels)
    classes = np.unique(labels_array)
    chance = 1.0 / len(classes)
    fit, test = np.arange(0, len(flat), 2), np.arange(1, len(flat), 2)
    fitted = [c for c in classes if np.any(labels_array[fit] == c)]
    if len(test) == 0 or len(fitted) < 2:
        return MirrorTest(accuracy=chance, mirrored=chance, chance=chance)
    means = np.stack([_unit(flat[fit][labels_array[fit] == c].mean(0)) for c in fitted])
    names = np.asarray(fitted)
    accuracy = float(np.mean(names[(flat[test] @ means.T).argmax(1)] == labels_array[test]))
    mirror_accuracy = float(np.mean(names[(mirrored[test] @ means.T).argmax(1)] == labels_array[test]))
    return MirrorTest(accuracy=accuracy, mirrored=mirror_accuracy, chance=chance, tested=len(test))


def _is_grey(array: np.ndarray) -> bool:
    """One channel, or three that agree (within one level on average, as JPEG's colour rounding leaves them)."""
    if array.ndim == 2:
        return True
    channels = array.astype(np.int16)
    first = channels[..., 0]
    return bool(np.abs(first - channels[..., 1]).mean() <= 1 and np.abs(first - channels[..., 2]).mean() <= 1)


def _thumbnail(array: np.ndarray) -> np.ndarray:
    """``(side, side, C)`` float: resized, centred, unit norm."""
    image = Image.fromarray(array).resize((MIRROR_SIDE, MIRROR_SIDE), Image.BILINEAR)
    values = np.asarray(image, dtype=np.float64).reshape(MIRROR_SIDE, MIRROR_SIDE, -1)
    return _unit(values - values.mean())


def _unit(values: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(values)
    return values / norm if norm > 0 else values
