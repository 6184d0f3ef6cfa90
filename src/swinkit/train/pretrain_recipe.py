"""The recipes of SimMIM pre-training (``swinkit pretrain``): the official schedule, and one chosen from the data.

``imagenet`` is the official Swin-B schedule of ImageNet-1k pre-training (the brief's "Pre-training recipe"): SimMIM on
Swin-B at 192 pixels with window 6, AdamW with weight decay 0.05, base learning rate 2e-4
per 512 images scaled linearly with the batch, 10 warm-up epochs then cosine to 1e-5 over
100 epochs, gradient clipping at 5, RandomResizedCrop of area 0.67-1 and flips.

``auto`` (the default) chooses from the unlabelled images as the classification recipe
does (:mod:`swinkit.train.recipe`): the input size, patch and window from the images' size,
a rung of the compact ladder by their number (stepped down when too few epochs fit in the
time), the batch and learning rate, the channels and normalisation measured on them; and
the mask: mask patches a multiple of the model's total stride, about a 6x6 grid of them as
the official 32 pixels at 192 (:func:`swinkit.model.simmim.choose_mask_patch`), 60% masked.
The schedule is the official one's (AdamW, weight decay 0.05, clip 5, cosine with warm-up),
with the epochs from the time budget.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

from swinkit.data.profile import DataProfile
from swinkit.model import create_model
from swinkit.model.simmim import MASK_RATIO, choose_mask_patch
from swinkit.train import recipe
from swinkit.train.config import TrainConfig
from swinkit.train.recipe import Candidate, Choice

#: The recipes of ``swinkit pretrain --recipe``; the first is the default.
RECIPES = ("auto", "imagenet")
#: Settings pre-training does not use, fixed so that no classification default applies.
_NO_CLASSIFICATION = {
    "label_smoothing": 0.0,
    "auto_augment": "none",
    "re_prob": 0.0,
    "mixup": 0.0,
    "cutmix": 0.0,
    "layer_decay": 1.0,
    "crop_pct": 1.0,
}
#: The augmentation of the official pre-training: resized crops of area 0.67-1 (ratio 3/4-4/3), flips.
_AUGMENT = {"crop": "resized", "scale": (0.67, 1.0), "hflip": 0.5}
#: The official SimMIM Swin-B schedule (``simmim_pretrain__swin_base__img192_window6__100ep``).
OFFICIAL = MappingProxyType(
    {
        "model": "simmim_swin_b",
        "img_size": 192,
        "epochs": 100,
        "batch_size": 128,
        "accum_steps": 1,
        "lr": 2e-4,
        "lr_base_batch": 512,
        "min_lr": 1e-5,
        "warmup_epochs": 10.0,
        "weight_decay": 0.05,
        "clip_grad": 5.0,
        **_AUGMENT,
        **_NO_CLASSIFICATION,
    }
)
#: What ``auto`` fixes whatever the data: the official optimiser, clipping and augmentation.
AUTO_FIXED = MappingProxyType(
    {
        "accum_steps": 1,
        "lr_base_batch": 0,
        "min_lr": 1e-5,
        "weight_decay": 0.05,
        "clip_grad": 5.0,
        **_AUGMENT,
        **_NO_CLASSIFICATION,
    }
)


@dataclasses.dataclass(frozen=True)
class MaskSettings:
    """The mask of a run: ``mask_patch`` pixels (None: chosen from the input size) and the masked ``ratio``."""

    mask_patch: int | None = None
    ratio: float = MASK_RATIO


def from_data(
    config: TrainConfig, profile: DataProfile, mask: MaskSettings
) -> tuple[TrainConfig, list[Choice], list[Candidate]]:
    """Fill the settings of ``config`` the unlabelled images decide; the choices to print, the mask's among them.

    Returns the config, the choices, and the cheaper models to step down to (empty when
    ``--model`` names one or its shape is set by hand). A mask patch not given in ``mask``
    is the one :func:`~swinkit.model.simmim.choose_mask_patch` gives for the model's stride
    (again for a model stepped down to).
    """
    choices: list[Choice] = []
    overrides = dict(config.model_overrides)
    changes: dict[str, object] = {}
    described = (
        f"{profile.count:,} unlabelled images, typically {profile.height}x{profile.width}, "
        f"{'grey' if profile.channels == 1 else 'colour'}"
    )
    choices.append(Choice("recipe", "auto", f"chosen from the data: {described}", "--recipe imagenet"))
    named = create_model(config.model, device="meta").config if config.model else None
    patch = overrides.get("patch_size") or (named.patch_size if named else None)
    window = overrides.get("window_size") or (named.window_size if named else None)
    depths = overrides.get("depths") or (named.depths if named else None)
    side = config.img_size if config.img_size is not None else profile.side
    geometry = recipe.choose_geometry(
        side, patch=patch, window=window, stages=len(depths) if depths else None, fixed_size=config.img_size is not None
    )
    stride = geometry.patch * 2 ** (geometry.stages - 1)
    if config.img_size is None:
        changes["img_size"] = geometry.img_size
        why = (
            "the images' own size" if geometry.img_size == profile.side else f"the images ({profile.side} px) rounded"
        ) + f": patch {geometry.patch} and window {geometry.window} tile every stage, a multiple of the stride {stride}"
        choices.append(Choice("input size", f"{geometry.img_size}x{geometry.img_size}", why, "--img-size"))
    if not named:
        overrides.setdefault("patch_size", geometry.patch)
        overrides.setdefault("window_size", geometry.window)
    maps = ", ".join(f"{side}x{side}" for side in geometry.maps)
    choices.append(
        Choice("patch, window", f"{geometry.patch}, {geometry.window}", f"token maps {maps}", "--set patch_size=P")
    )
    choices += recipe.choose_channels(config, profile, overrides, changes)
    candidates: list[Candidate] = []
    if config.model is None:
        rung, candidates = recipe.choose_ladder_model(config, profile, geometry, overrides, changes)
        choices.append(
            Choice("model", f"SimMIM on {rung}", f"{profile.count:,} images (the ladder of `train`)", "--model")
        )
    if config.batch_size is None:
        changes["batch_size"] = recipe.choose_batch(profile.count)
        why = "about 1/40 of the images, 16 to 128"
        choices.append(Choice("batch", str(changes["batch_size"]), why, "--batch-size"))
    if config.lr is None:
        changes["lr"] = recipe.choose_lr(changes.get("batch_size", config.batch_size))  # type: ignore[arg-type]
        choices.append(
            Choice(
                "learning rate",
                f"{changes['lr']:.2e}",
                "the compact ladder's rate from scratch; AdamW, weight decay 0.05, cosine to 1e-5, clip 5",
                "--lr",
            )
        )
    config = dataclasses.replace(config, model_overrides=overrides, **changes)
    if mask.mask_patch is None:
        img_size = config.img_size or geometry.img_size
        patch = choose_mask_patch(img_size, stride)  # type: ignore[arg-type]
        grid = img_size // patch  # type: ignore[operator]
        why = f"a multiple of the stride {stride} giving a {grid}x{grid} grid, near the official 6x6 (32 px at 192)"
        choices.append(Choice("mask patch", f"{patch} px", why, "--mask-patch"))
    why = "the official ratio" if mask.ratio == MASK_RATIO else "given"
    choices.append(Choice("mask ratio", f"{mask.ratio:g}", why, "--mask-ratio"))
    return config, choices, candidates
