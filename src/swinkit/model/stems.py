"""Small-data stems: other ways to turn pixels into stage 1's tokens, with the patch embedding's output layout.

Each stem maps ``(B, in_chans, H, W) -> (B, h, w, dim)`` with the same ``h, w`` as
:class:`~swinkit.model.layers.PatchEmbed` for the same patch and remainder (pad: ``ceil(H/patch)``,
crop: ``floor(H/patch)``), then the same LayerNorm, so that the stages, the merging and the
head are unchanged. They are options for training from scratch on few small images
(:attr:`swinkit.SwinConfig.stem`); the paper's Swin, and every released variant, uses the
patch embedding.

- ``"conv"``: an overlapping convolutional stem (Xiao et al., "Early convolutions help
  transformers see better", 2021): 3x3 convolutions with BatchNorm and GELU, as many with
  stride 2 as halve the image to the patch grid (at least two convolutions), then a 1x1
  projection to ``dim``.
- ``"spt"``: shifted patch tokenization (Lee et al., "Vision Transformer for Small-Size
  Datasets", 2021): the image and its four diagonal shifts by half a patch, concatenated on
  channels, then the patch embedding's strided projection.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from swinkit.model import ops

#: The stems :attr:`swinkit.SwinConfig.stem` accepts: the paper's patch embedding and the small-data ones.
STEMS = ("patch", "conv", "spt")
#: Copies of the image shifted patch tokenization stacks: itself and its four diagonal shifts.
SPT_COPIES = 5


def stride_twos(patch: int) -> int:
    """How many stride-2 convolutions the conv stem needs for ``patch`` (a power of two); ValueError otherwise."""
    if patch < 1 or patch & (patch - 1):
        raise ValueError(f"stem 'conv' reaches the patch grid by halving the image, so patch_size must be a power of "
                         f"two (1, 2, 4, 8, ...), got {patch}")  # fmt: skip
    return patch.bit_length() - 1


def fit_to_patches(pixels: torch.Tensor, patch: int, remainder: str) -> torch.Tensor:
    """Zero-pad (``remainder="pad"``) or crop (``"crop"``) ``(B, C, H, W)`` to whole patches on the bottom and right."""
    if remainder == "pad":
        return ops.pad_image(pixels, patch)
    height, width = pixels.shape[2] // patch * patch, pixels.shape[3] // patch * patch
    return pixels[:, :, :height, :width]


def diagonal_shifts(pixels: torch.Tensor, shift: int) -> torch.Tensor:
    """Shifted patch tokenization's input: ``(B, C, H, W) -> (B, 5C, H, W)``.

    The image, then four copies moved by ``shift`` pixels along the diagonals (down-right,
    down-left, up-right, up-left), the uncovered border filled with zeros (Lee et al., Eq. 2).
    """
    height, width = pixels.shape[2], pixels.shape[3]
    padded = F.pad(pixels, (shift, shift, shift, shift))
    copies = [pixels]
    for rows, columns in ((0, 0), (0, 2 * shift), (2 * shift, 0), (2 * shift, 2 * shift)):
        copies.append(padded[:, :, rows : rows + height, columns : columns + width])
    return torch.cat(copies, dim=1)


class ConvStem(nn.Module):
    """Overlapping convolutional stem: ``(B, in_chans, H, W) -> (B, H/patch, W/patch, dim)`` (sizes as PatchEmbed's).

    ``convs``: 3x3 convolutions (padding 1, no bias) each followed by BatchNorm and GELU,
    ``dim`` channels wide; the last ``log2(patch)`` have stride 2, and there are at least two.
    ``proj``: a 1x1 convolution to ``dim``; ``norm``: LayerNorm, as the patch embedding's.
    """

    def __init__(self, patch_size: int, in_chans: int, dim: int, eps: float, remainder: str = "pad") -> None:
        super().__init__()
        self.patch_size = patch_size
        self.remainder = remainder
        halvings = stride_twos(patch_size)
        count = max(2, halvings)
        layers = []
        for index in range(count):
            stride = 2 if index >= count - halvings else 1
            layers.append(
                nn.Sequential(
                    nn.Conv2d(in_chans if index == 0 else dim, dim, 3, stride=stride, padding=1, bias=False),
                    nn.BatchNorm2d(dim),
                    nn.GELU(),
                )
            )
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Conv2d(dim, dim, kernel_size=1)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        pixels = fit_to_patches(pixels, self.patch_size, self.remainder)
        return self.norm(self.proj(self.convs(pixels)).permute(0, 2, 3, 1))


class ShiftedPatchEmbed(nn.Module):
    """Shifted patch tokenization: :func:`diagonal_shifts` by half a patch (at least a pixel), then the patch embedding.

    ``proj`` is the strided convolution of :class:`~swinkit.model.layers.PatchEmbed` over the
    ``5 * in_chans`` channels; ``norm`` its LayerNorm.
    ``(B, in_chans, H, W) -> (B, H/patch, W/patch, dim)`` (sizes as PatchEmbed's).
    """

    def __init__(self, patch_size: int, in_chans: int, dim: int, eps: float, remainder: str = "pad") -> None:
        super().__init__()
        self.patch_size = patch_size
        self.remainder = remainder
        self.shift = max(1, patch_size // 2)
        self.proj = nn.Conv2d(SPT_COPIES * in_chans, dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        pixels = fit_to_patches(pixels, self.patch_size, self.remainder)
        return self.norm(self.proj(diagonal_shifts(pixels, self.shift)).permute(0, 2, 3, 1))
