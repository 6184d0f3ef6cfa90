"""mmsegmentation's Swin UperNet checkpoints, and those of the official Swin segmentation repository.

Both keep the heads in mmsegmentation's names (``decode_head.*``, ``auxiliary_head.*``, ``bn``
for BatchNorm, ``conv_seg`` for the classifiers) and a LayerNorm per stage output at
``backbone.norm{i}``, inside a ``state_dict`` (with ``meta``) wrapper. The backbone is either

- mmsegmentation's own Swin port: ``backbone.patch_embed.projection``,
  ``backbone.stages.{i}.blocks.{j}.attn.w_msa.{qkv, proj, relative_position_bias_table}``,
  ``ffn.layers.0.0`` and ``ffn.layers.1`` (the MLP), merging at the end of a stage
  (``stages.{i}.downsample``) with its ``4C`` channels in ``nn.Unfold``'s order (channel-major,
  then the 2x2 offsets (0,0), (0,1), (1,0), (1,1)), which is reordered to swinkit's
  (offset-major, (0,0), (1,0), (0,1), (1,1)), as transformers' converter does; or
- the official repository's names (``backbone.layers.{i}.blocks.{j}...``, see
  :mod:`swinkit.checkpoints.official`), whose merging order is swinkit's.

Only Swin V1 exists in these layouts. Loading only: swinkit writes swinkit and transformers exports.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import torch

from swinkit.checkpoints import official
from swinkit.checkpoints.layout import Converted, HeadLayout, Layout, rename_to_native

NAME = "mmseg"
HEADS = HeadLayout(norm="bn", classifier="conv_seg")
#: mmsegmentation's Swin port (``mmseg.models.backbones.SwinTransformer``), without the ``backbone.`` prefix.
LAYOUT = Layout(
    modules=(("patch_embed.projection", "patch_embed.proj"), ("patch_embed.norm", "patch_embed.norm")),
    block="stages.{stage}.blocks.{block}",
    block_modules=(
        ("norm1", "norm1"),
        ("attn.w_msa.qkv", "attn.qkv"),
        ("attn.w_msa.proj", "attn.proj"),
        ("attn.w_msa.relative_position_bias_table", "attn.relative_position_bias_table"),
        ("norm2", "norm2"),
        ("ffn.layers.0.0", "mlp.fc1"),
        ("ffn.layers.1", "mlp.fc2"),
    ),
    merge="stages.{stage}.downsample",
    merge_stage=(1, -1),
)
#: ``nn.Unfold``'s 2x2 offsets (0,0), (0,1), (1,0), (1,1) taken in swinkit's order (0,0), (1,0), (0,1), (1,1).
UNFOLD_ORDER = [0, 2, 1, 3]
_MERGE_TENSORS = ("downsample.reduction.weight", "downsample.norm.weight", "downsample.norm.bias")


def detect(keys: Collection[str]) -> bool:
    """mmsegmentation keys: ``decode_head.conv_seg`` and a Swin under ``backbone.`` (mmseg's or the official names)."""
    return "decode_head.conv_seg.weight" in keys and any(
        key.startswith(("backbone.stages.", "backbone.layers.")) for key in keys
    )


def unfold_to_native(tensor: torch.Tensor) -> torch.Tensor:
    """Reorder a merging's ``4C`` input channels from ``nn.Unfold``'s order to swinkit's.

    ``(out, 4C)`` reduction weights or ``(4C,)`` norm parameters: channel ``c * 4 + u`` (offset
    ``u`` in unfold's order) moves to ``p * C + c`` (offset ``p`` in swinkit's order).
    """
    grouped = tensor.reshape(*tensor.shape[:-1], tensor.shape[-1] // 4, 4)[..., UNFOLD_ORDER]
    return grouped.transpose(-1, -2).reshape(tensor.shape)


def to_native(state_dict: Mapping[str, torch.Tensor]) -> Converted:
    """Rename an mmsegmentation (or official Swin segmentation) UperNet state dict to swinkit's segmenter names."""
    inner = {key.removeprefix("backbone."): value for key, value in state_dict.items() if key.startswith("backbone.")}
    mmseg_port = any(key.startswith("stages.") for key in inner)
    stage_norms = {key: value for key, value in inner.items() if key.startswith("norm") and key[4:5].isdigit()}
    backbone = rename_to_native(
        {key: value for key, value in inner.items() if key not in stage_norms}, LAYOUT if mmseg_port else official.LAYOUT
    )
    converted = Converted({}, [], ["backbone." + key for key in backbone.ignored])
    for key, tensor in backbone.state_dict.items():
        if mmseg_port and key.endswith(_MERGE_TENSORS):
            tensor = unfold_to_native(tensor)
        converted.state_dict["backbone." + key] = tensor
    converted.unmapped += ["backbone." + key for key in backbone.unmapped]
    for key, tensor in stage_norms.items():
        converted.state_dict["stage_norms." + key.removeprefix("norm")] = tensor
    for key, tensor in state_dict.items():
        if key.startswith("backbone."):
            continue
        native = HEADS.to_native(key)
        if native is None:
            converted.unmapped.append(key)
        else:
            converted.state_dict[native] = tensor
    return converted
