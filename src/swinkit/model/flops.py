"""Analytic FLOP count of a Swin model, term by term, as the paper counts (Eq. 1 and 2).

One multiply-add counts as one FLOP. Per block on an ``h x w`` map of ``C`` channels with
window ``M``: the projections cost ``4hwC^2`` (qkv and output), attention ``2M^2hwC``
(``QK^T`` and ``AV``; Eq. 2's second term), the MLP ``8hwC^2`` (ratio 4). As in the
official code's count, which gives the published figures, each LayerNorm counts one FLOP
per element; softmax, GELU and additions are not counted.

Swin V2 is counted the same way, plus its continuous position bias: the scaled cosine
attention counts as Eq. 2's ``2M^2hwC`` (the normalisation of q and k and the
per-head scale are elementwise, like softmax, and not counted), and each block's bias MLP
counts its two matrix products on the ``(2M-1)^2`` offsets of the window in use,
``(2M-1)^2 * (2*512 + 512*heads)``, once per forward pass (it does not depend on the image,
so it is counted once for one image).
"""

from __future__ import annotations

import dataclasses
import math

from swinkit.model.layers import CPB_HIDDEN
from swinkit.model.ops import window_layout
from swinkit.model.registry import get_config
from swinkit.model.swin import SwinConfig, SwinTransformer, _pair

TERMS = ("embedding", "projections", "attention", "position_bias", "mlp", "merging", "norm", "head")


@dataclasses.dataclass(frozen=True)
class FlopCount:
    """FLOPs of one forward pass of one image, with their breakdown.

    ``by_stage[part][term]`` holds the count of each term in each part: ``"embedding"``,
    ``"stage1"`` ... ``"stage4"`` and ``"head"``; ``by_term`` sums them over parts.
    """

    img_size: tuple[int, int]
    by_stage: dict[str, dict[str, int]]

    @property
    def by_term(self) -> dict[str, int]:
        return {term: sum(part.get(term, 0) for part in self.by_stage.values()) for term in TERMS}

    @property
    def total(self) -> int:
        return sum(sum(part.values()) for part in self.by_stage.values())

    @property
    def gflops(self) -> float:
        return self.total / 1e9


def attention_flops(height: int, width: int, dim: int, window: int | None, small_maps: str = "shrink") -> int:
    """Eq. 1 (``window=None``: global MSA, ``2(hw)^2C``) or Eq. 2 (``2M^2hwC``) attention term.

    With a window, the map is padded to whole windows as the model does, under its rule for
    maps no larger than the window (``small_maps``, see :func:`~swinkit.model.ops.window_layout`).
    """
    if window is None:
        return 2 * (height * width) ** 2 * dim
    window_h, window_w, _, _ = window_layout(height, width, window, 0, small_maps)
    padded = math.ceil(height / window_h) * window_h * math.ceil(width / window_w) * window_w
    return 2 * window_h * window_w * padded * dim


def position_bias_flops(height: int, width: int, window: int, heads: int, small_maps: str = "shrink") -> int:
    """Swin V2's bias MLP on one block's offset grid: ``(2M_h-1)(2M_w-1) * (2*512 + 512*heads)``.

    ``M_h x M_w`` is the window the block uses on an ``height x width`` map (under ``small_maps``).
    """
    window_h, window_w, _, _ = window_layout(height, width, window, 0, small_maps)
    return (2 * window_h - 1) * (2 * window_w - 1) * (2 * CPB_HIDDEN + CPB_HIDDEN * heads)


def count_flops(
    model_or_name: SwinTransformer | SwinConfig | str, img_size: int | tuple[int, int] | None = None
) -> FlopCount:
    """Count the FLOPs of a model (or a variant name, or a config) on one ``img_size`` image.

    ``img_size`` defaults to the config's. Returns a :class:`FlopCount` with the total and
    its breakdown per stage and per term.
    """
    if isinstance(model_or_name, SwinTransformer):
        config = model_or_name.config
    elif isinstance(model_or_name, SwinConfig):
        config = model_or_name
    else:
        config = get_config(model_or_name)
    image_h, image_w = _pair(img_size) if img_size is not None else config.img_size
    if min(image_h, image_w) < config.patch_size:
        raise ValueError(f"img_size {(image_h, image_w)} is smaller than one patch ({config.patch_size} pixels)")
    height, width = config.patch_grid(image_h, image_w)
    dim = config.embed_dim
    by_stage: dict[str, dict[str, int]] = {
        "embedding": {
            "embedding": height * width * dim * config.in_chans * config.patch_size**2,
            "norm": height * width * dim,
        }
    }
    for index, (depth, heads) in enumerate(zip(config.depths, config.num_heads)):
        terms = dict.fromkeys(("projections", "attention", "mlp", "merging", "norm"), 0)
        if index > 0:
            terms["norm"] += height * width * dim
            height, width = math.ceil(height / 2), math.ceil(width / 2)
            terms["merging"] = height * width * 4 * dim * 2 * dim
            dim *= 2
        terms["projections"] = depth * 4 * height * width * dim * dim
        terms["attention"] = depth * attention_flops(height, width, dim, config.window_size, config.small_maps)
        terms["mlp"] = depth * 2 * height * width * dim * int(dim * config.mlp_ratio)
        terms["norm"] += depth * 2 * height * width * dim
        if config.version == 2:
            terms["position_bias"] = depth * position_bias_flops(
                height, width, config.window_size, heads, config.small_maps
            )
        by_stage[f"stage{index + 1}"] = terms
    by_stage["head"] = {"norm": height * width * dim, "head": dim * config.num_classes}
    return FlopCount(img_size=(image_h, image_w), by_stage=by_stage)
