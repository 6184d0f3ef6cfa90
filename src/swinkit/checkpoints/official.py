"""The official Swin repository's layout (``{'model': state_dict}``), also timm's layout before 0.9.

Patch merging is stored at the end of a stage (``layers.{0..2}.downsample``, swinkit's
``stages.{1..3}.downsample``) and the classifier is a bare ``head``. Swin V2 files keep the
block names of swinkit (``attn.q_bias``, ``attn.v_bias``, ``attn.logit_scale``,
``attn.cpb_mlp``); older ones name the position bias MLP ``attn.rpe_mlp``. The buffers they
store (``relative_coords_table``, ``relative_position_index``, ``attn_mask``) are not loaded;
the coordinate tables are read to tell the window (see :mod:`swinkit.checkpoints.architecture`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import torch

from swinkit.checkpoints.layout import (
    BLOCK_MODULES,
    V2_BLOCK_MODULES,
    WINDOW_BUFFERS,
    Converted,
    Layout,
    rename_to_native,
    same_names,
)

NAME = "official"

LAYOUT = Layout(
    modules=same_names(("patch_embed", "norm", "head")),
    block="layers.{stage}.blocks.{block}",
    block_modules=(*same_names(BLOCK_MODULES + V2_BLOCK_MODULES + WINDOW_BUFFERS), ("attn.rpe_mlp", "attn.cpb_mlp")),
    merge="layers.{stage}.downsample",
    merge_stage=(1, -1),
)


def detect(keys: Collection[str]) -> bool:
    """Official keys: ``layers.*`` with merging in stage 0 or a bare ``head`` (timm's own test, extended)."""
    has_layers = any(key.startswith("layers.") for key in keys)
    return has_layers and ("layers.0.downsample.reduction.weight" in keys or "head.weight" in keys)


def to_native(state_dict: Mapping[str, torch.Tensor]) -> Converted:
    """Rename an official (or pre-0.9 timm) state dict, Swin V1 or V2, to swinkit's names."""
    return rename_to_native(state_dict, LAYOUT)
