"""The checkpoint formats swinkit understands, and telling them apart by their keys."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from types import ModuleType

from swinkit.checkpoints import hf, native, official, timm, torchvision
from swinkit.checkpoints.errors import CheckpointError

#: Format name -> module, in the order detection tries them (official before timm: both use ``layers.*``).
FORMATS: Mapping[str, ModuleType] = {module.NAME: module for module in (native, hf, torchvision, official, timm)}
#: Formats of export directories (weights plus JSON): :func:`swinkit.save_pretrained` writes
#: them, and their JSON files (config, labels, preprocessing) are read on load.
SAVE_FORMATS = ("native", "hf", "timm")
#: Other names accepted for a format.
ALIASES = {
    "swinkit": "native",
    "transformers": "hf",
    "huggingface": "hf",
    "timm_old": "official",
    "timm-old": "official",
}


def resolve_format(name: str, accepted: Collection[str] = tuple(FORMATS)) -> str:
    """The canonical name of a format (aliases such as ``transformers`` resolved); ValueError when not accepted."""
    canonical = ALIASES.get(name, name)
    if canonical not in accepted:
        raise ValueError(f"unknown checkpoint format {name!r}; accepted: {', '.join(accepted)}")
    return canonical


def detect_format(keys: Collection[str], source: str = "the checkpoint") -> str:
    """The format whose layout ``keys`` follow: ``native``, ``hf``, ``torchvision``, ``official`` or ``timm``.

    Each layout is told by its places, whatever the Swin version (see
    :func:`swinkit.checkpoints.layout.swin_version` for that). The pre-0.9 timm layout is the
    official one and is reported as ``official``. An unknown layout raises CheckpointError
    listing sample keys and the formats understood.
    """
    keys = set(keys)
    sample = sorted(keys)[:5]
    for name, module in FORMATS.items():
        if module.detect(keys):
            return name
    raise CheckpointError(
        f"cannot tell the layout of {source}: its keys (e.g. {sample}) match none of the formats understood "
        f"({', '.join(FORMATS)}; the pre-0.9 timm layout is 'official'). If you know the format, pass it "
        f"explicitly (format=...)"
    )
