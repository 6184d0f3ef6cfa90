"""Where SimMIM checkpoints keep the mask token and the decoder, in each layout, and taking them out.

- swinkit: ``encoder.*`` (swinkit's Swin names), ``mask_token``, ``decoder.proj.{weight,bias}``;
- official (microsoft/SimMIM, ``{'model': ...}``): ``encoder.*`` (official Swin names),
  ``encoder.mask_token``, ``decoder.0.{weight,bias}``;
- Hugging Face (``SwinForMaskedImageModeling``, ``Swinv2ForMaskedImageModeling``): ``swin.*`` /
  ``swinv2.*`` (its Swin names), ``swin.embeddings.mask_token`` / ``swinv2.embeddings.mask_token``,
  ``decoder.0.{weight,bias}``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

#: SimMIM's own parameters under swinkit's names.
MASK_TOKEN = "mask_token"
DECODER = "decoder.proj"
#: Foreign name -> swinkit name of SimMIM's own parameters (prefixes for the decoder).
_MASK_TOKENS = {
    "mask_token": MASK_TOKEN,
    "encoder.mask_token": MASK_TOKEN,
    "swin.embeddings.mask_token": MASK_TOKEN,
    "swinv2.embeddings.mask_token": MASK_TOKEN,
    "embeddings.mask_token": MASK_TOKEN,
}
_DECODERS = {"decoder.0.": DECODER + ".", "decoder.proj.": DECODER + "."}
#: The prefix of the encoder in the swinkit and official layouts.
ENCODER = "encoder."


def split_pretraining(raw: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Separate SimMIM's mask token and decoder from the encoder in a raw state dict of any layout.

    Returns the encoder's tensors (without the ``encoder.`` prefix of the swinkit and official
    layouts) and SimMIM's own under swinkit's names (``mask_token``, ``decoder.proj.*``); the
    second is empty, and the first ``raw`` as it is, for a checkpoint that is not SimMIM's.
    """
    pretraining: dict[str, torch.Tensor] = {}
    rest: dict[str, torch.Tensor] = {}
    for key, tensor in raw.items():
        native = _MASK_TOKENS.get(key) or next(
            (ours + key[len(theirs) :] for theirs, ours in _DECODERS.items() if key.startswith(theirs)), None
        )
        if native is None:
            rest[key] = tensor
        else:
            pretraining[native] = tensor
    if pretraining and rest and all(key.startswith(ENCODER) for key in rest):
        rest = {key.removeprefix(ENCODER): tensor for key, tensor in rest.items()}
    return (rest, pretraining) if pretraining else (dict(raw), {})
