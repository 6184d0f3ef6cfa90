"""SimMIM (Xie et al., "SimMIM: A Simple Framework for Masked Image Modeling", CVPR 2022) on a Swin encoder.

Random mask patches of the input are hidden by replacing their patch embeddings with a learned
mask token; the encoder (any :class:`~swinkit.model.swin.SwinTransformer`, V1 or V2) runs on
the result; a one-layer decoder predicts the pixels at the input resolution, and the loss is
the L1 distance on the masked pixels only (Sec. 3, Eq. 1):

    L = 1 / (Omega(x_M) * C) * || y_M - x_M ||_1

with ``x_M`` the (normalised) input pixels at the masked positions, ``y_M`` the prediction
there, ``Omega`` the number of masked pixel positions and ``C`` the channels.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
from torch import nn

from swinkit.model.registry import COMPACT, get_config, register_task_model
from swinkit.model.swin import SwinConfig, SwinTransformer

#: The official mask: 32x32-pixel mask patches, 60% of them masked, at 192 pixels (a 6x6 grid).
OFFICIAL_MASK_PATCH = 32
MASK_RATIO = 0.6
OFFICIAL_INPUT = 192
#: The official loss adds this to the count of masked pixels it divides by.
LOSS_EPS = 1e-5
#: The mask grid the official setting gives (192 / 32 = 6 per side), aimed at for other input sizes.
_MASK_GRID = OFFICIAL_INPUT // OFFICIAL_MASK_PATCH


def total_stride(config: SwinConfig) -> int:
    """Pixels per token of the last stage: the patch size times 2 per patch merging (32 for Swin-T..L)."""
    return config.patch_size * 2 ** (config.num_stages - 1)


def choose_mask_patch(img_size: int | tuple[int, int], stride: int) -> int:
    """The mask patch for an input size: the multiple of ``stride`` dividing both sides nearest a 6x6 grid.

    The official setting, 32 pixels at 192 (stride 32), is what this gives there; 32 pixels
    with stride 8 give 8 (a 4x4 grid). Raises ValueError when no multiple of the stride
    divides both sides.
    """
    height, width = (img_size, img_size) if isinstance(img_size, int) else img_size
    candidates = [size for size in range(stride, min(height, width) + 1, stride) if not height % size + width % size]
    if not candidates:
        raise ValueError(
            f"no mask patch fits a {height}x{width} input: it must be a multiple of the model's total stride {stride} "
            f"dividing both sides; choose an input size that is a multiple of {stride}"
        )
    target = min(height, width) / _MASK_GRID
    return min(candidates, key=lambda size: (abs(size - target), size))


@dataclasses.dataclass(frozen=True)
class MaskGenerator:
    """Random masks as the official SimMIM draws them, on the model's patch grid.

    The ``input_size`` image (a side, or ``(height, width)``; kept as the pair) is cut into
    ``mask_patch`` x ``mask_patch`` pixel squares; ``ceil(ratio * count)`` of the ``count``
    squares are chosen uniformly without replacement and masked, and the mask is expanded to
    the model's ``model_patch`` grid (official: 192 pixels, mask patch 32, ratio 0.6, patch 4:
    22 of 36 squares, a 48x48 mask). ``stride`` is the model's total stride, which the mask
    patch must be a multiple of, so that each masked square covers whole tokens of every
    stage. Invalid settings raise ValueError.
    """

    input_size: int | tuple[int, int]
    mask_patch: int = OFFICIAL_MASK_PATCH
    model_patch: int = 4
    ratio: float = MASK_RATIO
    stride: int = 32

    def __post_init__(self) -> None:
        size = (self.input_size, self.input_size) if isinstance(self.input_size, int) else tuple(self.input_size)
        object.__setattr__(self, "input_size", size)
        if not 0.0 < self.ratio < 1.0:
            raise ValueError(f"mask ratio must be in (0, 1), got {self.ratio}")
        if self.model_patch < 1 or self.stride % self.model_patch:
            raise ValueError(
                f"the total stride {self.stride} must be a multiple of the model patch {self.model_patch} (both >= 1)"
            )
        if self.mask_patch < 1 or self.mask_patch % self.stride:
            raise ValueError(
                f"mask patch {self.mask_patch} must be a positive multiple of the model's total stride {self.stride} "
                f"(e.g. {self.stride}, {2 * self.stride})"
            )
        if any(side % self.mask_patch for side in size):
            raise ValueError(
                f"mask patch {self.mask_patch} must divide the input size {size[0]}x{size[1]}; for this input choose "
                f"among {_divisors(size, self.stride) or 'none: make the input a multiple of the stride'}"
            )

    @classmethod
    def for_model(
        cls, config: SwinConfig, mask_patch: int | None = None, ratio: float = MASK_RATIO
    ) -> MaskGenerator:
        """The generator for a model's input size; ``mask_patch`` defaults to :func:`choose_mask_patch`."""
        stride = total_stride(config)
        patch = choose_mask_patch(config.img_size, stride) if mask_patch is None else mask_patch
        return cls(config.img_size, patch, config.patch_size, ratio, stride)

    @property
    def grid(self) -> tuple[int, int]:
        """Mask patches per column and row (6x6 officially)."""
        height, width = self.input_size  # type: ignore[misc]
        return height // self.mask_patch, width // self.mask_patch

    @property
    def mask_count(self) -> int:
        """Masked squares per image: ``ceil(ratio * rows * columns)``."""
        rows, columns = self.grid
        return math.ceil(rows * columns * self.ratio)

    def __call__(self, batch: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """``batch`` masks, ``(batch, H/model_patch, W/model_patch)`` booleans, each drawn independently."""
        rows, columns = self.grid
        chosen = torch.zeros(batch, rows * columns, dtype=torch.bool)
        for row in chosen:
            row[torch.randperm(rows * columns, generator=generator)[: self.mask_count]] = True
        scale = self.mask_patch // self.model_patch
        return chosen.reshape(batch, rows, columns).repeat_interleave(scale, 1).repeat_interleave(scale, 2)


def _divisors(size: tuple[int, int], stride: int) -> list[int]:
    return [patch for patch in range(stride, min(size) + 1, stride) if not size[0] % patch + size[1] % patch]


def masked_l1_loss(
    pixels: torch.Tensor, reconstruction: torch.Tensor, mask: torch.Tensor, patch_size: int
) -> torch.Tensor:
    """SimMIM's loss (Eq. 1): L1 on the masked pixels, over their count (+1e-5) and the channels.

    ``pixels`` and ``reconstruction`` are ``(B, C, H, W)``; ``mask`` ``(B, H/p, W/p)`` on the
    patch grid is expanded to pixels by repeating each entry ``p x p`` times. The sum of
    ``|reconstruction - pixels|`` at masked positions, over all channels, divided by
    ``(masked positions + 1e-5) * C``: the references' formula exactly.
    """
    if reconstruction.shape != pixels.shape:
        raise ValueError(
            f"reconstruction {tuple(reconstruction.shape)} and pixels {tuple(pixels.shape)} must have the same shape"
        )
    grid = (pixels.shape[0], pixels.shape[2] // patch_size, pixels.shape[3] // patch_size)
    if tuple(mask.shape) != grid:
        raise ValueError(
            f"mask must have shape (batch, H/{patch_size}, W/{patch_size}) = {grid}, got {tuple(mask.shape)}"
        )
    expanded = mask.repeat_interleave(patch_size, 1).repeat_interleave(patch_size, 2).unsqueeze(1).to(pixels.dtype)
    error = (reconstruction - pixels).abs()
    return (error * expanded).sum() / (expanded.sum() + LOSS_EPS) / pixels.shape[1]


class SimMIMDecoder(nn.Module):
    """The one-layer prediction head: a 1x1 convolution to ``stride^2 * in_chans`` channels, then pixel shuffle.

    ``(B, h, w, dim)`` (NHWC, the encoder's final normalised map) ``-> (B, in_chans, h*stride, w*stride)``.
    """

    def __init__(self, dim: int, stride: int, in_chans: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(dim, stride**2 * in_chans, kernel_size=1)
        self.shuffle = nn.PixelShuffle(stride)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.proj(features.permute(0, 3, 1, 2)))


class SimMIM(nn.Module):
    """A Swin encoder (V1 or V2) with SimMIM's mask token and decoder, for masked-image pre-training.

    ``encoder`` is a head-less :class:`SwinTransformer` of ``config`` (``num_classes`` must be
    0); ``mask_token`` ``(1, 1, C)`` (truncated normal, std 0.02, as the official code); ``decoder``
    a :class:`SimMIMDecoder`. ``forward(pixels, mask)``: ``(B, in_chans, H, W)`` and a
    ``(B, H/patch, W/patch)`` boolean mask ``->`` the reconstruction ``(B, in_chans, H, W)``;
    ``H`` and ``W`` must be multiples of the total stride. :meth:`loss` is Eq. 1.
    """

    def __init__(self, config: SwinConfig) -> None:
        super().__init__()
        if config.num_classes:
            raise ValueError(
                f"SimMIM's encoder has no classifier head: build it with num_classes=0, got {config.num_classes}"
            )
        self.config = config
        self.encoder = SwinTransformer(config)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.decoder = SimMIMDecoder(config.num_features, self.stride, config.in_chans)

    @property
    def stride(self) -> int:
        """Pixels per final token, by which the decoder upsamples (32 for four stages of patch 4)."""
        return total_stride(self.config)

    def forward(self, pixels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        height, width = pixels.shape[-2:]
        if height % self.stride or width % self.stride:
            raise ValueError(
                f"SimMIM reconstructs through a pixel shuffle by the total stride {self.stride}: the image's height "
                f"and width must be multiples of it, got {height}x{width}"
            )
        features = self.encoder.forward_features(pixels, mask, None if mask is None else self.mask_token)
        return self.decoder(features)

    def loss(self, pixels: torch.Tensor, reconstruction: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """:func:`masked_l1_loss` with this model's patch size."""
        return masked_l1_loss(pixels, reconstruction, mask, self.config.patch_size)

    def mask_generator(self, mask_patch: int | None = None, ratio: float = MASK_RATIO) -> MaskGenerator:
        """A :class:`MaskGenerator` for this model's input size (mask patch chosen from it unless given)."""
        return MaskGenerator.for_model(self.config, mask_patch, ratio)


#: The pre-training settings of the official configs: 192 pixels, window 6 (V1) or 12 (V2),
#: drop path 0 (V1) or 0.1 (V2), no head.
_PRETRAIN_FIELDS = {1: {"window_size": 6, "drop_path_rate": 0.0}, 2: {"window_size": 12, "drop_path_rate": 0.1}}


#: The registered SimMIM models: name -> (classifier variant it starts from, its Swin version).
_BASES = {
    **{f"simmim_swin_{size}": (f"swin_{size}", 1) for size in ("t", "s", "b", "l")},
    **{f"simmim_swinv2_{size}": (f"swinv2_{size}", 2) for size in ("t", "s", "b")},
    "simmim_swinv2_l": ("swinv2_l_192", 2),
}


def _builder(base: str, fields: dict[str, object]) -> Callable[..., SimMIM]:
    def build(**overrides: object) -> SimMIM:
        return SimMIM(get_config(base, **(fields | {"num_classes": 0, "labels": ()} | overrides)))

    build.__doc__ = f"SimMIM on {base} with {fields}; any config field can be overridden."
    return build


def _register() -> None:
    for name, (base, version) in _BASES.items():
        register_task_model(name, _builder(base, {"img_size": OFFICIAL_INPUT, **_PRETRAIN_FIELDS[version]}))
    for base in COMPACT:
        register_task_model(f"simmim_{base}", _builder(base, {"drop_path_rate": 0.0}))


_register()
