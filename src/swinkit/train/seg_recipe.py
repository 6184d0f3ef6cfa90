"""The segmentation recipe chosen from the data: each setting a function of the measured pairs, printed with its reason.

From scratch (the default) the backbone is a rung of the compact ladder sized by the number
of images, the crop follows the images' own size, and the optimiser is the classification
recipe's AdamW with a cosine schedule. From pretrained weights the setting is the official
Swin UperNet one (ADE20K, 160k iterations of 16 images at 512 pixels): Swin-T, AdamW at
6e-5 with weight decay 0.01 (none on norms, biases and position-bias tables), a linear
warm-up of 1,500 of the 160,000 iterations (scaled to the run's length) and a poly decay of
power 1 to zero (:class:`~swinkit.train.optim.WarmupPoly`). Both use mmsegmentation's augmentation: rescale
0.5-2.0, crops where no class covers 75% or more, flips and photometric distortion.

:func:`choose_recipe` fills what the data decides before the steps are timed;
:func:`after_timing` sets the epochs (from ``--time``) and the warm-up.
"""

from __future__ import annotations

import dataclasses
import math

from swinkit.data.seg_transforms import SegAugment
from swinkit.data.segmentation import SegmentationProfile
from swinkit.model import COMPACT, get_config
from swinkit.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from swinkit.train.recipe import Candidate, Choice, choose_geometry, choose_lr, choose_warmup, step_down_candidates

#: Images from which each compact rung is chosen: a mask labels every pixel, so a segmentation
#: image teaches more than a class label and the ladder climbs at a tenth of classification's counts.
RUNG_FROM_IMAGES: dict[str, int] = {"swin_atto": 0, "swin_femto": 100, "swin_pico": 1000, "swin_nano": 4000}
#: The official crop, and the smallest the recipe takes from pretrained weights (stage 4 at 4x4 tokens).
OFFICIAL_CROP = 512
MIN_PRETRAINED_CROP = 128
#: The official run: iterations, images per iteration, warm-up iterations, learning rate, weight decay.
OFFICIAL_ITERATIONS = 160_000
OFFICIAL_BATCH = 16
OFFICIAL_WARMUP = 1_500
OFFICIAL_LR = 6e-5
OFFICIAL_WEIGHT_DECAY = 0.01
#: Weight decay from scratch (the classification recipe's).
SCRATCH_WEIGHT_DECAY = 0.05
#: The official UperNet head width (for Swin-T's 96 channels) and its auxiliary head's.
OFFICIAL_HEAD = 512
OFFICIAL_AUX_HEAD = 256
#: Batch bounds: two or more images keep the head's BatchNorm defined (its 1x1 pooled map).
MIN_BATCH = 4
MAX_BATCH = 16


@dataclasses.dataclass(frozen=True)
class SegRecipe:
    """What :func:`choose_recipe` decided.

    ``backbone`` is a registered Swin name (None: the pretrained checkpoint's) with
    ``overrides`` (patch, window, depths, heads, channels) from scratch; ``head`` and
    ``aux_head`` the widths of the UperNet and auxiliary heads; ``crop`` the training crop
    side, also the shorter side images are rescaled to before the random ratio (as
    mmsegmentation's 512 for 512 crops); ``schedule`` ``"poly"`` (official, pretrained) or
    ``"cosine"``; ``candidates`` the cheaper backbones to step down to when too few epochs fit
    in the time. ``epochs`` and ``warmup_epochs`` are None until
    :func:`after_timing`.
    """

    backbone: str | None
    overrides: dict[str, object]
    head: int
    aux_head: int
    pretrained: bool
    crop: int
    batch: int
    lr: float
    weight_decay: float
    schedule: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: SegAugment
    candidates: tuple[Candidate, ...] = ()
    epochs: int | None = None
    warmup_epochs: float | None = None


def choose_rung(count: int) -> tuple[str, str]:
    """The compact backbone for ``count`` training images (from scratch), and why."""
    chosen = COMPACT[0]
    for name in COMPACT:
        if count >= RUNG_FROM_IMAGES[name]:
            chosen = name
    limits = ", ".join(f"{name} from {RUNG_FROM_IMAGES[name]:,}" for name in COMPACT)
    return chosen, f"{count:,} training images (ladder: {limits}; every pixel is labelled)"


def choose_head(backbone: str | None, pretrained: bool) -> tuple[int, int, str]:
    """The widths of the UperNet head and of the auxiliary head, and why.

    Pretrained: the official 512 and 256. From scratch: the official ratio to Swin-T's 96
    channels (512 / 96, in multiples of 16) applied to the backbone's embedding width, the
    auxiliary head half of it, so that the head does not outweigh a compact backbone.
    """
    if pretrained or backbone is None:
        return OFFICIAL_HEAD, OFFICIAL_AUX_HEAD, "the official widths"
    width = get_config(backbone).embed_dim
    head = 16 * max(1, round(width / 3))
    return head, head // 2, f"the official 512 for Swin-T's 96 channels, scaled to {backbone}'s {width}"


def choose_crop(short_side: int, pretrained: bool) -> tuple[int, str]:
    """The square training crop for images whose typical shorter side is ``short_side``, and why.

    From scratch: the side itself, rounded so that the backbone's patches and windows tile
    every stage (:func:`~swinkit.train.recipe.choose_geometry`, at most 224). Pretrained: the
    official 512, or the side rounded to a multiple of 32 when the images are smaller (at
    least :data:`MIN_PRETRAINED_CROP`).
    """
    if pretrained:
        if short_side >= OFFICIAL_CROP:
            return OFFICIAL_CROP, "the official crop (images rescaled to a shorter side of 512 first)"
        side = 32 * round(short_side / 32)
        if side < MIN_PRETRAINED_CROP:
            return MIN_PRETRAINED_CROP, (
                f"the smallest that leaves Swin-T's last stage 4x4 tokens; the images ({short_side} px) are enlarged"
            )
        return side, f"the images' shorter side ({short_side} px) to a multiple of 32, below the official 512"
    geometry = choose_geometry(short_side)
    if geometry.img_size == short_side:
        return geometry.img_size, "the images' shorter side; patches and windows tile every stage"
    return geometry.img_size, (
        f"the images' shorter side ({short_side} px) rounded so that patch {geometry.patch} and window "
        f"{geometry.window} tile every stage (at most 224 from scratch)"
    )


def choose_batch(count: int, pretrained: bool) -> tuple[int, str]:
    """Images per step, and why: the official 16 when pretrained, else about 1/20 of the images (4 to 16)."""
    if pretrained:
        batch = max(MIN_BATCH, min(OFFICIAL_BATCH, 2 ** int(math.log2(max(1, count // 4)))))
        why = "the official 16" if batch == OFFICIAL_BATCH else "the official 16, cut to a quarter of the images"
        return batch, why
    batch = max(MIN_BATCH, min(MAX_BATCH, 2 ** int(math.log2(max(1, count // 20)))))
    return batch, f"about 1/20 of the {count:,} images as a power of two, from {MIN_BATCH} to {MAX_BATCH}"


def choose_seg_lr(batch: int, pretrained: bool) -> tuple[float, str]:
    """The AdamW peak learning rate for ``batch``, and why."""
    if pretrained:
        lr = OFFICIAL_LR * math.sqrt(batch / OFFICIAL_BATCH)
        return lr, "the official 6e-5 at 16 images (x sqrt(batch/16)); weight decay 0.01, poly decay to 0"
    return choose_lr(batch), "from scratch: 2e-3 from batch 32 (x sqrt(batch/32) below); weight decay 0.05, cosine"


def choose_recipe(
    profile: SegmentationProfile,
    *,
    pretrained: bool = False,
    crop: int | None = None,
    batch: int | None = None,
    lr: float | None = None,
    backbone: str | None = None,
    head: int | None = None,
) -> tuple[SegRecipe, list[Choice]]:
    """The recipe for the training pairs ``profile`` describes; the settings given are kept and reported as given.

    Returns the recipe and the lines to print (:class:`~swinkit.train.recipe.Choice`).
    Epochs and warm-up come later, from :func:`after_timing`.
    """
    described = (
        f"{profile.count:,} training images of {profile.num_classes} classes ({profile.present} present), typically "
        f"{profile.height}x{profile.width}, {'grey' if profile.channels == 1 else 'colour'}"
    )
    start = "pretrained weights" if pretrained else "from scratch"
    choices = [Choice("recipe", "auto", f"{start}, chosen from the data: {described}", "--pretrained")]

    crop_why = "given"
    if crop is None:
        crop, crop_why = choose_crop(profile.short_side, pretrained)
    choices.append(Choice("crop", f"{crop}x{crop}", crop_why, "--img-size"))
    choices.append(
        Choice(
            "rescale",
            f"{round(crop / 2)}-{crop * 2} px",
            "shorter side to the crop times 0.5-2.0, then random crops where no class covers 75% (mmsegmentation's)",
            "--img-size",
        )
    )

    overrides: dict[str, object] = {}
    candidates: tuple[Candidate, ...] = ()
    if backbone is not None:
        if not pretrained:
            overrides = {"in_chans": profile.channels}
        choices.append(Choice("backbone", backbone, "given", "--model"))
    elif pretrained:
        why = "pretrained weights (the official setting: Swin-T)"
        choices.append(Choice("backbone", "the checkpoint's", why, "--model"))
    else:
        backbone, why = choose_rung(profile.count)
        geometry = choose_geometry(crop, fixed_size=True)
        found = step_down_candidates(backbone, geometry, profile.channels)
        overrides = {**found[0].overrides, "in_chans": profile.channels}
        candidates = tuple(found[1:])
        why += f"; patch {geometry.patch}, window {geometry.window}, {geometry.stages} stages"
        choices.append(Choice("backbone", backbone, why, "--model"))
    chosen_head, aux_head, head_why = choose_head(backbone, pretrained)
    if head is not None:
        chosen_head, aux_head, head_why = head, head // 2, "given"
    head = chosen_head
    choices.append(Choice("head", f"{head}, auxiliary {aux_head}", head_why, "--set channels=C --set aux_channels=C"))

    if pretrained:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
        norm_why = "ImageNet's, as the pretrained weights were trained (grey images read as RGB)"
    else:
        mean, std = profile.mean, profile.std
        norm_why = f"measured on the training images ({'grey' if profile.channels == 1 else 'colour'})"
    values = f"mean {', '.join(f'{v:.3f}' for v in mean)}, std {', '.join(f'{v:.3f}' for v in std)}"
    choices.append(Choice("normalise", values, norm_why, "--mean --std"))

    batch_why = "given"
    if batch is None:
        batch, batch_why = choose_batch(profile.count, pretrained)
    choices.append(Choice("batch", str(batch), batch_why, "--batch-size"))
    lr_why = "given"
    if lr is None:
        lr, lr_why = choose_seg_lr(batch, pretrained)
    choices.append(Choice("learning rate", f"{lr:.2e}", lr_why, "--lr"))
    choices.append(
        Choice("augment", "scale, crop, flip, colour", "mmsegmentation's; mirrored scenes keep classes", "--hflip")
    )
    recipe = SegRecipe(
        backbone=backbone,
        overrides=overrides,
        head=head,
        aux_head=aux_head,
        pretrained=pretrained,
        crop=crop,
        batch=batch,
        lr=lr,
        weight_decay=OFFICIAL_WEIGHT_DECAY if pretrained else SCRATCH_WEIGHT_DECAY,
        schedule="poly" if pretrained else "cosine",
        mean=tuple(mean),
        std=tuple(std),
        augment=SegAugment(),
        candidates=candidates,
    )
    return recipe, choices


def after_timing(recipe: SegRecipe, epochs: int, steps_per_epoch: int, reason: str) -> tuple[SegRecipe, list[Choice]]:
    """Set ``epochs`` (chosen for ``reason``, e.g. what fits in ``--time``) and the warm-up that goes with them.

    Pretrained: the official 1,500 of 160,000 iterations, scaled to the run's steps (at least
    one step). From scratch: the classification recipe's (5% of the run, at least 100 steps,
    at most a fifth).
    """
    if recipe.pretrained:
        steps = max(1, round(OFFICIAL_WARMUP * epochs * steps_per_epoch / OFFICIAL_ITERATIONS))
        warmup = round(steps / max(1, steps_per_epoch), 3)
        why = f"{steps} steps: the official 1,500 of 160,000 iterations, scaled to {epochs * steps_per_epoch:,} steps"
    else:
        warmup = choose_warmup(epochs, steps_per_epoch)
        why = "5% of the run, at least 100 steps, at most a fifth"
    decay = "power 1, to 0 (official)" if recipe.pretrained else "to 1e-5"
    choices = [
        Choice("epochs", str(epochs), reason, "--epochs, --time"),
        Choice("warm-up", f"{warmup:g} epochs", why, "--warmup-epochs"),
        Choice("schedule", recipe.schedule, decay, "--schedule"),
    ]
    return dataclasses.replace(recipe, epochs=epochs, warmup_epochs=warmup), choices
