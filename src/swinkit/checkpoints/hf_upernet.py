"""transformers' ``UperNetForSemanticSegmentation`` with a Swin or Swin V2 backbone (``openmmlab/upernet-swin-*``).

Keys: the backbone under ``backbone.``: for Swin V1 a ``SwinBackbone`` (``backbone.swin.*`` in
Hugging Face's Swin names, see :mod:`swinkit.checkpoints.hf`, plus a LayerNorm per stage
output, ``backbone.hidden_states_norms.stage{1..4}``; its final ``swin.layernorm`` is unused
and skipped), for Swin V2 a ``Swinv2Backbone`` (``backbone.embeddings``, ``backbone.encoder``,
no per-stage norms). The heads under ``decode_head.`` and ``auxiliary_head.`` in
mmsegmentation's names with ``batch_norm`` and ``classifier``. ``config.json`` (``model_type``
``upernet``) carries the head's settings and the backbone's config (``backbone_config``);
transformers' auxiliary head always reads the third stage and has no dropout.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Mapping

import torch

from swinkit.checkpoints import hf
from swinkit.checkpoints.errors import CheckpointError
from swinkit.checkpoints.layout import Converted, HeadLayout, swin_version
from swinkit.model import SegmenterConfig

NAME = "hf"
HEADS = HeadLayout(norm="batch_norm", classifier="classifier")
_STAGE_NORM = "hidden_states_norms.stage"
#: The stage transformers' ``UperNetFCNHead`` reads (``in_index``).
AUX_STAGE = 2
#: swinkit segmenter field -> transformers ``UperNetConfig`` field.
CONFIG_FIELDS = (
    ("channels", "hidden_size"),
    ("pool_scales", "pool_scales"),
    ("aux_channels", "auxiliary_channels"),
    ("aux_convs", "auxiliary_num_convs"),
    ("aux_weight", "auxiliary_loss_weight"),
    ("ignore_index", "loss_ignore_index"),
)


def detect(keys: Collection[str]) -> bool:
    """transformers' UperNet: its classifier at ``decode_head.classifier`` and a Hugging Face Swin under ``backbone.``."""
    return "decode_head.classifier.weight" in keys and hf.detect(
        [key.removeprefix("backbone.") for key in keys if key.startswith("backbone.")]
    )


def to_native(state_dict: Mapping[str, torch.Tensor]) -> Converted:
    """Rename a transformers UperNet state dict (Swin V1 or V2 backbone) to swinkit's segmenter names."""
    backbone, converted = {}, Converted({}, [], [])
    for key, tensor in state_dict.items():
        inner = key.removeprefix("backbone.")
        if inner.startswith(_STAGE_NORM):
            stage, _, param = inner.removeprefix(_STAGE_NORM).partition(".")
            converted.state_dict[f"stage_norms.{int(stage) - 1}.{param}"] = tensor
        elif inner != key:
            backbone[inner] = tensor
        else:
            native = HEADS.to_native(key)
            if native is None:
                converted.unmapped.append(key)
            else:
                converted.state_dict[native] = tensor
    inner_converted = hf.to_native(backbone)
    for key, tensor in inner_converted.state_dict.items():
        if key.startswith("norm."):  # SwinBackbone's final layernorm, which no output goes through
            converted.ignored.append("backbone." + key)
        else:
            converted.state_dict["backbone." + key] = tensor
    converted.unmapped += ["backbone." + key for key in inner_converted.unmapped]
    converted.ignored += ["backbone." + key for key in inner_converted.ignored]
    return converted


def read_metadata(metadata: Mapping[str, dict]) -> tuple[dict[str, object], dict[str, object]] | None:
    """Segmenter fields and backbone fields from an UperNet ``config.json``, or None for another model.

    Raises CheckpointError for what swinkit's segmenter does not build (an auxiliary head that
    concatenates its input, a backbone giving only some stages), and warns when a Swin V2
    backbone's ``image_size`` shrinks a stage's window (transformers' V2 fixes its windows at
    construction; swinkit's segmenter keeps the full window, so outputs then differ).
    """
    config = metadata.get("config.json", {})
    if config.get("model_type") != "upernet":
        return None
    backbone_config = dict(config.get("backbone_config") or {})
    found = hf.read_metadata({"config.json": backbone_config})
    if found is None:
        raise CheckpointError(
            f"this UperNet's backbone is {backbone_config.get('model_type')!r}; swinkit reads Swin ('swin') and "
            f"Swin V2 ('swinv2') backbones"
        )
    if config.get("auxiliary_concat_input"):
        raise CheckpointError("this UperNet's auxiliary head concatenates its input (auxiliary_concat_input), "
                              "which swinkit's FCN head does not do")
    depths = backbone_config.get("depths", ())
    stages = [f"stage{index + 1}" for index in range(len(depths))]
    if backbone_config.get("out_features", stages) != stages:
        raise CheckpointError(
            f"this UperNet's backbone gives stages {backbone_config['out_features']}; swinkit's segmenter uses "
            f"all of them ({stages})"
        )
    backbone_fields, _ = found
    backbone_fields.pop("labels", None)
    if backbone_config.get("model_type") == "swinv2":
        _warn_clamped_windows(backbone_config)
    fields: dict[str, object] = {ours: config[theirs] for ours, theirs in CONFIG_FIELDS if theirs in config}
    if config.get("use_auxiliary_head") is False:
        fields["aux_channels"] = 0
    id2label = config.get("id2label") or {}
    labels = tuple(str(id2label[index]) for index in sorted(id2label, key=int))
    if labels and labels != tuple(f"LABEL_{index}" for index in range(len(labels))):
        fields["labels"] = labels
    fields.update(aux_stage=AUX_STAGE, dropout=0.0)
    return fields, backbone_fields


def _warn_clamped_windows(backbone_config: Mapping[str, object]) -> None:
    size = backbone_config.get("image_size", 224)
    height, width = (size, size) if isinstance(size, int) else size  # type: ignore[misc]
    patch, window = int(backbone_config.get("patch_size", 4)), int(backbone_config.get("window_size", 7))
    clamped = [
        stage
        for stage in range(len(backbone_config.get("depths", ())))  # type: ignore[arg-type]
        if min(height, width) // (patch * 2**stage) <= window
    ]
    if clamped:
        warnings.warn(
            f"this Swin V2 UperNet's image_size {size} makes transformers shrink the window (or drop the shift) of "
            f"stage(s) {clamped} for every input; swinkit's segmenter keeps window {window} and its shift, so its "
            f"outputs differ from transformers' there",
            stacklevel=3,
        )


def export(state_dict: Mapping[str, torch.Tensor], config: SegmenterConfig) -> tuple[dict, dict]:
    """The tensors and ``config.json`` that ``transformers.UperNetForSemanticSegmentation.from_pretrained`` reads.

    Raises CheckpointError for a segmenter transformers cannot hold: stage norms other than its
    own (V1 has them, V2 has none) or an auxiliary head on another stage than the third.
    """
    backbone = config.backbone
    if config.stage_norms != (backbone.version == 1):
        raise CheckpointError(
            f"transformers' Swin V{backbone.version} backbone has {'a' if backbone.version == 1 else 'no'} LayerNorm "
            f"per stage output; this segmenter has {'them' if config.stage_norms else 'none'}"
        )
    if config.has_aux and config.aux_stage % backbone.num_stages != AUX_STAGE:
        raise CheckpointError(
            f"transformers' auxiliary head reads stage {AUX_STAGE + 1}; this segmenter's reads stage "
            f"{config.aux_stage % backbone.num_stages + 1}"
        )
    prefix = "swin." if backbone.version == 1 else "swinv2."
    inner = {key.removeprefix("backbone."): value for key, value in state_dict.items() if key.startswith("backbone.")}
    tensors: dict[str, torch.Tensor] = {}
    for key, value in hf.from_native(inner).items():
        tensors["backbone." + (key if backbone.version == 1 else key.removeprefix(prefix))] = value
    for key, value in state_dict.items():
        if key.startswith("stage_norms."):
            stage, _, param = key.removeprefix("stage_norms.").partition(".")
            tensors[f"backbone.{_STAGE_NORM}{int(stage) + 1}.{param}"] = value
        elif not key.startswith("backbone."):
            foreign = HEADS.from_native(key)
            if foreign is None:
                raise CheckpointError(f"transformers' UperNet has no place for swinkit key {key!r}")
            tensors[foreign] = value
    return tensors, {"config.json": export_config(config)}


def export_config(config: SegmenterConfig) -> dict[str, object]:
    """An UperNet ``config.json`` for ``config``: the head's fields and the backbone's Hugging Face config."""
    backbone = hf.export_config(config.backbone)
    for key in ("architectures", "id2label", "label2id"):
        backbone.pop(key)
    stages = [f"stage{index + 1}" for index in range(config.backbone.num_stages)]
    backbone.update(
        out_features=stages, out_indices=list(range(1, len(stages) + 1)), stage_names=["stem", *stages]
    )
    data = config.to_dict()
    labels = config.labels or tuple(f"LABEL_{index}" for index in range(config.num_classes))
    return {
        "architectures": ["UperNetForSemanticSegmentation"],
        "model_type": "upernet",
        "backbone_config": backbone,
        **{theirs: data[ours] for ours, theirs in CONFIG_FIELDS},
        "auxiliary_channels": config.aux_channels or 256,  # unused without the head; transformers' default
        "use_auxiliary_head": config.has_aux,
        "auxiliary_in_channels": None,
        "auxiliary_concat_input": False,
        "initializer_range": 0.02,
        "id2label": {str(index): label for index, label in enumerate(labels)},
        "label2id": {label: index for index, label in enumerate(labels)},
        "num_labels": config.num_classes,
    }
