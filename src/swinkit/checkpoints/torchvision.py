"""torchvision's layout (``torchvision.models.swin_t`` and friends).

The stem is ``features.0`` (convolution at ``.0``, LayerNorm at ``.2``), stage ``s`` is
``features.{2s+1}`` and the merging before it ``features.{2s}``; the MLP is a Sequential
(``mlp.0``, ``mlp.3``). The saved ``relative_position_index`` buffers are ignored.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import torch

from swinkit.checkpoints.layout import BLOCK_MODULES, Converted, Layout, rename_to_native, same_names

NAME = "torchvision"

LAYOUT = Layout(
    modules=(
        ("features.0.0", "patch_embed.proj"),
        ("features.0.2", "patch_embed.norm"),
        ("norm", "norm"),
        ("head", "head"),
    ),
    block="features.{stage}.{block}",
    block_stage=(2, 1),
    block_modules=(
        *same_names(tuple(name for name in BLOCK_MODULES if not name.startswith("mlp."))),
        ("mlp.0", "mlp.fc1"),
        ("mlp.3", "mlp.fc2"),
    ),
    merge="features.{stage}",
    merge_stage=(2, 0),
)


def detect(keys: Collection[str]) -> bool:
    """torchvision keys: the stem convolution at ``features.0.0``."""
    return "features.0.0.weight" in keys


def to_native(state_dict: Mapping[str, torch.Tensor]) -> Converted:
    """Rename a torchvision state dict to swinkit's names."""
    return rename_to_native(state_dict, LAYOUT)
