"""swinkit: the Swin Transformer (Liu et al., ICCV 2021), faithful to its references.

Build a variant with :func:`create_model` (from any checkpoint with ``pretrained=``), list
them with :func:`list_models`, count their FLOPs with :func:`count_flops`, load weights with
:func:`load_checkpoint` and save them for swinkit, Hugging Face or timm with :func:`save_pretrained`.
Semantic segmentation: ``create_model("upernet_swin_t", num_classes=150)`` builds a :class:`SwinUperNet`;
:func:`load_segmenter` and :func:`save_segmenter` read and write the segmenter checkpoints people have.
"""

from swinkit.checkpoints import create_model, load_checkpoint, load_segmenter, save_pretrained, save_segmenter
from swinkit.model import SegmenterConfig, SwinConfig, SwinTransformer, SwinUperNet, get_config, list_models
from swinkit.model.flops import FlopCount, count_flops

__version__ = "0.1.0"

__all__ = [
    "FlopCount",
    "SegmenterConfig",
    "SwinConfig",
    "SwinTransformer",
    "SwinUperNet",
    "count_flops",
    "create_model",
    "get_config",
    "list_models",
    "load_checkpoint",
    "load_segmenter",
    "save_pretrained",
    "save_segmenter",
]
