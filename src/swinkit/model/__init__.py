"""The Swin model: pure PyTorch, no I/O."""

from swinkit.model.registry import ALIASES, COMPACT, VARIANTS, create_model, get_config, list_models
from swinkit.model.swin import SwinConfig, SwinTransformer
from swinkit.model import detection  # noqa: F401  (registers the detectors with create_model)

__all__ = [
    "ALIASES",
    "COMPACT",
    "VARIANTS",
    "SwinConfig",
    "SwinTransformer",
    "create_model",
    "get_config",
    "list_models",
]
