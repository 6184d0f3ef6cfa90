"""swinkit: the Swin Transformer (Liu et al., ICCV 2021), faithful to its references.

Build a variant with :func:`create_model`, list them with :func:`list_models`, count
their FLOPs with :func:`count_flops`.
"""

from swinkit.model import SwinConfig, SwinTransformer, create_model, get_config, list_models
from swinkit.model.flops import FlopCount, count_flops

__version__ = "0.1.0"

__all__ = [
    "FlopCount",
    "SwinConfig",
    "SwinTransformer",
    "count_flops",
    "create_model",
    "get_config",
    "list_models",
]
