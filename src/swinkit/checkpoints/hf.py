"""Hugging Face transformers' layouts (``SwinForImageClassification``, ``Swinv2ForImageClassification``
and their bare models) and their ``config.json``.

Hugging Face splits the fused qkv projection into ``query``/``key``/``value``; they are
concatenated in that order into swinkit's ``attn.qkv`` and split again on export. Both the
legacy names of the checkpoints on the Hub and the names transformers 5 uses inside blocks
(``q_proj``, ``o_proj``, ``relative_position_bias.*``, ``mlp.fc1``) are read; the legacy
ones are written, since every transformers version reads them. Merging sits at the end of a
stage (``layers.{0..2}.downsample``). A bare ``SwinModel`` (no ``swin.`` prefix) is read too.

Swin V2 (``model_type`` ``swinv2``) lives under ``swinv2.``: its ``key`` has no bias, so
``query.bias`` and ``value.bias`` are swinkit's ``attn.q_bias`` and ``attn.v_bias``; the
position bias MLP is ``continuous_position_bias_mlp``; ``layernorm_before`` is applied after
the attention (res-post-norm) and is swinkit's ``norm1``. ``pretrained_window_sizes`` travels
in ``config.json`` (``[0, 0, 0, 0]`` for none).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

import torch

from swinkit.checkpoints.errors import CheckpointError
from swinkit.checkpoints.layout import Converted, Layout, rename_from_native, rename_to_native, swin_version
from swinkit.preprocessing import Preprocessing
from swinkit.model import SwinConfig

NAME = "hf"

#: A block's layers under their Hugging Face names, shared by Swin and Swin V2 (V2's
#: ``layernorm_before`` is applied after the attention, but it is still ``norm1``), with the
#: transformers 5 names (for V2: its ``swin`` renames applied to Swin V2).
_BLOCK_MODULES = (
    ("layernorm_before", "norm1"),
    ("attention.self.query", "attn.q"),
    ("attention.self.key", "attn.k"),
    ("attention.self.value", "attn.v"),
    ("attention.output.dense", "attn.proj"),
    ("layernorm_after", "norm2"),
    ("intermediate.dense", "mlp.fc1"),
    ("output.dense", "mlp.fc2"),
    ("attention.q_proj", "attn.q"),
    ("attention.k_proj", "attn.k"),
    ("attention.v_proj", "attn.v"),
    ("attention.o_proj", "attn.proj"),
    ("mlp.fc1", "mlp.fc1"),
    ("mlp.fc2", "mlp.fc2"),
)
LAYOUT = Layout(
    modules=(
        ("swin.embeddings.patch_embeddings.projection", "patch_embed.proj"),
        ("swin.embeddings.norm", "patch_embed.norm"),
        ("swin.layernorm", "norm"),
        ("classifier", "head"),
    ),
    block="swin.encoder.layers.{stage}.blocks.{block}",
    block_modules=_BLOCK_MODULES
    + (
        ("attention.self.relative_position_bias_table", "attn.relative_position_bias_table"),
        ("attention.relative_position_bias.relative_position_bias_table", "attn.relative_position_bias_table"),
    ),
    merge="swin.encoder.layers.{stage}.downsample",
    merge_stage=(1, -1),
)
#: Swin V2: the same places under ``swinv2.``, with V2's attention and the post-norms (``layernorm_before`` = norm1).
LAYOUT_V2 = Layout(
    modules=tuple((theirs.replace("swin.", "swinv2.", 1), ours) for theirs, ours in LAYOUT.modules),
    block="swinv2.encoder.layers.{stage}.blocks.{block}",
    block_modules=_BLOCK_MODULES
    + (
        ("attention.self.logit_scale", "attn.logit_scale"),
        ("attention.self.continuous_position_bias_mlp", "attn.cpb_mlp"),
    ),
    merge="swinv2.encoder.layers.{stage}.downsample",
    merge_stage=(1, -1),
)
_BASE_PREFIX = {1: "swin.", 2: "swinv2."}
_BASE_MODULES = ("embeddings.", "encoder.", "layernorm.")
_MODEL_TYPES = {"swin": 1, "swinv2": 2}
_ARCHITECTURES = {1: "SwinForImageClassification", 2: "Swinv2ForImageClassification"}
_SPLIT = ("q", "k", "v")
_QUERY = re.compile(r"^(?P<block>.+)\.attn\.q\.(?P<param>weight|bias)$")
#: Swin V2: ``query.bias`` / ``value.bias`` <-> swinkit's ``q_bias`` / ``v_bias`` (the key has no bias).
_V2_BIASES = (("attn.q.bias", "attn.q_bias"), ("attn.v.bias", "attn.v_bias"))

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
    """Rename a Hugging Face state dict (Swin V1 or V2) to swinkit's names, fusing query, key and value into qkv."""
    version = swin_version(state_dict)
    prefix = _BASE_PREFIX[version]
    prefixed = {(prefix + key if key.startswith(_BASE_MODULES) else key): value for key, value in state_dict.items()}
    converted = rename_to_native(prefixed, LAYOUT_V2 if version == 2 else LAYOUT)
    tensors = converted.state_dict
    if version == 2:
        for key in list(tensors):
            for theirs, ours in _V2_BIASES:
                if key.endswith("." + theirs):
                    tensors[key.removesuffix(theirs) + ours] = tensors.pop(key)
    for match in filter(None, map(_QUERY.match, list(tensors))):
        block, param = match["block"], match["param"]
        parts = [f"{block}.attn.{name}.{param}" for name in _SPLIT]
        if all(part in tensors for part in parts):
            tensors[f"{block}.attn.qkv.{param}"] = torch.cat([tensors.pop(part) for part in parts])
    return converted


def from_native(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a swinkit state dict to Hugging Face's legacy names, splitting qkv into query, key, value.

    Swin V2 weights (detected by their logit scales) get the ``swinv2.`` names, with the q and
    v biases as ``query.bias`` and ``value.bias``.
    """
    version = swin_version(state_dict)
    split: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        block, qkv, param = key.rpartition(".attn.qkv.")
        if not qkv:
            renamed = next((key.removesuffix(ours) + theirs for theirs, ours in _V2_BIASES if key.endswith(ours)), key)
            split[renamed] = tensor
            continue
        for name, part in zip(_SPLIT, tensor.chunk(3)):
            split[f"{block}.attn.{name}.{param}"] = part.clone()
    return rename_from_native(split, LAYOUT_V2 if version == 2 else LAYOUT)


def read_metadata(metadata: Mapping[str, dict]) -> tuple[dict[str, object], Preprocessing | None] | None:
    """Config fields and preprocessing from a Hugging Face ``config.json`` (and ``preprocessor_config.json``).

    For Swin V2 the fields include ``window_size`` and ``pretrained_window_sizes`` (all zero: none),
    which its weights' shapes cannot tell.
    """
    config = metadata.get("config.json", {})
    version = _MODEL_TYPES.get(config.get("model_type"))
    if version is None:
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
    if version == 2:
        fields["pretrained_window_sizes"] = tuple(config.get("pretrained_window_sizes") or ())  # zeros: none
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
    """A ``config.json`` that ``transformers.SwinForImageClassification.from_pretrained`` reads
    (``Swinv2ForImageClassification`` for a Swin V2 config, with its ``pretrained_window_sizes``)."""
    data = config.to_dict()
    height, width = config.img_size
    model_type = next(name for name, version in _MODEL_TYPES.items() if version == config.version)
    exported: dict[str, object] = {
        "architectures": [_ARCHITECTURES[config.version]],
        "model_type": model_type,
        **{theirs: data[ours] for ours, theirs in CONFIG_FIELDS},
        "image_size": height if height == width else [height, width],
        "hidden_act": "gelu",
        "use_absolute_embeddings": False,
        "encoder_stride": config.patch_size * 2 ** (config.num_stages - 1),
        "initializer_range": 0.02,
        "num_layers": config.num_stages,
        "hidden_size": config.num_features,
    }
    if config.version == 2:
        exported["pretrained_window_sizes"] = list(config.pretrained_window_sizes or (0,) * config.num_stages)
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
