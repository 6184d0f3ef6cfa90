"""timm's layout (0.9 and later): like the official one, with merging at the start of a stage.

Weights: ``layers.{1..3}.downsample`` and ``head.fc``, for ``SwinTransformer`` and
``SwinTransformerV2`` alike (V2 blocks keep the official names). A timm export directory also
holds a ``config.json`` with ``architecture``, ``num_classes``, ``model_args`` and
``pretrained_cfg`` (preprocessing, ``label_names``); :func:`read_metadata` reads it and
:func:`export_config` writes one that ``timm.create_model("local-dir:DIR")`` understands. An
architecture swinkit registers (timm's names are aliases) gives the window and pretrained
windows that a V2 checkpoint's shapes cannot tell, unless ``model_args`` name them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping

import torch

from swinkit.checkpoints import official
from swinkit.checkpoints.architecture import variant_of
from swinkit.checkpoints.layout import Converted, rename_from_native, rename_to_native
from swinkit.preprocessing import Preprocessing
from swinkit.model import ALIASES, VARIANTS, SwinConfig

NAME = "timm"

#: The official layout with merging at the start of a stage (``layers.{1..3}.downsample``) and the head at ``head.fc``.
LAYOUT = dataclasses.replace(
    official.LAYOUT,
    modules=(*(pair for pair in official.LAYOUT.modules if pair[1] != "head"), ("head.fc", "head")),
    merge_stage=(1, 0),
)

#: Config fields written to ``model_args`` by version: timm's ``SwinTransformer`` and
#: ``SwinTransformerV2`` take them under the same names.
_V1_MODEL_ARGS = ("img_size", "patch_size", "in_chans", "embed_dim", "depths", "num_heads", "window_size")
_MODEL_ARGS = {
    1: (*_V1_MODEL_ARGS, "mlp_ratio", "qkv_bias"),
    2: (*_V1_MODEL_ARGS, "mlp_ratio", "qkv_bias", "pretrained_window_sizes"),
}
#: Fields a registered architecture name gives when ``model_args`` do not (V2 weights do not tell their windows).
_ARCHITECTURE_HINTS = ("img_size", "window_size", "pretrained_window_sizes")
#: timm's interpolation names are swinkit's; any other preprocessing key is ignored.
_PREPROCESSING = ("mean", "std", "crop_pct", "interpolation")
#: For an unregistered architecture: names timm's Swin builder, whose arguments ``model_args`` then replace.
_FALLBACK_ARCHITECTURE = {1: "swin_tiny_patch4_window7_224", 2: "swinv2_tiny_window8_256"}


def detect(keys: Collection[str]) -> bool:
    """timm keys: ``layers.*`` without the official layout's stage-0 merging and bare head."""
    return any(key.startswith("layers.") for key in keys) and not official.detect(keys)


def to_native(state_dict: Mapping[str, torch.Tensor]) -> Converted:
    """Rename a timm state dict to swinkit's names."""
    return rename_to_native(state_dict, LAYOUT)


def from_native(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a swinkit state dict to timm's names."""
    return rename_from_native(state_dict, LAYOUT)


def read_metadata(metadata: Mapping[str, dict]) -> tuple[dict[str, object], Preprocessing | None] | None:
    """Config fields and preprocessing from a timm ``config.json``, or None when there is none."""
    config = metadata.get("config.json", {})
    if "architecture" not in config:
        return None
    pretrained = config.get("pretrained_cfg", config)  # older timm exports keep it all at the top level
    args = config.get("model_args", {})
    registered = VARIANTS.get(ALIASES.get(config["architecture"], config["architecture"]))
    fields: dict[str, object] = (
        {key: getattr(registered, key) for key in _ARCHITECTURE_HINTS} if registered is not None else {}
    )
    fields |= {key: args[key] for key in _MODEL_ARGS[2] if key in args}  # timm's pretrained windows: zeros for none
    if "input_size" in pretrained and "img_size" not in args:
        fields["img_size"] = tuple(pretrained["input_size"][1:])
    labels = config.get("label_names", pretrained.get("label_names"))
    if labels:
        fields["labels"] = tuple(labels)
    preprocessing = None
    if "input_size" in pretrained:
        known = {key: pretrained[key] for key in _PREPROCESSING if key in pretrained}
        channels, *size = pretrained["input_size"]
        preprocessing = Preprocessing.default(size, channels).replace(**known)
    return fields, preprocessing


def export_config(config: SwinConfig, preprocessing: Preprocessing) -> dict[str, object]:
    """A timm ``config.json`` for ``config``: architecture name, ``model_args`` and ``pretrained_cfg``."""
    variant = variant_of(config)
    architecture = next(
        (alias for alias, name in ALIASES.items() if name == variant), _FALLBACK_ARCHITECTURE[config.version]
    )
    data = config.to_dict()
    if config.version == 2:  # timm's SwinTransformerV2 reads one pretrained window per stage, 0 for none
        data["pretrained_window_sizes"] = list(config.pretrained_window_sizes or (0,) * config.num_stages)
    exported: dict[str, object] = {
        "architecture": architecture,
        "num_classes": config.num_classes,
        "num_features": config.num_features,
        "global_pool": "avg",
        "model_args": {key: data[key] for key in _MODEL_ARGS[config.version]},
        "pretrained_cfg": {
            "input_size": [config.in_chans, *config.img_size],
            "fixed_input_size": True,
            "interpolation": preprocessing.interpolation,
            "crop_pct": preprocessing.crop_pct,
            "crop_mode": "center",
            "mean": list(preprocessing.mean),
            "std": list(preprocessing.std),
            "num_classes": config.num_classes,
            "first_conv": "patch_embed.proj",
            "classifier": "head.fc",
        },
    }
    if config.labels:
        exported["label_names"] = list(config.labels)
    return exported


def export(
    state_dict: Mapping[str, torch.Tensor], config: SwinConfig, preprocessing: Preprocessing
) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, object]]]:
    """The tensors and JSON file of a timm export: timm's names and timm's ``config.json``."""
    return from_native(state_dict), {"config.json": export_config(config, preprocessing)}
