"""SimMIM pre-training checkpoints: the encoder in any Swin layout, plus the mask token and the decoder.

The layouts (swinkit, official, Hugging Face) are described in :mod:`swinkit.checkpoints.simmim_layout`.
Reading any checkpoint (:func:`swinkit.checkpoints.read_checkpoint`) takes SimMIM's mask token
and decoder out of it (``Checkpoint.pretraining``) and reads the encoder by its own format, so a
classifier built from a SimMIM checkpoint gets the encoder, and its load report lists the mask
token and decoder as dropped. :func:`load_simmim` and :func:`create_simmim` load all of it into a :class:`SimMIM`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from swinkit.checkpoints import hf
from swinkit.checkpoints.errors import CheckpointError
from swinkit.checkpoints.loading import Checkpoint, LoadReport, load_checkpoint, read_checkpoint
from swinkit.checkpoints.saving import model_preprocessing, write_export
from swinkit.checkpoints.formats import FORMATS, resolve_format
from swinkit.checkpoints.simmim_layout import DECODER, ENCODER, MASK_TOKEN
from swinkit.model import SimMIM
from swinkit.preprocessing import Preprocessing
from swinkit.model.registry import TASK_MODELS

#: Hugging Face's names for SimMIM's parameters, by Swin version.
_HF_MASK_TOKEN = {1: "swin.embeddings.mask_token", 2: "swinv2.embeddings.mask_token"}
_HF_DECODER = "decoder.0."
_HF_ARCHITECTURES = {1: "SwinForMaskedImageModeling", 2: "Swinv2ForMaskedImageModeling"}
Source = str | os.PathLike[str]


def load_simmim(model: SimMIM, source: Source | Checkpoint, format: str | None = None) -> LoadReport:
    """Load a SimMIM checkpoint of any layout (encoder, mask token and decoder) into ``model``, strictly.

    The encoder goes through :func:`~swinkit.checkpoints.load_checkpoint` (V1 bias tables of
    another window are resized); the mask token and decoder must have the model's shapes.
    Raises CheckpointError for a checkpoint without them (a classifier's) or that does not fit.
    """
    checkpoint = source if isinstance(source, Checkpoint) else read_checkpoint(source, format)
    wanted = {key: tensor for key, tensor in model.state_dict().items() if not key.startswith(ENCODER)}
    if set(checkpoint.pretraining) != set(wanted):
        raise CheckpointError(
            f"{checkpoint.source} is not a SimMIM checkpoint: it holds {sorted(checkpoint.pretraining) or 'none'} of "
            f"SimMIM's own parameters {sorted(wanted)}; build a classifier from it with swinkit.create_model instead"
        )
    wrong = [
        f"{key} {tuple(tensor.shape)} (the model's: {tuple(wanted[key].shape)})"
        for key, tensor in checkpoint.pretraining.items()
        if tensor.shape != wanted[key].shape
    ]
    if wrong:
        raise CheckpointError(f"{checkpoint.source} does not fit the SimMIM model: {'; '.join(wrong)}")
    report = load_checkpoint(model.encoder, checkpoint, strict=True)
    report.dropped = [key for key in report.dropped if key not in checkpoint.pretraining]
    model.load_state_dict(checkpoint.pretraining, strict=False)
    model.pretrained_cfg = model.encoder.pretrained_cfg
    model.load_report = report
    return report


def create_simmim(
    pretrained: Source, name: str | None = None, *, format: str | None = None, **overrides: object
) -> SimMIM:
    """A :class:`SimMIM` model with the encoder, mask token and decoder of a SimMIM checkpoint of any layout.

    The architecture is read from the checkpoint (its config file or its shapes) unless
    ``name`` (a registered ``simmim_*`` name) is given; ``overrides`` replace config fields
    (``img_size``, ``window_size``, ``drop_path_rate``, ...).
    """
    checkpoint = read_checkpoint(pretrained, format)
    if name is not None:
        if not name.startswith("simmim_") or name not in TASK_MODELS:
            known = ", ".join(key for key in TASK_MODELS if key.startswith("simmim_"))
            raise ValueError(f"unknown SimMIM model {name!r}; known: {known}")
        model = TASK_MODELS[name](**overrides)
    else:
        model = SimMIM(checkpoint.config().replace(**({"num_classes": 0, "labels": ()} | overrides)))
    load_simmim(model, checkpoint)
    return model


def save_simmim(
    model: SimMIM,
    directory: Source,
    format: str = "native",
    preprocessing: Preprocessing | Mapping[str, object] | None = None,
) -> Path:
    """Save a SimMIM model as ``native`` (swinkit) or ``hf`` (transformers' ``*ForMaskedImageModeling``).

    ``native``: ``encoder.*``, ``mask_token``, ``decoder.proj.*`` and ``swinkit.json`` (the
    encoder's config); ``hf``: the Hugging Face layout with ``config.json`` naming
    ``SwinForMaskedImageModeling`` (or the V2 class), which ``from_pretrained`` reads.
    ``preprocessing`` is the normalisation stored with it (see
    :func:`~swinkit.checkpoints.saving.model_preprocessing`). Written atomically, as
    :func:`~swinkit.checkpoints.save_pretrained`.
    """
    name = resolve_format(format, ("native", "hf"))
    config = model.config
    own = {key: tensor for key, tensor in model.state_dict().items() if not key.startswith(ENCODER)}
    chosen = model_preprocessing(model.encoder, preprocessing)
    tensors, metadata = FORMATS[name].export(model.encoder.state_dict(), config, chosen)
    if name == "native":
        tensors = {ENCODER + key: tensor for key, tensor in tensors.items()} | own
    else:
        tensors[_HF_MASK_TOKEN[config.version]] = own[MASK_TOKEN]
        for key in (key for key in own if key.startswith(DECODER + ".")):
            tensors[_HF_DECODER + key.removeprefix(DECODER + ".")] = own[key]
        metadata["config.json"] = hf.export_config(config) | {"architectures": [_HF_ARCHITECTURES[config.version]]}
    return write_export(directory, name, tensors, metadata)
