"""The Swin model: pure PyTorch, no I/O."""

from swinkit.model.registry import ALIASES, COMPACT, VARIANTS, create_model, get_config, list_models
from swinkit.model.swin import SwinConfig, SwinTransformer
from swinkit.model.upernet import SegmenterConfig, SwinUperNet, create_segmenter, segmentation_loss

__all__ = [
    "ALIASES",
    "COMPACT",
    "VARIANTS",
    "SegmenterConfig",
    "SwinConfig",
    "SwinTransformer",
    "SwinUperNet",
    "create_model",
    "create_segmenter",
    "get_config",
    "list_models",
    "segmentation_loss",
]
