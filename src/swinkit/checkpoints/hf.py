"""Hugging Face transformers' layout (``SwinForImageClassification``, ``SwinModel``) and its ``config.json``.

Hugging Face splits the fused qkv projection into ``query``/``key``/``value``; they are
concatenated in that order into swinkit's ``attn.qkv`` and split again on export. Both the
legacy names of the checkpoints on the Hub and the names transformers 5 uses inside blocks
(``q_proj``, ``o_proj``, ``relative_position_bias.*``, ``mlp.fc1``) are read; the legacy
ones are written, since every transformers version reads them. Merging sits at the end of a
stage (``layers.{0..2}.downsample``). A bare ``SwinModel`` (no ``swin.`` prefix) is read too.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

import torch

from swinkit.checkpoints.errors import CheckpointError
from swinkit.checkpoints.layout import Converted, Layout, rename_from_native, rename_to_native
from swinkit.preprocessing import Preprocessing
from swinkit.model import SwinConfig

NAME = "hf"

LAYOUT = Layout(
    modules=(
        ("swin.embeddings.patch_embeddings.projection", "patch_embed.proj"),
        ("swin.embeddings.norm", "patch_embed.norm"),
        ("swin.layernorm", "norm"),
        ("classifier", "head"),
    ),
    block="swin.encoder.layers.{stage}.blocks.{block}",
    block_modules=(
        ("layernorm_before", "norm1"),
        ("attention.self.query", "attn.q"),
        ("attention.self.key", "attn.k"),
        ("attention.self.value", "attn.v"),
        ("attention.self.relative_position_bias_table", "attn.relative_position_bias_table"),
        ("attention.output.dense", "attn.proj"),
        ("layernorm_after", "norm2"),
        ("intermediate.dense", "mlp.fc1"),
        ("output.dense", "mlp.fc2"),
        # transformers 5 names
        ("attention.q_proj", "attn.q"),
        ("attention.k_proj", "attn.k"),
        ("attention.v_proj", "attn.v"),
        ("attention.relative_position_bias.relative_position_bias_table", "attn.relative_position_bias_table"),
        ("attention.o_proj", "attn.proj"),
        ("mlp.fc1", "mlp.fc1"),
        ("mlp.fc2", "mlp.fc2"),
    ),
    merge="swin.encoder.layers.{stage}.downsample",
    merge_stage=(1, -1),
)
_BASE_PREFIX = "swin."
_BASE_MODULES = ("embeddings.", "encoder.", "layernorm.")
_SPLIT = ("q", "k", "v")
_QUERY = re.compile(r"^(?P<block>.+)\.attn\.q\.(?P<param>weight|bias)$")

#: swinkit config field -> Hugging Face ``SwinConfig`` field.
CONFIG_FIELDS = (
    ("img_size", "image_size"),
    ("patch_size", "patch_size"),
    ("in_chans", "num_channels"),
    ("embed_dim", "embed_dim"),
    ("depths", "depths"),
    ("num_heads", "num_heads"),
    ("window_size", "window_size"),
    ("mlp_ratio", "mlp_ratio"),
    ("qkv_bias", "qkv_bias"),
    ("drop_rate", "hidden_dropout_prob"),
    ("attn_drop_rate", "attention_probs_dropout_prob"),
    ("drop_path_rate", "drop_path_rate"),
    ("layer_norm_eps", "layer_norm_eps"),
)
#: PIL resampling codes used by Hugging Face image processors.
_RESAMPLE = {"nearest": 0, "bilinear": 2, "bicubic": 3}


def detect(keys: Collection[str]) -> bool:
    """Hugging Face keys: ``embeddings.patch_embeddings.projection`` (with or without ``swin.``)."""
    return any(key.endswith("embeddings.patch_embeddings.projection.weight") for key in keys)


def to_native(state_dict: Mapping[str, torch.Tensor]) -> Converted:
    """Rename a Hugging Face state dict to swinkit's names, fusing query, key and value into qkv."""
    prefixed = {
        (_BASE_PREFIX + key if key.startswith(_BASE_MODULES) else key): value for key, value in state_dict.items()
    }
    converted = rename_to_native(prefixed, LAYOUT)
    tensors = converted.state_dict
    for match in filter(None, map(_QUERY.match, list(tensors))):
        block, param = match["block"], match["param"]
        parts = [f"{block}.attn.{name}.{param}" for name in _SPLIT]
        if all(part in tensors for part in parts):
            tensors[f"{block}.attn.qkv.{param}"] = torch.cat([tensors.pop(part) for part in parts])
    return converted


def from_native(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a swinkit state dict to Hugging Face's legacy names, splitting qkv into query, key, value."""
    split: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        block, qkv, param = key.rpartition(".attn.qkv.")
        if not qkv:
            split[key] = tensor
            continue
        for name, part in zip(_SPLIT, tensor.chunk(3)):
            split[f"{block}.attn.{name}.{param}"] = part.clone()
    return rename_from_native(split, LAYOUT)


def read_metadata(metadata: Mapping[str, dict]) -> tuple[dict[str, object], Preprocessing | None] | None:
    """Config fields and preprocessing from a Hugging Face ``config.json`` (and ``preprocessor_config.json``)."""
    config = metadata.get("config.json", {})
    if config.get("model_type") != "swin":
        return None
    if config.get("use_absolute_embeddings"):
        raise CheckpointError(
            "this Hugging Face Swin uses absolute position embeddings, which swinkit does not implement"
        )
    if config.get("hidden_act", "gelu") != "gelu":
        raise CheckpointError(
            f"this Hugging Face Swin uses activation {config['hidden_act']!r}; swinkit implements 'gelu'"
        )
    fields: dict[str, object] = {ours: config[theirs] for ours, theirs in CONFIG_FIELDS if theirs in config}
    id2label = config.get("id2label") or {}
    labels = tuple(str(id2label[index]) for index in sorted(id2label, key=int))
    if labels and labels != tuple(f"LABEL_{index}" for index in range(len(labels))):
        fields["labels"] = labels
    processor = metadata.get("preprocessor_config.json")
    if processor is None or "image_mean" not in processor:
        return fields, None
    size = fields.get("img_size", 224)
    preprocessing = Preprocessing.default(
        (size, size) if isinstance(size, int) else size, int(config.get("num_channels", 3))
    )  # type: ignore[arg-type]
    resample = {code: name for name, code in _RESAMPLE.items()}.get(
        processor.get("resample"), preprocessing.interpolation
    )
    crop_pct = processor.get("crop_pct", 1.0 if not processor.get("do_center_crop") else preprocessing.crop_pct)
    return fields, preprocessing.replace(
        mean=processor["image_mean"], std=processor["image_std"], interpolation=resample, crop_pct=crop_pct
    )


def export_config(config: SwinConfig) -> dict[str, object]:
    """A ``config.json`` that ``transformers.SwinForImageClassification.from_pretrained`` reads."""
    data = config.to_dict()
    height, width = config.img_size
    exported: dict[str, object] = {
        "architectures": ["SwinForImageClassification"],
        "model_type": "swin",
        **{theirs: data[ours] for ours, theirs in CONFIG_FIELDS},
        "image_size": height if height == width else [height, width],
        "hidden_act": "gelu",
        "use_absolute_embeddings": False,
        "encoder_stride": config.patch_size * 2 ** (config.num_stages - 1),
        "initializer_range": 0.02,
        "num_layers": config.num_stages,
        "hidden_size": config.num_features,
    }
    labels = config.labels or tuple(f"LABEL_{index}" for index in range(config.num_classes))
    exported["id2label"] = {str(index): label for index, label in enumerate(labels)}
    exported["label2id"] = {label: index for index, label in enumerate(labels)}
    return exported


def export_preprocessor(preprocessing: Preprocessing) -> dict[str, object]:
    """A ``preprocessor_config.json`` (``ViTImageProcessor``: resize to the input size, normalise).

    Hugging Face's processor resizes straight to the input size; ``crop_pct`` is kept for swinkit.
    """
    _, height, width = preprocessing.input_size
    return {
        "image_processor_type": "ViTImageProcessor",
        "do_resize": True,
        "size": {"height": height, "width": width},
        "resample": _RESAMPLE[preprocessing.interpolation],
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(preprocessing.mean),
        "image_std": list(preprocessing.std),
        "crop_pct": preprocessing.crop_pct,
    }


def export(
    state_dict: Mapping[str, torch.Tensor], config: SwinConfig, preprocessing: Preprocessing
) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, object]]]:
    """The tensors and JSON files of a Hugging Face export: legacy names, ``config.json``, ``preprocessor_config.json``."""
    return from_native(state_dict), {
        "config.json": export_config(config),
        "preprocessor_config.json": export_preprocessor(preprocessing),
    }
