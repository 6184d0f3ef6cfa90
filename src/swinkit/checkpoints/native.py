"""swinkit's own format: ``model.safetensors`` in swinkit's names plus ``swinkit.json``.

``swinkit.json`` holds ``{"format": "swinkit", "version": 1, "variant", "config", "labels",
"preprocessing"}``: the registered variant name (or null), every :class:`SwinConfig` field,
the class names, and how to prepare images (:class:`Preprocessing`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import torch

from swinkit.checkpoints.errors import CheckpointError
from swinkit.checkpoints.architecture import variant_of
from swinkit.checkpoints.layout import Converted, rename_to_native
from swinkit.preprocessing import Preprocessing
from swinkit.model import SwinConfig

NAME = "native"
METADATA_FILE = "swinkit.json"
VERSION = 1


def detect(keys: Collection[str]) -> bool:
    """swinkit keys: the patch embedding and ``stages.*``."""
    return "patch_embed.proj.weight" in keys and any(key.startswith("stages.") for key in keys)


def to_native(state_dict: Mapping[str, torch.Tensor]) -> Converted:
    """A swinkit state dict as it is, less the buffers other layouts carry."""
    return rename_to_native(state_dict, None)


def read_metadata(metadata: Mapping[str, dict]) -> tuple[dict[str, object], Preprocessing | None] | None:
    """Config fields and preprocessing from ``swinkit.json``, or None when there is none."""
    data = metadata.get(METADATA_FILE)
    if data is None:
        return None
    if data.get("format") != "swinkit" or not isinstance(data.get("config"), dict):
        raise CheckpointError(
            f"{METADATA_FILE} must hold format 'swinkit' and a 'config' object; got keys {sorted(data)}"
        )
    if data.get("version", VERSION) > VERSION:
        raise CheckpointError(
            f"{METADATA_FILE} has version {data['version']}; this swinkit reads versions up to {VERSION}"
        )
    fields = dict(data["config"])
    if data.get("labels"):
        fields["labels"] = tuple(data["labels"])
    preprocessing = Preprocessing.from_dict(data["preprocessing"]) if data.get("preprocessing") else None
    return fields, preprocessing


def export_metadata(config: SwinConfig, preprocessing: Preprocessing) -> dict[str, object]:
    """The contents of ``swinkit.json`` for a model of ``config``."""
    return {
        "format": "swinkit",
        "version": VERSION,
        "variant": variant_of(config),
        "config": config.to_dict(),
        "labels": list(config.labels),
        "preprocessing": preprocessing.to_dict(),
    }


def export(
    state_dict: Mapping[str, torch.Tensor], config: SwinConfig, preprocessing: Preprocessing
) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, object]]]:
    """The tensors and JSON files of a swinkit export: the state dict as it is and ``swinkit.json``."""
    return dict(state_dict), {METADATA_FILE: export_metadata(config, preprocessing)}
