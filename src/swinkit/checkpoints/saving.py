"""Saving a swinkit model as a swinkit, Hugging Face or timm export directory."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from swinkit.checkpoints import io
from swinkit.checkpoints.errors import CheckpointError
from swinkit.checkpoints.formats import FORMATS, SAVE_FORMATS, resolve_format
from swinkit.preprocessing import Preprocessing
from swinkit.model import SwinTransformer

WEIGHTS_FILE = "model.safetensors"
#: Files a loader interprets; a directory holding one that a format would not write is refused.
_CHECKPOINT_FILES = {*io.WEIGHT_FILES, *io.METADATA_FILES}
#: Preprocessing fields a caller may choose; the input size is always the model's.
_CHOSEN = ("mean", "std", "crop_pct", "interpolation")
#: Why a format cannot say that a model crops the pixels beyond whole patches (``patch_remainder="crop"``).
_PADDING_ONLY = {
    "hf": "Hugging Face's Swin pads them, and its config.json has no setting to crop",
    "timm": "timm's Swin has no setting for it (it takes only sides that are whole patches)",
}


def model_preprocessing(
    model: SwinTransformer, given: Preprocessing | Mapping[str, object] | None = None
) -> Preprocessing:
    """The preprocessing to store with ``model``, for its input size.

    ``given`` (a :class:`Preprocessing`, or a mapping or dataclass with some of ``mean``,
    ``std``, ``crop_pct``, ``interpolation``) wins; else what the model's checkpoint said
    (``model.pretrained_cfg``); else the default for the model's size.
    """
    config = model.config
    default = Preprocessing.default(config.img_size, config.in_chans)
    if given is None:
        stored = getattr(model, "pretrained_cfg", None)
        return Preprocessing.from_dict(stored).for_model(config.img_size, config.in_chans) if stored else default
    if isinstance(given, Preprocessing):
        data = given.to_dict()
    else:
        data = dataclasses.asdict(given) if dataclasses.is_dataclass(given) else dict(given)  # type: ignore[arg-type]
    return default.replace(**{key: data[key] for key in _CHOSEN if key in data})


def save_pretrained(
    model: SwinTransformer,
    directory: str | os.PathLike[str],
    format: str = "native",
    preprocessing: Preprocessing | Mapping[str, object] | None = None,
) -> Path:
    """Save ``model`` to ``directory`` as ``native`` (swinkit), ``hf`` (transformers) or ``timm``; returns the directory.

    Every format writes ``model.safetensors``. ``native`` adds ``swinkit.json`` (variant,
    config, labels, preprocessing); ``hf`` adds the ``config.json`` and
    ``preprocessor_config.json`` that ``transformers.SwinForImageClassification.from_pretrained``
    reads; ``timm`` adds the ``config.json`` that ``timm.create_model("local-dir:DIR")`` reads.
    ``preprocessing`` overrides the stored normalisation, crop and interpolation (see
    :func:`model_preprocessing`). Files are written atomically. A directory already holding
    another format's files is refused, and so is an ``hf`` or ``timm`` export of a model that
    follows torchvision (``patch_remainder="crop"``), which those formats cannot say.
    """
    name = resolve_format(format, SAVE_FORMATS)
    config = model.config
    if config.patch_remainder != "pad" and name in _PADDING_ONLY:
        raise CheckpointError(
            f"a {name} export cannot keep patch_remainder={config.patch_remainder!r} (torchvision's semantics: the "
            f"pixels beyond whole patches left out, stage maps no larger than the window padded to whole windows): "
            f"{_PADDING_ONLY[name]}, so the export would compute other "
            f"numbers at such sizes. Save it as 'native', or set patch_remainder='pad' on the model's config first"
        )
    chosen = model_preprocessing(model, preprocessing)
    tensors, metadata = FORMATS[name].export(model.state_dict(), config, chosen)
    return write_export(directory, name, tensors, metadata)


def write_export(
    directory: str | os.PathLike[str], name: str, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, dict]
) -> Path:
    """Write an export of format ``name``: ``model.safetensors`` and its JSON files, each atomically.

    A directory already holding another format's files is refused (CheckpointError).
    """
    path = Path(directory).expanduser()
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"cannot save to {path}: it exists and is not a directory")
    written = {WEIGHTS_FILE, *metadata}
    foreign = (
        sorted(child.name for child in path.iterdir() if child.name in _CHECKPOINT_FILES - written)
        if path.is_dir()
        else []
    )
    if foreign:
        raise CheckpointError(
            f"cannot save a {name} export to {path}: it already holds {foreign} of another export, which a loader "
            f"would read with it; choose an empty directory"
        )
    io.write_safetensors(path / WEIGHTS_FILE, tensors)
    for file_name, data in metadata.items():
        io.write_json(path / file_name, data)
    return path
