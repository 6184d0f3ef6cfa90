"""``create_model``: any registered model by name, or any model from a checkpoint of any understood format.

The one entry point that looks at a checkpoint and hands it to the reader of its kind: a
segmenter (:mod:`swinkit.checkpoints.segmentation`) or a classifier and backbone
(:mod:`swinkit.checkpoints.loading`).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from swinkit.checkpoints import io, segmentation
from swinkit.checkpoints.loading import Source, create_classifier
from swinkit.model import create_model as build_model
from swinkit.model.registry import TASK_MODELS


def create_model(
    name: str | None = None,
    pretrained: Source | None = None,
    *,
    format: str | None = None,
    strict: bool = True,
    device: torch.device | str | None = None,
    **overrides: object,
) -> nn.Module:
    """Build a Swin model, optionally from a checkpoint of any understood format.

    ``create_model("swin_t")`` builds a registered variant (or a task model such as
    ``upernet_swin_t``). With ``pretrained`` (a file, directory or Hub id, see
    :func:`~swinkit.checkpoints.loading.read_checkpoint`) the weights are loaded: a segmenter's
    checkpoint, or a segmenter name, gives a segmenter
    (:func:`~swinkit.checkpoints.segmentation.create_segmenter`), anything else a classifier
    (:func:`~swinkit.checkpoints.loading.create_classifier`, which says how the variant, the
    classes and ``overrides`` are settled). The result carries ``pretrained_cfg``
    (preprocessing) and ``load_report``.
    """
    if pretrained is None:
        if name is None:
            raise ValueError("create_model needs a model name (see swinkit.list_models()) or pretrained=CHECKPOINT")
        return build_model(name, device=device, **overrides)
    if not isinstance(pretrained, (str, os.PathLike)):
        raise ValueError(f"pretrained must be a path or a Hub id (a string), got {type(pretrained).__name__}")
    located = io.locate(pretrained)
    raw = io.read_weights(located.weights)
    if segmentation.is_segmenter_request(name, raw):
        model = segmentation.create_segmenter(located, raw, name, format, strict, **overrides)
    elif name in TASK_MODELS:
        raise ValueError(
            f"{name!r} is a model of another task, which create_model(pretrained=...) does not load: build it with "
            f"create_model({name!r}) and load its checkpoint with its task's loader (SimMIM models: "
            f"swinkit.checkpoints.create_simmim(pretrained, {name!r}); detectors: swinkit.checkpoints.detection."
            f"load_detector(pretrained), or create_detector({name!r}, backbone_weights=pretrained))"
        )
    else:
        model = create_classifier(located, raw, name, format, strict, **overrides)
    return model.to(device) if device is not None else model
