"""How images are prepared for a model: the preprocessing that travels with its weights.

One definition for the checkpoint formats (which store it) and the data transforms (which
apply it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

#: ImageNet channel means and standard deviations, which every released Swin model uses.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Interpolation names accepted in ``Preprocessing.interpolation``.
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """Resize so that a center crop of ``crop_pct`` gives ``input_size``, then normalise with ``mean``/``std``.

    ``input_size`` is ``(channels, height, width)``. The swinkit default is ImageNet's mean
    and std, bicubic resizing, and a crop of 0.875 below 384 pixels, 1.0 from 384 on (the
    official evaluation settings).
    """

    input_size: tuple[int, int, int]
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    crop_pct: float = 0.875
    interpolation: str = "bicubic"

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        object.__setattr__(self, "crop_pct", float(self.crop_pct))
        if len(self.input_size) != 3 or min(self.input_size) < 1:
            raise ValueError(f"input_size must be (channels, height, width) of positive sizes, got {self.input_size}")
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise ValueError(
                f"mean and std need one value per channel ({self.in_chans}), got {len(self.mean)} and "
                f"{len(self.std)} values; for grey models pass e.g. mean=(0.5,), std=(0.5,)"
            )
        if any(value <= 0 for value in self.std):
            raise ValueError(f"std values must be positive, got {self.std}")
        if not 0.0 < self.crop_pct <= 1.0:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")

    @property
    def in_chans(self) -> int:
        """Channels the model takes."""
        return self.input_size[0]

    @property
    def img_size(self) -> tuple[int, int]:
        """``(height, width)`` of the model's input."""
        return self.input_size[1], self.input_size[2]

    @property
    def mode(self) -> str:
        """The Pillow mode images are converted to: ``"RGB"`` for 3 channels, ``"L"`` for 1."""
        modes = {1: "L", 3: "RGB"}
        if self.in_chans not in modes:
            raise ValueError(
                f"images can be read for 1-channel (grey) or 3-channel (RGB) models; this one takes "
                f"{self.in_chans} channels: feed it tensors directly"
            )
        return modes[self.in_chans]

    @classmethod
    def default(cls, img_size: Sequence[int], in_chans: int = 3) -> Preprocessing:
        """The swinkit default for a model of ``img_size`` ``(height, width)``."""
        height, width = img_size
        crop = 1.0 if min(height, width) >= 384 else 0.875
        if in_chans == 3:
            return cls((in_chans, height, width), IMAGENET_MEAN, IMAGENET_STD, crop)
        return cls((in_chans, height, width), (0.5,) * in_chans, (0.5,) * in_chans, crop)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Preprocessing:
        """Read the form :meth:`to_dict` writes (extra keys are ignored)."""
        fields = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in fields})  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields."""
        return {
            key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(self).items()
        }

    def replace(self, **changes: object) -> Preprocessing:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def for_model(self, img_size: Sequence[int], in_chans: int) -> Preprocessing:
        """This preprocessing for a model of another input size: same normalisation, default crop for the size."""
        if tuple(img_size) == self.input_size[1:] and in_chans == self.input_size[0]:
            return self
        default = Preprocessing.default(img_size, in_chans)
        if in_chans != self.input_size[0]:
            return default
        return default.replace(mean=self.mean, std=self.std, interpolation=self.interpolation)
