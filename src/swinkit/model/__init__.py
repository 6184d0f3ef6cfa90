"""The Swin model: pure PyTorch, no I/O."""

from swinkit.model.registry import ALIASES, COMPACT, VARIANTS, create_model, get_config, list_models
from swinkit.model.swin import SwinConfig, SwinTransformer
from swinkit.model.simmim import MaskGenerator, SimMIM

__all__ = [
    "ALIASES",
    "COMPACT",
    "MaskGenerator",
    "SimMIM",
    "VARIANTS",
    "SwinConfig",
    "SwinTransformer",
    "create_model",
    "get_config",
    "list_models",
]
