"""Which Swin a state dict holds: its config read off the tensor shapes, and its registered name."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch

from swinkit.checkpoints.errors import CheckpointError
from swinkit.model import VARIANTS, SwinConfig

#: Fields that define the weights' shapes; two configs that agree on these load the same checkpoint.
ARCHITECTURE_FIELDS = (
    "patch_size",
    "in_chans",
    "embed_dim",
    "depths",
    "num_heads",
    "window_size",
    "mlp_ratio",
    "qkv_bias",
)
_BLOCK = re.compile(r"^stages\.(\d+)\.blocks\.(\d+)\.norm1\.weight$")


def variant_of(config: SwinConfig) -> str | None:
    """The registered variant with ``config``'s architecture and ``img_size``, or None."""
    for name, reference in VARIANTS.items():
        if reference.img_size == config.img_size and same_architecture(reference, config):
            return name
    return None


def same_architecture(first: SwinConfig, second: SwinConfig) -> bool:
    """Whether two configs give weights of the same names and shapes (apart from the head)."""
    return all(getattr(first, field) == getattr(second, field) for field in ARCHITECTURE_FIELDS)


def infer_config(state_dict: Mapping[str, torch.Tensor], hints: Mapping[str, object], source: str) -> SwinConfig:
    """The config of a state dict in swinkit's names, read off its shapes, completed by ``hints``.

    Shapes give the architecture (embedding width, patch, stages, depths, heads from the
    bias tables, window from the tables' side, MLP ratio, qkv bias, classes from the head).
    ``hints`` (fields read from a ``config.json``) supply what shapes cannot tell: input size,
    dropout rates, LayerNorm eps, labels. Without a hint the input size is one window in
    the last stage (224 for window 7, 384 for window 12) and the drop-path rate that of the
    matching registered variant. Raises CheckpointError when a key the inference needs is missing.
    """
    blocks: dict[int, int] = {}
    for key in state_dict:
        match = _BLOCK.match(key)
        if match:
            stage, block = int(match[1]), int(match[2])
            blocks[stage] = max(blocks.get(stage, 0), block + 1)
    try:
        proj = state_dict["patch_embed.proj.weight"]
        embed_dim, in_chans, patch_size = proj.shape[0], proj.shape[1], proj.shape[-1]
        depths = tuple(blocks[stage] for stage in range(len(blocks)))
        tables = [
            state_dict[f"stages.{stage}.blocks.0.attn.relative_position_bias_table"] for stage in range(len(depths))
        ]
        hidden = state_dict["stages.0.blocks.0.mlp.fc1.weight"].shape[0]
    except KeyError as error:
        raise CheckpointError(
            f"cannot infer the architecture of {source}: key {error.args[0]!r} is missing; give a model name "
            f"(e.g. create_model('swin_t', pretrained=...))"
        ) from error
    if not depths:
        raise CheckpointError(f"cannot infer the architecture of {source}: it has no Swin blocks")
    side = math.isqrt(tables[0].shape[0])
    window = (side + 1) // 2
    head = state_dict.get("head.weight")
    inferred = {
        "patch_size": patch_size,
        "in_chans": in_chans,
        "embed_dim": embed_dim,
        "depths": depths,
        "num_heads": tuple(table.shape[1] for table in tables),
        "window_size": window,
        "mlp_ratio": hidden / embed_dim,
        "qkv_bias": "stages.0.blocks.0.attn.qkv.bias" in state_dict,
        "num_classes": head.shape[0] if head is not None else 0,
    }
    base = SwinConfig().replace(**inferred, img_size=window * patch_size * 2 ** (len(depths) - 1))
    registered = next((VARIANTS[name] for name in VARIANTS if same_architecture(VARIANTS[name], base)), None)
    if registered is not None:
        base = base.replace(drop_path_rate=registered.drop_path_rate)
    extra = {key: value for key, value in hints.items() if key not in ARCHITECTURE_FIELDS and key != "num_classes"}
    if len(extra.get("labels", ())) != base.num_classes:  # type: ignore[arg-type]
        extra.pop("labels", None)
    try:
        return base.replace(**extra)
    except ValueError as error:
        raise CheckpointError(f"the config stored with {source} is not usable: {error}") from error
