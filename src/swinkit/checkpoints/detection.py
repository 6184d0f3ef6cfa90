"""Detector checkpoints: a Swin backbone from any classification checkpoint or the official detection repository.

The official detection repository (Swin-Transformer-Object-Detection, mmdetection) saves
``{"meta": ..., "state_dict": ...}`` with the backbone under ``backbone.``: the official Swin
names (``layers.{i}.blocks.{j}``, merging at the end of a stage) plus one output norm per
stage, ``backbone.norm{i}``, and no classifier norm or head. Its neck (``neck.``) and heads
(``rpn_head.``, ``roi_head.``) are mmdetection's modules, not torchvision's, and are reported
as not loaded. A classification checkpoint (any format :func:`~swinkit.checkpoints.read_checkpoint`
reads) gives the Swin's stages; its head and final norm have no place in a detector.

swinkit's own detector export is a directory of ``model.safetensors`` and ``detector.json``
(``{"format": "swinkit-detector", "version": 1, "config": DetectorConfig.to_dict()}``).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torchvision.models.detection import FasterRCNN, MaskRCNN

from swinkit.checkpoints import io, official
from swinkit.checkpoints.errors import CheckpointError
from swinkit.checkpoints.layout import is_ignored, same_names
from swinkit.checkpoints.loading import Checkpoint, load_checkpoint, pretrained_windows_for, read_checkpoint
from swinkit.model.detection import DetectorConfig, build_detector, detector_config

NAME = "official-detection"
METADATA_FILE = "detector.json"
WEIGHTS_FILE = "model.safetensors"
VERSION = 1
#: Prefix of the backbone in the official detection repository (mmdetection) and in torchvision's detectors.
BACKBONE = "backbone."
#: Where the detector keeps the Swin inside its backbone, and the stage output norms.
_BODY = "backbone.body."
_STAGE_NORMS = "backbone.stage_norms."
_OFFICIAL_NORM = re.compile(r"^norm(?P<stage>\d+)\.(?P<rest>.+)$")
#: The official detection backbone: the classification layout, without classifier norm and head.
LAYOUT = dataclasses.replace(official.LAYOUT, modules=same_names(("patch_embed",)))

Detector = FasterRCNN | MaskRCNN


@dataclasses.dataclass
class BackboneLoadReport:
    """What :func:`load_backbone` did.

    ``loaded``: detector keys given by the checkpoint; ``not_loaded``: detector keys left as
    built (the FPN and heads, and the stage norms from a classification checkpoint);
    ``unused``: checkpoint keys with no place in the detector (a classifier head and norm,
    the official neck and heads), ``resized``: bias tables resized to the backbone's window.
    """

    source: str
    format: str
    loaded: list[str]
    not_loaded: list[str]
    unused: list[str]
    resized: list[str]


def is_detection_checkpoint(keys: Mapping[str, object] | list[str]) -> bool:
    """Whether the keys are a detector's (an official detection or torchvision-style ``backbone.`` model)."""
    return any(key.startswith(BACKBONE) for key in keys)


def read_official_detection(state_dict: Mapping[str, torch.Tensor], source: str) -> tuple[Checkpoint, dict, list]:
    """Split an official detection state dict: the Swin (swinkit names), the stage norms, and the unused keys.

    Returns ``(checkpoint of the Swin, {stage_norms key: tensor}, unused keys)``; the neck and
    heads are the unused keys. Raises CheckpointError when no ``backbone.`` key is a Swin's.
    """
    body: dict[str, torch.Tensor] = {}
    norms: dict[str, torch.Tensor] = {}
    unused: list[str] = []
    ignored: list[str] = []
    for key, tensor in state_dict.items():
        inner = key.removeprefix(BACKBONE)
        norm = _OFFICIAL_NORM.match(inner)
        native = LAYOUT.to_native(inner) if key.startswith(BACKBONE) else None
        if key.startswith(BACKBONE) and is_ignored(inner):
            ignored.append(key)
        elif norm is not None and key.startswith(BACKBONE):
            norms[f"{norm['stage']}.{norm['rest']}"] = tensor
        elif native is not None:
            body[native] = tensor
        else:
            unused.append(key)
    if "patch_embed.proj.weight" not in body:
        raise CheckpointError(
            f"{source} has keys under 'backbone.' but no Swin patch embedding ('backbone.patch_embed.proj.weight'); "
            f"accepted: the official Swin detection checkpoints (backbone.patch_embed, backbone.layers.*, "
            f"backbone.norm0..3) or a classification checkpoint"
        )
    return Checkpoint(source, NAME, body, {}, None, [], ignored), norms, sorted(unused)


def load_backbone(detector: Detector, source: str | os.PathLike[str], format: str | None = None) -> BackboneLoadReport:
    """Load a Swin backbone into ``detector`` (built by :func:`~swinkit.model.detection.build_detector`).

    ``source``: an official detection checkpoint (``backbone.`` keys; its stage norms load too)
    or any classification checkpoint swinkit reads (``format`` as for
    :func:`~swinkit.checkpoints.read_checkpoint`). V1 bias tables of another window are resized.
    A Swin of another architecture raises CheckpointError naming the keys and shapes.
    """
    raw = io.read_weights(io.locate(source).weights)
    if format is None and is_detection_checkpoint(raw):
        checkpoint, norms, unused = read_official_detection(raw, os.fspath(source))
    else:
        checkpoint = read_checkpoint(source, format)
        norms = {}
        unused = sorted(
            [key for key in checkpoint.state_dict if key.startswith(("head.", "norm."))] + checkpoint.unmapped
        )
    swin = {key: value for key, value in checkpoint.state_dict.items() if not key.startswith(("head.", "norm."))}
    report = load_checkpoint(
        detector.backbone.body, dataclasses.replace(checkpoint, state_dict=swin, unmapped=[]), strict=True
    )
    if norms:
        try:
            detector.backbone.stage_norms.load_state_dict(norms)
        except RuntimeError as error:
            raise CheckpointError(
                f"{source}: the stage norms (backbone.norm*) do not fit the detector's backbone "
                f"(stage_norms must be on, one per stage of the same widths): {error}"
            ) from error
    loaded = [_BODY + key for key in swin] + [_STAGE_NORMS + key for key in norms]
    return BackboneLoadReport(
        checkpoint.source,
        checkpoint.format,
        loaded=sorted(loaded),
        not_loaded=sorted(set(detector.state_dict()) - set(loaded)),
        unused=unused,
        resized=[_BODY + key for key in report.resized],
    )


def create_detector(
    name: str | DetectorConfig, backbone_weights: str | os.PathLike[str] | None = None, **fields: object
) -> Detector:
    """A detector by registered name (``maskrcnn_swin_t``, ...) or config, its backbone optionally pretrained.

    ``fields`` are :class:`~swinkit.model.detection.DetectorConfig` fields (``num_classes``,
    ``min_size``, ``backbone`` overrides, ...) for a name. A Swin V2 backbone of another window
    than its weights keeps their windows as pretrained windows. The load report is
    ``model.load_report``.
    """
    config = name.replace(**fields) if isinstance(name, DetectorConfig) else detector_config(name, **fields)
    if backbone_weights is None:
        return build_detector(config)
    raw = io.read_weights(io.locate(backbone_weights).weights)
    if not is_detection_checkpoint(raw):
        config = config.replace(backbone=pretrained_windows_for(config.backbone, read_checkpoint(backbone_weights)))
    model = build_detector(config)
    model.load_report = load_backbone(model, backbone_weights)
    return model


def save_detector(model: Detector, directory: str | os.PathLike[str]) -> Path:
    """Write ``model`` (a swinkit detector) as ``model.safetensors`` plus ``detector.json``, atomically."""
    path = Path(directory).expanduser()
    io.write_safetensors(path / WEIGHTS_FILE, model.state_dict())
    metadata = {"format": "swinkit-detector", "version": VERSION, "config": model.config.to_dict()}
    io.write_json(path / METADATA_FILE, metadata)
    return path


def load_detector(directory: str | os.PathLike[str]) -> Detector:
    """The detector :func:`save_detector` wrote to ``directory``; CheckpointError names what is missing or wrong."""
    path = Path(directory).expanduser()
    metadata = path / METADATA_FILE
    if not metadata.is_file() or not (path / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"{path} is not a swinkit detector export: expected {METADATA_FILE} and {WEIGHTS_FILE}")
    data = io.read_json(metadata)
    if data.get("format") != "swinkit-detector" or data.get("version", VERSION) > VERSION:
        raise CheckpointError(
            f"{metadata} must hold format 'swinkit-detector' up to version {VERSION}; got "
            f"{data.get('format')!r} version {data.get('version')!r}"
        )
    try:
        config = DetectorConfig.from_dict(data.get("config", {}))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{metadata}: {error}") from error
    model = build_detector(config)
    weights = io.read_weights(path / WEIGHTS_FILE)
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        raise CheckpointError(f"{path / WEIGHTS_FILE} does not fit the config in {metadata}: {error}") from error
    return model
