"""Checkpoints: load the Swin weights people already have, and save them back for other libraries.

Formats understood (detected from the keys, or named with ``format=``): ``native``
(swinkit), ``official`` (the Swin repository, and timm before 0.9), ``timm``, ``hf``
(Hugging Face transformers, legacy and transformers-5 names) and ``torchvision``, each for
Swin V1 and Swin V2 (told apart by the V2 attention's ``logit_scale``). Sources: a
file (``.safetensors``, ``.pth``, ``.pt``, ``.bin``), a Hugging Face / timm / swinkit
directory, a swinkit run directory, or a Hub id. Pickles are read with
``torch.load(weights_only=True)``; saving always writes safetensors. Segmenters (Swin
UperNet: swinkit's, transformers', mmsegmentation's) are read by :func:`load_segmenter` (and
:func:`create_model`) and saved by :func:`save_segmenter`. SimMIM pre-training checkpoints
(swinkit, official and transformers layouts) are read too: a classifier takes their encoder, and :func:`create_simmim` / :func:`load_simmim` the whole pre-training model.
"""

from swinkit.checkpoints.errors import CheckpointError, UnsafeCheckpointError
from swinkit.checkpoints.formats import FORMATS, SAVE_FORMATS, detect_format
from swinkit.checkpoints.loading import (
    Checkpoint,
    LoadReport,
    create_classifier,
    load_checkpoint,
    read_checkpoint,
    read_state_dict,
    resize_relative_position_bias,
)
from swinkit.preprocessing import Preprocessing
from swinkit.checkpoints.factory import create_model
from swinkit.checkpoints.saving import save_pretrained
from swinkit.checkpoints.segmentation import is_segmenter_checkpoint, load_segmenter, save_segmenter
from swinkit.checkpoints.simmim import create_simmim, load_simmim, save_simmim

__all__ = [
    "FORMATS",
    "SAVE_FORMATS",
    "Checkpoint",
    "CheckpointError",
    "LoadReport",
    "Preprocessing",
    "UnsafeCheckpointError",
    "create_classifier",
    "create_model",
    "create_simmim",
    "detect_format",
    "is_segmenter_checkpoint",
    "load_checkpoint",
    "load_segmenter",
    "load_simmim",
    "read_checkpoint",
    "read_state_dict",
    "resize_relative_position_bias",
    "save_pretrained",
    "save_segmenter",
    "save_simmim",
]
