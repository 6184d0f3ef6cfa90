"""Named Swin and Swin V2 variants as data, and the functions that build them."""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Mapping
from types import MappingProxyType

import torch
from torch import nn

from swinkit.model.swin import SwinConfig, SwinTransformer

_SIZES: Mapping[str, dict[str, object]] = {
    "t": {"embed_dim": 96, "depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24), "drop_path_rate": 0.2},
    "s": {"embed_dim": 96, "depths": (2, 2, 18, 2), "num_heads": (3, 6, 12, 24), "drop_path_rate": 0.3},
    "b": {"embed_dim": 128, "depths": (2, 2, 18, 2), "num_heads": (4, 8, 16, 32), "drop_path_rate": 0.5},
    "l": {"embed_dim": 192, "depths": (2, 2, 18, 2), "num_heads": (6, 12, 24, 48), "drop_path_rate": 0.2},
}
_LONG_NAMES = {"t": "tiny", "s": "small", "b": "base", "l": "large"}
_RESOLUTIONS = {224: 7, 384: 12}

#: Compact variants for training from scratch on small images, smallest first: the ladder the
#: data-chosen recipe (:mod:`swinkit.train.recipe`) climbs. Three stages, patch 2, window 4,
#: registered at 32x32 with 10 classes (0.57 M, 1.27 M, 3.83 M and 12.1 M parameters;
#: 0.021, 0.046, 0.107 and 0.297 GFLOPs). The head dimension is 16 up to pico, 32 (Swin-T's)
#: for nano, which is Swin-T's first three stages.
_COMPACT: Mapping[str, dict[str, object]] = {
    "swin_atto": {"embed_dim": 32, "depths": (2, 2, 2), "num_heads": (2, 4, 8), "drop_path_rate": 0.05},
    "swin_femto": {"embed_dim": 48, "depths": (2, 2, 2), "num_heads": (3, 6, 12), "drop_path_rate": 0.1},
    "swin_pico": {"embed_dim": 64, "depths": (2, 2, 4), "num_heads": (4, 8, 16), "drop_path_rate": 0.1},
    "swin_nano": {"embed_dim": 96, "depths": (2, 2, 6), "num_heads": (3, 6, 12), "drop_path_rate": 0.2},
}
_COMPACT_BASE = {"img_size": 32, "patch_size": 2, "window_size": 4, "num_classes": 10}


def _build_variants() -> tuple[dict[str, SwinConfig], dict[str, str]]:
    variants: dict[str, SwinConfig] = {}
    aliases: dict[str, str] = {}
    for img_size, window in _RESOLUTIONS.items():
        for size, fields in _SIZES.items():
            name = f"swin_{size}" if img_size == 224 else f"swin_{size}_{img_size}"
            variants[name] = SwinConfig(img_size=img_size, window_size=window, **fields)  # type: ignore[arg-type]
            aliases[f"swin_{_LONG_NAMES[size]}_patch4_window{window}_{img_size}"] = name
    for name, fields in _COMPACT.items():
        variants[name] = SwinConfig(**_COMPACT_BASE, **fields)  # type: ignore[arg-type]
    return variants, aliases


_VARIANTS, _ALIASES = _build_variants()

#: Swin V2 releases (official configs): (canonical suffix, input size, window, pretrained windows,
#: classes, drop path, timm name suffix, deprecated timm name suffix).
_V2_RELEASES: Mapping[str, tuple[tuple[str, int, int, tuple[int, ...], int, float | None, str, str], ...]] = {
    "t": (("", 256, 8, (), 1000, None, "window8_256", ""), ("_w16", 256, 16, (), 1000, None, "window16_256", "")),
    "s": (("", 256, 8, (), 1000, None, "window8_256", ""), ("_w16", 256, 16, (), 1000, None, "window16_256", "")),
    "b": (
        ("", 256, 8, (), 1000, None, "window8_256", ""),
        ("_w16", 256, 16, (), 1000, None, "window16_256", ""),
        ("_192", 192, 12, (), 21841, 0.2, "window12_192", "window12_192_22k"),
        ("_192to256", 256, 16, (12, 12, 12, 6), 1000, 0.2, "window12to16_192to256", "window12to16_192to256_22kft1k"),
        ("_192to384", 384, 24, (12, 12, 12, 6), 1000, 0.2, "window12to24_192to384", "window12to24_192to384_22kft1k"),
    ),
    "l": (
        ("_192", 192, 12, (), 21841, 0.2, "window12_192", "window12_192_22k"),
        ("_192to256", 256, 16, (12, 12, 12, 6), 1000, 0.2, "window12to16_192to256", "window12to16_192to256_22kft1k"),
        ("_192to384", 384, 24, (12, 12, 12, 6), 1000, 0.2, "window12to24_192to384", "window12to24_192to384_22kft1k"),
    ),
}


def _build_v2_variants() -> tuple[dict[str, SwinConfig], dict[str, str]]:
    """Swin V2: the same sizes as V1 with V2 blocks; names ``swinv2_{t,s,b,l}[suffix]``, timm's as aliases."""
    variants: dict[str, SwinConfig] = {}
    aliases: dict[str, str] = {}
    for size, releases in _V2_RELEASES.items():
        for suffix, img_size, window, pretrained, classes, drop_path, timm_suffix, deprecated in releases:
            name = f"swinv2_{size}{suffix}"
            fields = dict(_SIZES[size]) | ({"drop_path_rate": drop_path} if drop_path is not None else {})
            variants[name] = SwinConfig(
                img_size=img_size,
                window_size=window,
                num_classes=classes,
                version=2,
                pretrained_window_sizes=pretrained,
                **fields,  # type: ignore[arg-type]
            )
            aliases[f"swinv2_{_LONG_NAMES[size]}_{timm_suffix}"] = name
            if deprecated:
                aliases[f"swinv2_{_LONG_NAMES[size]}_{deprecated}"] = name
    return variants, aliases


_V2_VARIANTS, _V2_ALIASES = _build_v2_variants()
_VARIANTS.update(_V2_VARIANTS)
_ALIASES.update(_V2_ALIASES)

#: The registered variants by canonical name (read-only).
VARIANTS: Mapping[str, SwinConfig] = MappingProxyType(_VARIANTS)
#: timm-style names mapped to canonical ones (read-only).
ALIASES: Mapping[str, str] = MappingProxyType(_ALIASES)
#: The compact ladder for small images, smallest first (names in :data:`VARIANTS`).
COMPACT: tuple[str, ...] = tuple(_COMPACT)


#: Models of the other tasks (segmenters, detectors, masked-image models) by name, each a builder
#: taking config overrides; filled by :func:`register_task_model` from the modules that define them.
_TASK_MODELS: dict[str, Callable[..., nn.Module]] = {}
#: The task models by name (read-only view).
TASK_MODELS: Mapping[str, Callable[..., nn.Module]] = MappingProxyType(_TASK_MODELS)


def register_task_model(name: str, builder: Callable[..., nn.Module]) -> None:
    """Register a model of another task (``upernet_swin_t``, ...) under ``name`` for :func:`create_model`.

    ``builder(**overrides)`` returns the model; a name already taken by a classifier variant,
    an alias or another task model raises ValueError.
    """
    if name in VARIANTS or name in ALIASES or name in _TASK_MODELS:
        raise ValueError(f"model name {name!r} is already registered")
    _TASK_MODELS[name] = builder


def list_models(include_aliases: bool = False) -> list[str]:
    """Names accepted by :func:`create_model`: the canonical ones, plus timm's with ``include_aliases``."""
    names = list(VARIANTS)
    return names + list(ALIASES) if include_aliases else names


def get_config(name: str, **overrides: object) -> SwinConfig:
    """The config of a registered variant, with any fields overridden.

    Raises ValueError for an unknown name (listing close matches and the known names) or
    an unknown or impossible field.
    """
    canonical = ALIASES.get(name, name)
    if canonical not in VARIANTS:
        known = list_models(include_aliases=True)
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown model {name!r}.{hint} Known models: {', '.join(list_models())} (and timm-style aliases {', '.join(ALIASES)})"
        )
    return VARIANTS[canonical].replace(**overrides) if overrides else VARIANTS[canonical]


def create_model(name: str, device: torch.device | str | None = None, **overrides: object) -> SwinTransformer:
    """Build a registered variant by name, e.g. ``create_model("swin_t", num_classes=10)``.

    ``overrides`` replace any :class:`SwinConfig` field (``num_classes``, ``img_size``,
    ``window_size``, ``in_chans``, ``drop_path_rate``, ``stem="conv"`` for a small-data stem, ...).
    ``device="meta"`` builds without allocating memory.
    """
    with torch.device(device) if device is not None else contextlib.nullcontext():
        if name in _TASK_MODELS:
            return _TASK_MODELS[name](**overrides)
        return SwinTransformer(get_config(name, **overrides))
