"""Segmenter checkpoints: reading the Swin UperNet layouts people have, loading them, saving swinkit's.

Formats (detected from the keys): ``native`` (swinkit's segmenter: ``model.safetensors`` plus
``swinkit.json`` with ``"task": "segment"``), ``hf`` (transformers' ``UperNetForSemanticSegmentation``,
:mod:`swinkit.checkpoints.hf_upernet`) and ``mmseg`` (mmsegmentation's and the official Swin
segmentation repository's, :mod:`swinkit.checkpoints.mmseg`). Any classification checkpoint
swinkit reads (:func:`swinkit.checkpoints.read_checkpoint`) can be the backbone of a new
segmenter instead: its heads are then fresh, and the load report says so.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from swinkit.checkpoints import hf_upernet, io, mmseg
from swinkit.checkpoints.architecture import infer_config
from swinkit.checkpoints.errors import CheckpointError
from swinkit.checkpoints.loading import (
    Checkpoint,
    LoadReport,
    Source,
    convert_checkpoint,
    load_checkpoint,
    resize_relative_position_bias,
)
from swinkit.checkpoints.saving import model_preprocessing
from swinkit.model import SegmenterConfig, SwinUperNet
from swinkit.model.upernet import POOL_SCALES, PREFIX, SEGMENTATION_SIZE, segmenter_config
from swinkit.preprocessing import Preprocessing

logger = logging.getLogger(__name__)

NATIVE = "native"
#: The segmenter formats read, by name (swinkit's own is ``native``).
FORMATS = {NATIVE: None, hf_upernet.NAME: hf_upernet, mmseg.NAME: mmseg}
#: Formats a segmenter is saved in.
SAVE_FORMATS = (NATIVE, hf_upernet.NAME)
#: ``task`` of a segmenter's ``swinkit.json``.
TASK = "segment"
_BACKBONE = "backbone."
_HEADS = ("head.", "aux_head.", "stage_norms.")
_CLASSIFIERS = ("head.classifier.", "aux_head.classifier.")
_BRANCH = re.compile(r"^head\.ppm\.branches\.(\d+)\.")
_AUX_CONV = re.compile(r"^aux_head\.convs\.(\d+)\.conv\.weight$")
_SEGMENTER_FIELDS = {field.name for field in dataclasses.fields(SegmenterConfig)} - {"backbone"}


@dataclasses.dataclass
class SegmenterCheckpoint:
    """A segmenter checkpoint in swinkit's names, with the settings stored beside it.

    ``hints`` are :class:`SegmenterConfig` fields and ``backbone_hints`` :class:`SwinConfig`
    fields read from a ``config.json`` or ``swinkit.json``; the rest comes from the shapes.
    """

    source: str
    format: str
    state_dict: dict[str, torch.Tensor]
    hints: dict[str, object]
    backbone_hints: dict[str, object]
    preprocessing: Preprocessing | None
    unmapped: list[str]
    ignored: list[str]

    @property
    def num_classes(self) -> int:
        """Classes of the stored classifier."""
        return self.state_dict["head.classifier.weight"].shape[0]

    def config(self) -> SegmenterConfig:
        """The stored segmenter's config: architecture from the shapes, the rest from the stored config."""
        return infer_segmenter_config(self.state_dict, self.hints, self.backbone_hints, self.source)


def detect_format(keys: Mapping[str, object] | list[str]) -> str | None:
    """``native``, ``hf`` or ``mmseg`` for a segmenter's keys; None for anything else (a classifier, say)."""
    keys = set(keys)
    if "head.classifier.weight" in keys and "backbone.patch_embed.proj.weight" in keys:
        return NATIVE
    return next((name for name, module in FORMATS.items() if module is not None and module.detect(keys)), None)


def infer_segmenter_config(
    state_dict: Mapping[str, torch.Tensor],
    hints: Mapping[str, object],
    backbone_hints: Mapping[str, object],
    source: str,
) -> SegmenterConfig:
    """A segmenter's config read off its tensors (swinkit's names), completed by stored settings.

    The backbone comes from :func:`~swinkit.checkpoints.architecture.infer_config` (run with
    fixed windows); the classes and head width from the classifier; the pyramid's size,
    the auxiliary head (width, depth, the stage it reads) and the stage norms from the keys
    present. ``hints`` then supply the pooling scales, loss settings, dropout and labels.
    """
    backbone_tensors = {k.removeprefix(_BACKBONE): v for k, v in state_dict.items() if k.startswith(_BACKBONE)}
    backbone = infer_config(backbone_tensors, {"fixed_windows": True, **backbone_hints}, source)
    if "head.classifier.weight" not in state_dict:
        raise CheckpointError(f"{source} has no segmentation classifier (head.classifier); it is not a segmenter")
    classifier = state_dict["head.classifier.weight"]
    branches = len({match[1] for match in map(_BRANCH.match, state_dict) if match})
    inferred: dict[str, object] = {
        "num_classes": classifier.shape[0],
        "channels": classifier.shape[1],
        "pool_scales": POOL_SCALES if branches == len(POOL_SCALES) else tuple(range(1, branches + 1)),
        "stage_norms": any(key.startswith("stage_norms.") for key in state_dict),
        "aux_channels": 0,
    }
    convs = sorted(int(match[1]) for match in map(_AUX_CONV.match, state_dict) if match)
    if "aux_head.classifier.weight" in state_dict and convs:
        first = state_dict["aux_head.convs.0.conv.weight"]
        if first.shape[1] not in backbone.stage_dims:
            raise CheckpointError(
                f"{source}: the auxiliary head reads {first.shape[1]} channels, which no stage of the backbone "
                f"({backbone.stage_dims}) has"
            )
        stage = backbone.stage_dims.index(first.shape[1])
        inferred.update(aux_channels=first.shape[0], aux_convs=convs[-1] + 1, aux_stage=stage - backbone.num_stages)
    fields = {**inferred, **{k: v for k, v in hints.items() if k not in ("num_classes", "channels", "aux_channels")}}
    if len(fields.get("labels", ())) != fields["num_classes"]:  # type: ignore[arg-type]
        fields.pop("labels", None)
    if isinstance(fields.get("aux_stage"), int) and inferred["aux_channels"]:
        fields["aux_stage"] = inferred["aux_stage"]
    try:
        return SegmenterConfig(backbone=backbone, **fields)  # type: ignore[arg-type]
    except ValueError as error:
        raise CheckpointError(f"the segmenter config stored with {source} is not usable: {error}") from error


def read_segmenter(located: io.Located, raw: Mapping[str, torch.Tensor], format: str | None = None) -> SegmenterCheckpoint:
    """Rename a segmenter's tensors (as read from ``located``) to swinkit's names, with its stored settings."""
    name = format if format is not None else detect_format(list(raw))
    if name not in FORMATS:
        raise CheckpointError(
            f"{located.source} is not a segmenter checkpoint of a known layout ({', '.join(FORMATS)}); its keys "
            f"begin {sorted(raw)[:5]}"
        )
    hints: dict[str, object] = {}
    backbone_hints: dict[str, object] = {}
    preprocessing = None
    if name == NATIVE:
        converted_state, unmapped, ignored = dict(raw), [], []
        stored = located.metadata.get(io.METADATA_FILES[0])
        if stored is not None:
            hints, backbone_hints, preprocessing = _read_native_metadata(stored, located.source)
    else:
        module = FORMATS[name]
        converted = module.to_native(raw)  # type: ignore[union-attr]
        converted_state, unmapped, ignored = converted.state_dict, converted.unmapped, converted.ignored
        found = hf_upernet.read_metadata(located.metadata)
        if found is not None:
            hints, backbone_hints = found
        elif name == mmseg.NAME:
            hints, backbone_hints = {}, {"img_size": SEGMENTATION_SIZE}  # the official ADE20K crop
    return SegmenterCheckpoint(
        located.source, name, converted_state, hints, backbone_hints, preprocessing, unmapped, ignored
    )


def _read_native_metadata(
    data: Mapping[str, object], source: str
) -> tuple[dict[str, object], dict[str, object], Preprocessing | None]:
    if data.get("task") != TASK or not isinstance(data.get("config"), dict):
        raise CheckpointError(
            f"{source}: swinkit.json of a segmenter holds task {TASK!r} and a 'config' object; got keys {sorted(data)}"
        )
    fields = dict(data["config"])  # type: ignore[call-overload]
    backbone = dict(fields.pop("backbone", {}))
    preprocessing = Preprocessing.from_dict(data["preprocessing"]) if data.get("preprocessing") else None  # type: ignore[arg-type]
    return fields, backbone, preprocessing


def load_segmenter_weights(model: SwinUperNet, checkpoint: SegmenterCheckpoint, strict: bool = True) -> LoadReport:
    """Load a segmenter checkpoint into ``model``; classifiers of another number of classes are re-initialised.

    V1 bias tables of another window are resized (:func:`resize_relative_position_bias`); any
    other shape difference raises CheckpointError naming the key and both shapes; with
    ``strict`` missing or unplaceable keys raise too. Sets ``model.load_report``.
    """
    target = model.state_dict()
    tensors = dict(checkpoint.state_dict)
    report = LoadReport(checkpoint.source, checkpoint.format, ignored=list(checkpoint.ignored))
    for key, tensor in list(tensors.items()):
        wanted = target.get(key)
        if wanted is None or wanted.shape == tensor.shape:
            continue
        if key.startswith(_CLASSIFIERS):
            report.dropped.append(key)
            del tensors[key]
        elif key.endswith("relative_position_bias_table") and wanted.shape[1] == tensor.shape[1]:
            tensors[key] = resize_relative_position_bias(tensor, model.config.backbone.window_size)
            report.resized.append(key)
        else:
            raise CheckpointError(
                f"{checkpoint.source}: {key} has shape {tuple(tensor.shape)} in the checkpoint but "
                f"{tuple(wanted.shape)} in the model; build the model with the checkpoint's architecture"
            )
    report.initialised = sorted(key for key in target if key.startswith(_CLASSIFIERS) and key not in tensors)
    report.missing = sorted(key for key in target if key not in tensors and key not in report.initialised)
    report.unexpected = sorted(checkpoint.unmapped + [key for key in tensors if key not in target])
    if strict and (report.missing or report.unexpected):
        raise CheckpointError(
            f"{checkpoint.source} ({checkpoint.format} format) does not fit the segmenter: missing keys "
            f"{report.missing[:6]}; keys with no place in it {report.unexpected[:6]}. Pass strict=False to load what fits"
        )
    if report.dropped:
        logger.warning("%s: classifiers of another number of classes re-initialised: %s", checkpoint.source, report.dropped)
    model.load_state_dict({key: tensor for key, tensor in tensors.items() if key in target}, strict=False)
    model.load_report = report
    return report


def load_backbone(model: SwinUperNet, checkpoint: Checkpoint) -> LoadReport:
    """Load a classification checkpoint into ``model``'s backbone; the heads and stage norms stay fresh.

    The classifier and final norm of the checkpoint have no place in a segmenter and are
    reported as dropped; every head, auxiliary head and stage-norm key as initialised.
    Raises CheckpointError when the backbone weights do not fit.
    """
    unused = sorted(key for key in checkpoint.state_dict if key.startswith(("head.", "norm.")))
    backbone_only = dataclasses.replace(
        checkpoint, state_dict={k: v for k, v in checkpoint.state_dict.items() if k not in unused}
    )
    inner = load_checkpoint(model.backbone, backbone_only, strict=True)
    fresh = sorted(key for key in model.state_dict() if key.startswith(_HEADS))
    report = dataclasses.replace(
        inner,
        dropped=unused,
        initialised=fresh,
        resized=[_BACKBONE + key for key in inner.resized],
    )
    logger.info(
        "%s: backbone loaded from a %s classification checkpoint; the segmentation heads are new (%d tensors)",
        checkpoint.source,
        checkpoint.format,
        len(fresh),
    )
    model.pretrained_cfg = model.backbone.pretrained_cfg
    model.load_report = report
    return report


def is_segmenter_request(name: str | None, raw: Mapping[str, torch.Tensor]) -> bool:
    """Whether :func:`swinkit.create_model` is asked for a segmenter: an ``upernet_*`` name or a segmenter's keys."""
    return (name is not None and name.startswith(PREFIX)) or detect_format(list(raw)) is not None


def create_segmenter(
    located: io.Located,
    raw: Mapping[str, torch.Tensor],
    name: str | None = None,
    format: str | None = None,
    strict: bool = True,
    **overrides: object,
) -> SwinUperNet:
    """A segmenter from a checkpoint already read: a segmenter checkpoint, or a classifier's as the backbone.

    ``name`` (``upernet_swin_t``, ...) fixes the backbone variant (else it is inferred from
    the weights). ``overrides`` are :func:`~swinkit.model.upernet.segmenter_config` settings;
    another ``num_classes`` than the checkpoint's re-initialises the classifiers.
    """
    if name is not None and not name.startswith(PREFIX):
        raise CheckpointError(
            f"{located.source} holds a segmenter; name a segmenter ({PREFIX}<variant>, e.g. '{PREFIX}swin_t') "
            f"or leave the name out to infer it, not {name!r}"
        )
    variant = name.removeprefix(PREFIX) if name is not None else None
    segmenter_format = format if format in FORMATS else detect_format(list(raw))
    if segmenter_format is None:
        checkpoint = convert_checkpoint(located, raw, format)
        backbone = checkpoint.config().replace(num_classes=0, labels=()) if variant is None else variant
        model = SwinUperNet(segmenter_config(backbone, **overrides))
        load_backbone(model, checkpoint)
        return model
    segmenter = read_segmenter(located, raw, segmenter_format)
    config = segmenter.config()
    if variant is not None:
        config = config.replace(backbone=segmenter_config(variant).backbone)
    own = {k: v for k, v in overrides.items() if k in _SEGMENTER_FIELDS}
    backbone_changes = {k: v for k, v in overrides.items() if k not in _SEGMENTER_FIELDS}
    if "num_classes" in own and own["num_classes"] != segmenter.num_classes:
        own.setdefault("labels", ())
    config = config.replace(backbone=config.backbone.replace(**backbone_changes), **own)
    model = SwinUperNet(config)
    load_segmenter_weights(model, segmenter, strict)
    preprocessing = segmenter.preprocessing or Preprocessing.default(config.backbone.img_size, config.backbone.in_chans)
    model.pretrained_cfg = {**preprocessing.to_dict(), "source": segmenter.source, "format": segmenter.format}
    return model


def load_segmenter(source: Source, name: str | None = None, format: str | None = None, **overrides: object) -> SwinUperNet:
    """A segmenter from any checkpoint swinkit reads (see :func:`create_segmenter`): file, directory or Hub id."""
    located = io.locate(source)
    return create_segmenter(located, io.read_weights(located.weights), name, format, **overrides)


def save_segmenter(
    model: SwinUperNet,
    directory: str | os.PathLike[str],
    format: str = NATIVE,
    preprocessing: Preprocessing | Mapping[str, object] | None = None,
) -> Path:
    """Save a segmenter as ``native`` (swinkit) or ``hf`` (transformers' UperNet); returns the directory.

    Both write ``model.safetensors`` atomically; ``native`` adds ``swinkit.json`` (task, config,
    labels, preprocessing), ``hf`` the ``config.json`` that
    ``transformers.UperNetForSemanticSegmentation.from_pretrained`` reads.
    """
    if format not in SAVE_FORMATS:
        raise ValueError(f"a segmenter is saved as {' or '.join(SAVE_FORMATS)}, not {format!r}")
    path = Path(directory).expanduser()
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"cannot save to {path}: it exists and is not a directory")
    state_dict = model.state_dict()
    if format == NATIVE:
        chosen = model_preprocessing(model.backbone, preprocessing if preprocessing is not None else _stored(model))
        tensors, metadata = state_dict, {io.METADATA_FILES[0]: native_metadata(model.config, chosen)}
    else:
        tensors, metadata = hf_upernet.export(state_dict, model.config)
    io.write_safetensors(path / "model.safetensors", tensors)
    for file_name, data in metadata.items():
        io.write_json(path / file_name, data)
    return path


def _stored(model: SwinUperNet) -> Mapping[str, object] | None:
    return getattr(model, "pretrained_cfg", None)


def native_metadata(config: SegmenterConfig, preprocessing: Preprocessing) -> dict[str, object]:
    """The contents of a segmenter's ``swinkit.json``."""
    return {
        "format": "swinkit",
        "version": 1,
        "task": TASK,
        "config": config.to_dict(),
        "labels": list(config.labels),
        "preprocessing": preprocessing.to_dict(),
    }
