"""torchvision's layout (``torchvision.models.swin_t``, ``swin_v2_t`` and friends).

The stem is ``features.0`` (convolution at ``.0``, LayerNorm at ``.2``), stage ``s`` is
``features.{2s+1}`` and the merging before it ``features.{2s}``; the MLP is a Sequential
(``mlp.0``, ``mlp.3``). The saved ``relative_position_index`` and ``relative_coords_table``
buffers are not loaded (the coordinate tables are read to tell a V2 window). A Swin V2 block
keeps one 3C ``attn.qkv.bias``; torchvision zeroes its k third in every forward, so the q and
v thirds become ``attn.q_bias`` and ``attn.v_bias`` and the k third is not used.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import torch

from swinkit.checkpoints.layout import (
    BLOCK_MODULES,
    V2_BLOCK_MODULES,
    V2_MARKER,
    WINDOW_BUFFERS,
    Converted,
    Layout,
    rename_to_native,
    same_names,
)

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
        *same_names(V2_BLOCK_MODULES + WINDOW_BUFFERS),
    ),
    merge="features.{stage}",
    merge_stage=(2, 0),
)
_QKV_BIAS = ".attn.qkv.bias"
#: Config fields torchvision's model implies, which its weights files do not store: its patch
#: embedding leaves out the pixels beyond whole patches (a strided convolution without padding),
#: and a stage map no larger than the window keeps the window, padded, shifted along the other side.
IMPLIED_FIELDS = {"patch_remainder": "crop"}


def detect(keys: Collection[str]) -> bool:
    """torchvision keys: the stem convolution at ``features.0.0``."""
    return "features.0.0.weight" in keys


def to_native(state_dict: Mapping[str, torch.Tensor]) -> Converted:
    """Rename a torchvision state dict to swinkit's names; a V2 block's 3C qkv bias becomes its q and v biases."""
    converted = rename_to_native(state_dict, LAYOUT)
    tensors = converted.state_dict
    for key in [key for key in tensors if key.endswith(_QKV_BIAS)]:
        block = key.removesuffix(_QKV_BIAS)
        if f"{block}.attn.{V2_MARKER}" in tensors:
            query, _, value = tensors.pop(key).chunk(3)
            tensors[f"{block}.attn.q_bias"], tensors[f"{block}.attn.v_bias"] = query, value
    return converted
