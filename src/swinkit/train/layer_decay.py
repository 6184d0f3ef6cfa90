"""Layer-wise learning-rate decay as the official SimMIM fine-tuning applies it to Swin.

Each parameter gets a layer id: 0 for the patch embedding (and a mask token), ``1..N`` for
the ``N`` blocks numbered over all stages, a patch merging the id of the last block before
it (the official code keeps merging at the end of a stage), and ``N + 1`` for the final norm
and the head. Its learning rate is the base rate times ``decay^(N + 1 - id)``: the head
trains at the full rate and each block below it at ``decay`` times the one above.
:func:`swinkit.train.optim.parameter_groups` builds the AdamW groups from these ids.
"""

from __future__ import annotations

from collections.abc import Sequence

from swinkit.model import SwinConfig

#: The official fine-tuning decays (SimMIM's configs), by (Swin version, embedding width):
#: Swin-B 0.9 (after 100 epochs of pre-training; 0.8 after 800), Swin-L 0.7, SwinV2-B 0.75.
OFFICIAL_LAYER_DECAY = {(1, 128): 0.9, (1, 192): 0.7, (2, 128): 0.75}
#: For the sizes without an official value (Swin-T/S, the compact ladder, other V2 sizes): Swin-B's
#: 0.9 for Swin, SwinV2-B's 0.75 for Swin V2. The shallower models decay less over their depth
#: with it (0.9^13 = 0.25 at Swin-T's embedding, 0.9^7 = 0.48 at swin_atto's, 0.9^25 = 0.07 at Swin-B's).
FALLBACK_LAYER_DECAY = {1: 0.9, 2: 0.75}
#: Parameters that sit with the patch embedding (id 0).
_EMBEDDING = ("patch_embed.", "mask_token")


def default_layer_decay(config: SwinConfig) -> float:
    """The layer decay to fine-tune a model of ``config`` with: the official value of its size, else the fallback."""
    return OFFICIAL_LAYER_DECAY.get((config.version, config.embed_dim), FALLBACK_LAYER_DECAY[config.version])


def num_layer_ids(depths: Sequence[int]) -> int:
    """How many layer ids a Swin of these depths has: the embedding, one per block, the head (``N + 2``)."""
    return sum(depths) + 2


def layer_id(name: str, depths: Sequence[int]) -> int:
    """The official layer id of a parameter, by its swinkit name (``stages.{s}.blocks.{b}...``).

    ``patch_embed.*`` and ``mask_token``: 0; block ``b`` of stage ``s``: ``sum(depths[:s]) + b + 1``;
    ``stages.{s}.downsample.*`` (the merging before stage ``s``): ``sum(depths[:s])``, the id of
    stage ``s - 1``'s last block; anything else (final norm, head): ``sum(depths) + 1``.
    """
    if name.startswith(_EMBEDDING):
        return 0
    parts = name.split(".")
    if parts[0] == "stages" and len(parts) > 3:
        first = sum(depths[: int(parts[1])])
        return first + int(parts[3]) + 1 if parts[2] == "blocks" else first
    return num_layer_ids(depths) - 1


def lr_scale(layer: int, depths: Sequence[int], decay: float) -> float:
    """The factor on the base learning rate at ``layer``: ``decay^(N + 1 - layer)``."""
    return decay ** (num_layer_ids(depths) - 1 - layer)
