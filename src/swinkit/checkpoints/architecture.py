"""Which Swin a state dict holds: its config read off the tensor shapes, and its registered name.

Swin V1 weights tell their window by the bias tables' side. Swin V2 weights do not (the
position bias is an MLP of the coordinates): the window comes from a ``config.json``, else
from the ``relative_coords_table`` buffers official and torchvision files store (their side
is the window each stage ran with, their values the window they were normalised by, i.e. the
pretrained window), else the V2 default of window 8.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch

from swinkit.checkpoints.errors import CheckpointError
from swinkit.checkpoints.layout import swin_version
from swinkit.model import VARIANTS, SwinConfig
from swinkit.model.stems import SPT_COPIES

#: Fields that define the architecture: the weights' names and shapes (two configs that agree
#: on these load the same checkpoint) and, for Swin V2, the windows the position bias is computed for.
ARCHITECTURE_FIELDS = (
    "version",
    "patch_size",
    "in_chans",
    "embed_dim",
    "depths",
    "num_heads",
    "window_size",
    "mlp_ratio",
    "qkv_bias",
    "pretrained_window_sizes",
    "stem",
)
#: The first convolution of the conv stem (:class:`swinkit.model.stems.ConvStem`).
_CONV_STEM = "patch_embed.convs.0.0.weight"
_BLOCK = re.compile(r"^stages\.(\d+)\.blocks\.(\d+)\.norm1\.weight$")
#: The window of Swin V2 weights that carry no hint of theirs (timm's and torchvision's V2 models use 8).
DEFAULT_V2_WINDOW = 8
_COORDS = "stages.{stage}.blocks.0.attn.relative_coords_table"


def variant_of(config: SwinConfig) -> str | None:
    """The registered variant with ``config``'s architecture and ``img_size``, or None."""
    for name, reference in VARIANTS.items():
        if reference.img_size == config.img_size and same_architecture(reference, config):
            return name
    return None


def same_architecture(first: SwinConfig, second: SwinConfig) -> bool:
    """Whether two configs give weights of the same names and shapes (apart from the head)."""
    return all(getattr(first, field) == getattr(second, field) for field in ARCHITECTURE_FIELDS)


def infer_config(
    state_dict: Mapping[str, torch.Tensor],
    hints: Mapping[str, object],
    source: str,
    buffers: Mapping[str, torch.Tensor] | None = None,
) -> SwinConfig:
    """The config of a state dict in swinkit's names, read off its shapes, completed by ``hints``.

    Shapes give the architecture (Swin V1 or V2, embedding width, patch, stages, depths, heads
    from the V1 bias tables or the V2 logit scales, the V1 window from the tables' side, MLP
    ratio, qkv bias, classes from the head). ``hints`` (fields read from a ``config.json``)
    supply what shapes cannot tell: input size, dropout rates, LayerNorm eps, labels, and the
    window and pretrained windows of V2 weights; ``buffers`` (the stored
    ``relative_coords_table`` of V2 weights, see :func:`v2_windows`) tell them otherwise.
    Without a hint the input size is one window in the last stage (224 for window 7, 384 for
    window 12, 256 for the V2 default of window 8) and the drop-path rate that of the matching
    registered variant. Raises CheckpointError when a key the inference needs is missing.
    """
    version = swin_version(state_dict)
    blocks: dict[int, int] = {}
    for key in state_dict:
        match = _BLOCK.match(key)
        if match:
            stage, block = int(match[1]), int(match[2])
            blocks[stage] = max(blocks.get(stage, 0), block + 1)
    stem = str(hints.get("stem", "conv" if _CONV_STEM in state_dict else "patch"))
    try:
        proj = state_dict["patch_embed.proj.weight"]
        embed_dim, in_chans, patch_size = proj.shape[0], proj.shape[1], proj.shape[-1]
        if stem == "spt":
            in_chans //= SPT_COPIES
        elif stem == "conv":
            # The conv stem's strides leave no trace in the shapes: the patch comes from the stored config.
            in_chans = state_dict[_CONV_STEM].shape[1]
            patch_size = int(hints["patch_size"])  # type: ignore[call-overload]
        depths = tuple(blocks[stage] for stage in range(len(blocks)))
        if version == 1:
            tables = [
                state_dict[f"stages.{stage}.blocks.0.attn.relative_position_bias_table"] for stage in range(len(depths))
            ]
            num_heads = tuple(table.shape[1] for table in tables)
        else:
            scales = [state_dict[f"stages.{stage}.blocks.0.attn.logit_scale"] for stage in range(len(depths))]
            num_heads = tuple(scale.shape[0] for scale in scales)
        hidden = state_dict["stages.0.blocks.0.mlp.fc1.weight"].shape[0]
    except KeyError as error:
        raise CheckpointError(
            f"cannot infer the architecture of {source}: key {error.args[0]!r} is missing; give a model name "
            f"(e.g. create_model('swin_t', pretrained=...))"
        ) from error
    if not depths:
        raise CheckpointError(f"cannot infer the architecture of {source}: it has no Swin blocks")
    last_stage = patch_size * 2 ** (len(depths) - 1)
    if version == 1:
        window = (math.isqrt(tables[0].shape[0]) + 1) // 2
        windows: dict[str, object] = {"window_size": window}
        img_size = window * last_stage
    else:
        window, pretrained, last_window = v2_windows(buffers or {}, len(depths))
        window = int(hints.get("window_size", window))  # type: ignore[call-overload]
        pretrained = tuple(hints.get("pretrained_window_sizes", pretrained))  # type: ignore[arg-type]
        windows = {"window_size": window, "pretrained_window_sizes": pretrained}
        img_size = min(window, last_window or window) * last_stage
    head = state_dict.get("head.weight")
    bias = "stages.0.blocks.0.attn.qkv.bias" if version == 1 else "stages.0.blocks.0.attn.q_bias"
    inferred = {
        "version": version,
        "patch_size": patch_size,
        "in_chans": in_chans,
        "embed_dim": embed_dim,
        "depths": depths,
        "num_heads": num_heads,
        **windows,
        "mlp_ratio": hidden / embed_dim,
        "qkv_bias": bias in state_dict,
        "num_classes": head.shape[0] if head is not None else 0,
        "stem": stem,
    }
    base = SwinConfig().replace(**inferred, img_size=img_size)
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


def v2_windows(buffers: Mapping[str, torch.Tensor], num_stages: int) -> tuple[int, tuple[int, ...], int | None]:
    """The window, pretrained windows and last-stage window told by stored ``relative_coords_table`` buffers.

    Each stage's table is ``(1, 2M-1, 2M-1, 2)`` for the window ``M`` the stage ran with (the
    window, or the map when the map was smaller), and holds the log-spaced coordinates
    ``log2(8 (M-1) / (P-1) + 1) / log2(8)`` at the largest offset, ``P`` being the window they
    were normalised by: the pretrained window when it was set, else ``M``. Returns
    ``(largest M, pretrained windows or () when every P is M, last stage's M)``; without a
    table for every stage, ``(DEFAULT_V2_WINDOW, (), None)``.
    """
    tables = [buffers.get(_COORDS.format(stage=stage)) for stage in range(num_stages)]
    if any(table is None or table.dim() != 4 or table.shape[1] % 2 == 0 for table in tables):
        return DEFAULT_V2_WINDOW, (), None
    ran = [(table.shape[1] + 1) // 2 for table in tables]  # type: ignore[union-attr]
    normalised = [_normalising_window(table, window) for table, window in zip(tables, ran)]  # type: ignore[arg-type]
    return max(ran), (tuple(normalised) if normalised != ran else ()), ran[-1]


def _normalising_window(table: torch.Tensor, window: int) -> int:
    largest = float(table[0, -1, 0, 0])  # offset +(M-1) along the height
    scaled = 2.0 ** (3.0 * largest) - 1.0  # 8 (M-1) / (P-1)
    if window < 2 or scaled <= 0:
        return window
    return round(8 * (window - 1) / scaled + 1)


def stage_windows(config: SwinConfig) -> tuple[int, ...]:
    """The window each stage of ``config`` runs with at its ``img_size``: the window, or the map when smaller."""
    height, width = config.img_size
    return tuple(
        min(config.window_size, height // (config.patch_size * 2**stage), width // (config.patch_size * 2**stage))
        for stage in range(config.num_stages)
    )
