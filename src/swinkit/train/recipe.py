"""The recipe chosen from the data (``--recipe auto``): training from scratch on small images.

Each choice is a small function of the measured data (:class:`~swinkit.data.profile.DataProfile`)
that returns its value and the reason, printed one line each before training; a setting
the user gave is kept and reported as theirs. In order:

1. **geometry**: the input size (the images' own size, rounded so that patch and window
   tile every stage), the patch, the window and the number of stages
   (:func:`choose_geometry`);
2. **channels and normalisation**: grey or colour, mean and std measured on the images;
3. **model**: a rung of the compact ladder (:data:`swinkit.model.COMPACT`) by the number of
   images (:func:`choose_rung`), with the stages the geometry wants; stepped down later, to
   smaller rungs and then to patches twice as large, when too few epochs of it fit in the
   time budget (:data:`MIN_EPOCHS`, :func:`step_down_candidates`);
4. **batch and learning rate** from the number of images (:func:`choose_batch`, :func:`choose_lr`);
5. **crop and flip**: pad-and-crop for small inputs, resized crops for larger ones;
   horizontal flips only when mirroring keeps the classes (:class:`~swinkit.data.profile.MirrorTest`);
6. **stem**: the overlapping convolutional stem for inputs of at most
   :data:`CONV_STEM_UP_TO` pixels, else the paper's patch embedding (:func:`choose_stem`);
7. after the steps are timed, **epochs** (as many as fit in the budget, at most
   :data:`MAX_EPOCHS`) and **warm-up**; then, from the images a class and the size of the
   model finally chosen, how far the crops go, **RandAugment, mixing, erasing, label
   smoothing and drop-path** (:func:`choose_regularisation`): light for few images a class
   whatever the number of passes, and light too for a run of few epochs; before the timing, the
   loop asks :func:`choose_epoch_repeats` how many passes over a small set make an epoch;
8. **EMA** of the weights (``--ema auto``), by the loop once the steps are known (:func:`choose_ema`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from swinkit.data.profile import DataProfile
from swinkit.model import COMPACT, create_model, get_config
from swinkit.model.flops import count_flops
from swinkit.train.config import TrainConfig

#: Images from which each rung of the ladder is chosen (fewer than the next rung's count).
RUNG_FROM_IMAGES: dict[str, int] = {"swin_atto": 0, "swin_femto": 1000, "swin_pico": 10000, "swin_nano": 40000}
#: Fewer epochs than this in the budget make the recipe try the next cheaper model: a
#: compact Swin from scratch needs a few dozen passes over a small data set.
MIN_EPOCHS = 30
#: The most epochs the recipe plans, however long the budget (the paper's 300).
MAX_EPOCHS = 300
#: The largest input side the small-image recipe uses; larger images are resized to it.
MAX_SIDE = 224
#: Windows the geometry search considers.
WINDOWS = (4, 6, 7, 8)
#: Input sizes within this relative distance of the images' size count as equally good.
SIZE_TOLERANCE = 0.15
#: Images a class below which a 1 M-parameter model gets light augmentation (:func:`choose_regularisation`).
LIGHT_BELOW = 150
#: Images a class from which a 1 M-parameter model gets the paper's augmentation.
STRONG_FROM = 1500
#: Fewer epochs than this keep the regularisation light whatever the images a class
#: (:func:`choose_regularisation`): a run that short underfits before it could overfit.
LIGHT_EPOCHS_BELOW = 30
#: Fewer epochs than this keep it at most medium.
STRONG_EPOCHS_FROM = 100
#: Training images an epoch should hold at least (and at least as many as the validation images): a smaller set
#: is passed over several times an epoch (:func:`choose_epoch_repeats`).
EPOCH_IMAGES = 800
#: The most passes over the training images one epoch makes.
MAX_REPEATS = 50
#: The largest input side (pixels) for which the recipe chooses the convolutional stem (:func:`choose_stem`).
CONV_STEM_UP_TO = 64
#: Share of the run the EMA of the weights averages over (:func:`choose_ema`).
EMA_SHARE = 0.1
#: Fewer optimiser steps than this leave the EMA off under ``--ema auto``: its window (a tenth
#: of the run) would then fall on the steep part of learning. To be settled by the small-data benchmark.
EMA_MIN_STEPS = 1000


@dataclasses.dataclass(frozen=True)
class Choice:
    """One setting of the recipe: its value, why, and the flag that sets it instead."""

    setting: str
    value: str
    reason: str
    flag: str

    def __str__(self) -> str:
        return f"  {self.setting:<13} {self.value:<24} {self.reason} [{self.flag}]"


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Input side, patch, window and stages; ``maps`` is the token-map side of each stage."""

    img_size: int
    patch: int
    window: int
    stages: int

    @property
    def maps(self) -> tuple[int, ...]:
        tokens = math.ceil(self.img_size / self.patch)
        return tuple(math.ceil(tokens / 2**stage) for stage in range(self.stages))


def default_patch(side: int) -> int:
    """1 up to 16 pixels, 2 up to 48, else 4: stage 1 gets at most about 16 tokens a side below 64 pixels."""
    return 1 if side <= 16 else 2 if side <= 48 else 4


def tiles(maps: Sequence[int], window: int, fixed_stages: bool) -> bool:
    """Whether windows of ``window`` tile every stage without padding.

    Every stage but the last must be a whole number of windows (and halve exactly); the last
    is one window or less (at least 2 tokens), or, for a model whose stages are fixed, also a
    whole number of windows.
    """
    *inner, last = maps
    if any(side % window or side % 2 for side in inner):
        return False
    return 2 <= last <= window or (fixed_stages and last % window == 0)


def choose_geometry(
    side: int,
    *,
    patch: int | None = None,
    window: int | None = None,
    stages: int | None = None,
    fixed_size: bool = False,
) -> Geometry:
    """The input side near ``side`` that patch and window tile, with the patch, window and stages.

    Given ``patch``, ``window`` or ``stages`` (a named model, or ``--set``) are kept; the
    others are searched (patch by :func:`default_patch`, windows among :data:`WINDOWS`, 2 to
    4 stages). Candidates are ranked by: size within :data:`SIZE_TOLERANCE` of ``side`` (else
    the closest), three stages, a last stage of exactly one window, the size error, the
    smaller window. Three stages even where the last map is smaller than a window (its
    window shrinks to the map, as in the paper's code): in the small-data benchmark a third
    stage of 2x2 tokens took ``swin_atto`` at patch 4 on 32x32 digits from 45% to 85% top-1
    in the same 30 seconds.
    With ``fixed_size`` the side is kept as it is (``--img-size``) and only the rest chosen;
    when nothing tiles it, window 4 and three stages are used (the model pads).
    """
    side = max(1, min(side, MAX_SIDE))
    patch = patch or default_patch(side)
    windows = (window,) if window else WINDOWS
    stage_counts = (stages,) if stages else (2, 3, 4)
    tokens = max(1, math.ceil(side / patch))
    sides = [tokens] if fixed_size else range(2, 2 * tokens + 9)
    best: tuple | None = None
    for candidate in sides:
        for size_window in windows:
            for count in stage_counts:
                geometry = Geometry(candidate * patch, patch, size_window, count)
                if not tiles(geometry.maps, size_window, fixed_stages=stages is not None):
                    continue
                error = abs(math.log(geometry.img_size / side))
                outside = error > SIZE_TOLERANCE
                last_partial = geometry.maps[-1] != size_window
                rank = (outside, error if outside else 0.0, abs(count - 3), last_partial, error, size_window)
                if best is None or rank < best[0]:
                    best = (rank, geometry)
    if best is not None:
        return best[1]
    return Geometry(side if fixed_size else tokens * patch, patch, window or 4, stages or 3)


def choose_rung(count: int) -> str:
    """The ladder rung for ``count`` training images (:data:`RUNG_FROM_IMAGES`)."""
    chosen = COMPACT[0]
    for name in COMPACT:
        if count >= RUNG_FROM_IMAGES[name]:
            chosen = name
    return chosen


def rung_overrides(name: str, stages: int) -> dict[str, object]:
    """``depths`` and ``num_heads`` of rung ``name`` with ``stages`` stages: cut, or extended by stages of 2 blocks."""
    config = get_config(name)
    depths, heads = list(config.depths), list(config.num_heads)
    while len(depths) < stages:
        depths.append(2)
        heads.append(heads[-1] * 2)
    return {"depths": tuple(depths[:stages]), "num_heads": tuple(heads[:stages])}


def choose_batch(count: int) -> int:
    """A power of two near ``count / 40`` (about 40 steps an epoch at least), between 16 and 128."""
    target = max(1, count // 40)
    return max(16, min(128, 2 ** int(math.log2(target)) if target >= 1 else 16))


def choose_lr(batch: int) -> float:
    """AdamW peak rate 2e-3 from batch 32 up, and ``2e-3 * sqrt(batch / 32)`` below."""
    return 2e-3 * min(1.0, math.sqrt(batch / 32))


def choose_warmup(epochs: int, steps_per_epoch: int) -> float:
    """Warm-up epochs: 5% of the run but at least 100 steps, and no more than a fifth of it."""
    wanted = max(0.05 * epochs, 100 / max(1, steps_per_epoch))
    return round(min(wanted, 0.2 * epochs), 2)


def capacity_scale(parameters: int) -> float:
    """How much more a model of ``parameters`` can fit than a 1 M-parameter one: ``sqrt(parameters / 1e6)``,
    between 0.5 and 4. The images-per-class limits of :func:`choose_regularisation` scale by it."""
    return min(4.0, max(0.5, math.sqrt(parameters / 1e6)))


def regularisation_level(images_per_class: float, parameters: int, epochs: int | None = None) -> str:
    """``"light"``, ``"medium"`` or ``"strong"``: the lower of the level the images a class allow a model of
    ``parameters`` and the level ``epochs`` passes allow (see :func:`choose_regularisation`)."""
    scale = capacity_scale(parameters)
    levels = ("light", "medium", "strong")
    by_data = 0 if images_per_class < LIGHT_BELOW * scale else 1 if images_per_class < STRONG_FROM * scale else 2
    by_epochs = 2 if epochs is None else 0 if epochs < LIGHT_EPOCHS_BELOW else 1 if epochs < STRONG_EPOCHS_FROM else 2
    return levels[min(by_data, by_epochs)]


def choose_regularisation(
    images_per_class: float, parameters: int, side: int, epochs: int | None = None
) -> tuple[str, dict[str, object]]:
    """Augmentation, label smoothing and drop-path for ``images_per_class`` and a model of ``parameters`` trained
    for ``epochs``; the level.

    Regularisation is tied to what the model can fit, not to how long it trains: a
    0.57 M-parameter Swin with 60 images a class underfits under the paper's augmentation
    however many passes it makes. With ``s`` the :func:`capacity_scale` of the model, below
    ``LIGHT_BELOW * s`` images a class: light (random shifts of 1/16 of the side, or resized
    crops of area 0.6-1; no RandAugment, mixing or erasing; no label smoothing; no
    drop-path); from ``STRONG_FROM * s``: the paper's (1/8 of the side or area 0.35-1,
    RandAugment m9, MixUp 0.8, CutMix 1.0, erasing 0.25, smoothing 0.1, the rung's
    drop-path); in between, medium (1/8 or 0.35-1, RandAugment 2 ops at m5, MixUp 0.2,
    smoothing 0.1, half the rung's drop-path). ``drop_path`` is a share of the model's own rate.

    A short run lowers the level whatever the data: below :data:`LIGHT_EPOCHS_BELOW` epochs
    light, below :data:`STRONG_EPOCHS_FROM` at most medium. Measured in the small-data
    benchmark's runs of a few epochs, RandAugment and MixUp cost 5 to 60 points of top-1
    (``docs/small-data.md``): a model that has seen the data a few times underfits before
    augmentation could keep it from overfitting.
    """
    level = regularisation_level(images_per_class, parameters, epochs)
    if level == "light":
        return "light", {"pad": max(1, round(side / 16)), "scale": (0.6, 1.0), "auto_augment": "none", "mixup": 0.0,
                         "cutmix": 0.0, "re_prob": 0.0, "label_smoothing": 0.0, "drop_path": 0.0}  # fmt: skip
    if level == "medium":
        return "medium", {"pad": max(1, round(side / 8)), "scale": (0.35, 1.0), "auto_augment": "rand-m5-n2",
                          "mixup": 0.2, "cutmix": 0.0, "re_prob": 0.0, "label_smoothing": 0.1,
                          "drop_path": 0.5}  # fmt: skip
    return "strong", {"pad": max(1, round(side / 8)), "scale": (0.35, 1.0), "auto_augment": "rand-m9-n2",
                      "mixup": 0.8, "cutmix": 1.0, "re_prob": 0.25, "label_smoothing": 0.1,
                      "drop_path": 1.0}  # fmt: skip


def choose_epoch_repeats(train_count: int, val_count: int) -> tuple[int, str]:
    """Passes over the ``train_count`` training images in one epoch, and why.

    Each epoch ends by evaluating the ``val_count`` validation images and saving a
    checkpoint; with a few hundred training images and more validation images that end
    takes most of the epoch's time. So a set smaller than :data:`EPOCH_IMAGES` (or than the
    validation set) is passed over as many whole times as fit in that many images, each
    pass in a new order (at most :data:`MAX_REPEATS`). Measured in the small-data benchmark
    (20 images a class, ``docs/small-data.md``). The loop asks only when the epochs are fitted
    to a time budget: epochs a user gives stay single passes.
    """
    target = max(val_count, EPOCH_IMAGES)
    repeats = max(1, min(MAX_REPEATS, target // max(1, train_count)))
    if repeats == 1:
        return 1, f"one pass over the {train_count:,} training images an epoch"
    return repeats, (
        f"{repeats} passes over the {train_count:,} training images an epoch (each in a new order), so that "
        f"evaluating {val_count:,} images and saving a checkpoint stay a small share of it: epochs of at least "
        f"max(validation images, {EPOCH_IMAGES}) images"
    )


def choose_stem(side: int, patch: int, given: str | None, named: str | None = None) -> tuple[str, str]:
    """The stem (:attr:`swinkit.SwinConfig.stem`) for training from scratch on ``side``-pixel inputs, and why.

    Up to :data:`CONV_STEM_UP_TO` pixels the overlapping convolutional stem: with few
    tokens a side and no pretrained weights, 3x3 convolutions give the first stage local
    features that one linear map of a patch does not (``patch`` must be a power of two).
    Larger inputs keep the paper's patch embedding. A ``given`` stem is kept, and a model
    ``named`` by the user (``--model``) keeps its own (the paper's) unless a stem is given.
    """
    if given is not None:
        return given, "given"
    if named is not None:
        return "patch", f"{named}'s own patch embedding (--model names the model; --stem conv changes it)"
    if side > CONV_STEM_UP_TO:
        return "patch", f"the paper's patch embedding: inputs above {CONV_STEM_UP_TO} px have enough pixels a token"
    if patch & (patch - 1):
        return "patch", f"the paper's patch embedding: the conv stem halves the image; patch {patch} is no power of 2"
    return "conv", (
        f"overlapping 3x3 convolutions down to patch {patch}: small inputs ({side} px, at most {CONV_STEM_UP_TO}) "
        f"trained from scratch (--pretrained keeps the paper's patch embedding)"
    )


def choose_ema(total_steps: int, from_scratch: bool, mode: str, decay: float | None) -> tuple[bool, float | None, str]:
    """Whether to keep an EMA of the weights, its decay, and why, for a run of ``total_steps`` optimiser steps.

    ``mode`` ``"on"`` or ``"off"`` is kept; ``"auto"`` is on when training from scratch
    (``from_scratch``: no pretrained weights, no adapters) for at least :data:`EMA_MIN_STEPS`
    steps. The decay, unless given, averages over the last :data:`EMA_SHARE` of the run:
    ``1 - 1 / (EMA_SHARE * total_steps)``, between 0.99 and 0.9999.
    """
    chosen = decay if decay is not None else min(0.9999, max(0.99, 1 - 1 / (EMA_SHARE * max(1, total_steps))))
    horizon = f"decay {chosen:.4g}: about the last {1 / (1 - chosen):.0f} of {total_steps:,} steps"
    if mode == "on":
        return True, chosen, f"given; {horizon}"
    if mode == "off":
        return False, decay, "given"
    if not from_scratch:
        return False, decay, "off when starting from pretrained weights or training adapters"
    if total_steps < EMA_MIN_STEPS:
        return False, decay, f"off: {total_steps} steps are too few to average (from {EMA_MIN_STEPS:,})"
    return True, chosen, f"from scratch; {horizon}"


def _size(value: object) -> str:
    return f"{value}x{value}" if isinstance(value, int) else "x".join(str(v) for v in value)  # type: ignore[union-attr]


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A model the recipe may train: a ladder rung with the geometry's patch, window and stages."""

    model: str
    overrides: dict[str, object]
    gflops: float

    def describe(self) -> str:
        return f"{self.model} (patch {self.overrides['patch_size']})"


def step_down_candidates(rung: str, geometry: Geometry, in_chans: int) -> list[Candidate]:
    """The models to try, most costly first: ``rung`` and the smaller rungs, then the same with patches twice as large.

    The coarser geometry (same input size, four times fewer tokens) is offered only while
    stage 1 keeps at least 8 tokens a side. Under a tight time budget a coarser, cheaper
    model trained for more epochs beats a finer one trained for few.
    """
    geometries = [geometry]
    coarse = choose_geometry(geometry.img_size, patch=2 * geometry.patch, fixed_size=True)
    if coarse.maps[0] >= 8 and tiles(coarse.maps, coarse.window, fixed_stages=False):
        geometries.append(coarse)
    rungs = list(reversed(COMPACT[: COMPACT.index(rung) + 1]))
    candidates = []
    for shape in geometries:
        for name in rungs:
            overrides = {"patch_size": shape.patch, "window_size": shape.window, **rung_overrides(name, shape.stages)}
            config = get_config(name).replace(img_size=shape.img_size, in_chans=in_chans, **overrides)
            candidates.append(Candidate(name, overrides, count_flops(config).gflops))
    return sorted(candidates, key=lambda candidate: -candidate.gflops)


def choose_channels(
    config: TrainConfig, profile: DataProfile, overrides: dict[str, object], changes: dict[str, object]
) -> list[Choice]:
    """Grey or colour (``overrides["in_chans"]``) and the mean and std measured on the images (``changes``).

    Settings given are kept; returns the choices made.
    """
    choices = []
    if "in_chans" not in overrides:
        overrides["in_chans"] = profile.channels
        why = "every image is grey" if profile.channels == 1 else "colour images"
        choices.append(Choice("channels", str(profile.channels), why, "--set in_chans=C"))
    if config.mean is None and config.std is None and overrides["in_chans"] == profile.channels:
        changes["mean"], changes["std"] = profile.mean, profile.std
        values = f"mean {', '.join(f'{v:.3f}' for v in profile.mean)}, std {', '.join(f'{v:.3f}' for v in profile.std)}"
        choices.append(Choice("normalise", values, "measured on the training images", "--mean --std"))
    return choices


def choose_ladder_model(
    config: TrainConfig,
    profile: DataProfile,
    geometry: Geometry,
    overrides: dict[str, object],
    changes: dict[str, object],
) -> tuple[str, list[Candidate]]:
    """The ladder rung for the images (``changes["model"]``, its depths and heads in ``overrides``), and the
    models to step down to: none when the model's shape or window was set by hand."""
    rung = choose_rung(profile.count)
    changes["model"] = rung
    if "depths" not in overrides and "num_heads" not in overrides:
        overrides.update(rung_overrides(rung, geometry.stages))
    shaped = any(key in config.model_overrides for key in ("embed_dim", "depths", "num_heads", "patch_size"))
    if shaped or "window_size" in config.model_overrides:
        return rung, []
    return rung, step_down_candidates(rung, geometry, overrides["in_chans"])  # type: ignore[arg-type]


def from_data(config: TrainConfig, profile: DataProfile) -> tuple[TrainConfig, list[Choice], list[str]]:
    """Fill the settings of ``config`` (a :class:`~swinkit.train.config.TrainConfig`) that the data decides.

    Returns the new config, the choices to print, and the models to step down to when too
    few epochs fit in the time (:func:`step_down_candidates`; empty when ``--model`` names
    the model or its shape is set by hand). Epochs, warm-up and the augmentation
    level come later, from :func:`after_timing`.
    """
    choices: list[Choice] = []
    overrides = dict(config.model_overrides)
    changes: dict[str, object] = {}
    described = (
        f"{profile.count:,} training images of {profile.num_classes} classes, typically "
        f"{profile.height}x{profile.width}, {'grey' if profile.channels == 1 else 'colour'}"
    )
    choices.append(Choice("recipe", "auto", f"chosen from the data: {described}", "--recipe imagenet|finetune|digits"))

    # Geometry: a named model keeps its patch, window and stages.
    named = get_config(config.model) if config.model else None
    patch = overrides.get("patch_size") or (named.patch_size if named else None)
    window = overrides.get("window_size") or (named.window_size if named else None)
    depths = overrides.get("depths") or (named.depths if named else None)
    side = config.img_size if config.img_size is not None else profile.side
    geometry = choose_geometry(
        side, patch=patch, window=window, stages=len(depths) if depths else None, fixed_size=config.img_size is not None
    )
    if config.img_size is None:
        changes["img_size"] = geometry.img_size
        if geometry.img_size == profile.side:
            why = f"the images' own size; patch {geometry.patch} and window {geometry.window} tile every stage"
        elif profile.side > MAX_SIDE:
            why = f"the images ({profile.side} px) resized to the small-image recipe's largest input"
        else:
            why = (
                f"the images ({profile.side} px) rounded so that patch {geometry.patch} and window "
                f"{geometry.window} tile every stage"
            )
        choices.append(Choice("input size", _size(geometry.img_size), why, "--img-size"))
    else:
        choices.append(Choice("input size", _size(config.img_size), "given", "--img-size"))
    maps = ", ".join(f"{side}x{side}" for side in geometry.maps)
    if "patch_size" not in overrides and not named:
        overrides["patch_size"] = geometry.patch
    if "window_size" not in overrides and not named:
        overrides["window_size"] = geometry.window
    given = "given" if ("patch_size" in config.model_overrides or named) else "chosen"
    choices.append(
        Choice(
            "patch, window",
            f"{geometry.patch}, {geometry.window}",
            f"{given}; token maps {maps} over {geometry.stages} stages",
            "--set patch_size=P --set window_size=M",
        )
    )

    # Stem: the convolutional one for small inputs (every auto run trains from scratch).
    input_side = config.img_size if config.img_size is not None else geometry.img_size
    patch_now = int(overrides.get("patch_size") or geometry.patch)  # type: ignore[call-overload]
    stem, why = choose_stem(input_side, patch_now, overrides.get("stem"), config.model)  # type: ignore[arg-type]
    overrides["stem"] = stem
    choices.append(Choice("stem", stem, why, "--stem patch|conv|spt"))

    # Channels and normalisation.
    choices += choose_channels(config, profile, overrides, changes)

    # The model: a rung of the ladder unless one is named.
    candidates: list[Candidate] = []
    if config.model is None:
        rung, candidates = choose_ladder_model(config, profile, geometry, overrides, changes)
        limits = [f"{name} from {RUNG_FROM_IMAGES[name]:,}" for name in COMPACT]
        choices.append(
            Choice(
                "model",
                rung,
                f"{profile.count:,} training images (ladder: {', '.join(limits)} images); smaller, then with "
                f"coarser patches, if fewer than {MIN_EPOCHS} epochs fit in the time",
                "--model",
            )
        )
    else:
        choices.append(Choice("model", config.model, "given", "--model"))

    # Batch and learning rate.
    if config.batch_size is None:
        changes["batch_size"] = choose_batch(profile.count)
        choices.append(
            Choice(
                "batch",
                str(changes["batch_size"]),
                f"about 1/40 of the {profile.count:,} images, as a power of two from 16 to 128",
                "--batch-size",
            )
        )
    batch = changes.get("batch_size", config.batch_size)
    if config.lr is None:
        changes["lr"] = choose_lr(batch)  # type: ignore[arg-type]
        choices.append(
            Choice(
                "learning rate",
                f"{changes['lr']:.2e}",
                "AdamW peak, 2e-3 from batch 32 (x sqrt(batch/32) below); weight decay 0.05, cosine to 1e-5",
                "--lr",
            )
        )

    # Crop (how far it moves is chosen with the model, after the timing) and flip.
    if config.crop is None:
        changes["crop"] = "pad" if input_side <= 64 else "resized"
    if config.hflip is None:
        mirror = profile.mirror
        keeps = mirror.keeps_classes
        changes["hflip"] = 0.5 if keeps else 0.0
        if not mirror.conclusive:
            why = "the classes are not told apart by their pixel means, so mirroring cannot be judged: on"
        else:
            verdict = "keeps" if keeps else "changes"
            why = (
                f"mirroring {verdict} what the classes look like: a nearest-class-mean classifier on the pixels gets "
                f"{100 * mirror.accuracy:.0f}% on the images, {100 * mirror.mirrored:.0f}% mirrored "
                f"(chance {100 * mirror.chance:.0f}%)"
            )
        choices.append(Choice("flip", "on (p 0.5)" if keeps else "off", why, "--hflip"))
    return dataclasses.replace(config, model_overrides=overrides, **changes), choices, candidates


def model_parameters(config: TrainConfig) -> int:
    """Parameters of the model ``config`` describes (built on the meta device: no memory, no time)."""
    overrides = dict(config.model_overrides)
    if config.img_size is not None:
        overrides["img_size"] = config.img_size
    model = create_model(config.model or "swin_t", device="meta", **overrides)
    return sum(parameter.numel() for parameter in model.parameters())


def after_timing(
    config: TrainConfig, epochs: int, steps_per_epoch: int, reason: str, images_per_class: float | None = None
) -> tuple[TrainConfig, list[Choice]]:
    """Set ``epochs`` (chosen for ``reason``) and the warm-up of ``config``; with ``images_per_class`` (a
    classifier's data), also the crop, augmentation, label smoothing and drop-path (:func:`choose_regularisation`)."""
    changes: dict[str, object] = {"epochs": epochs}
    choices = [Choice("epochs", str(epochs), reason, "--epochs, --time")]
    if config.warmup_epochs is None:
        changes["warmup_epochs"] = choose_warmup(epochs, steps_per_epoch)
        choices.append(
            Choice(
                "warm-up",
                f"{changes['warmup_epochs']:g} epochs",
                "5% of the run, at least 100 steps",
                "--warmup-epochs",
            )
        )
    if images_per_class is not None:
        config, more = regularisation_choices(config, images_per_class, epochs * (config.epoch_repeats or 1))
        choices += more
    return dataclasses.replace(config, **changes), choices


def regularisation_choices(
    config: TrainConfig, images_per_class: float, epochs: int | None = None
) -> tuple[TrainConfig, list[Choice]]:
    """Fill the unset crop, augmentation, label smoothing and drop-path of ``config`` by :func:`choose_regularisation`
    for a run of ``epochs``.

    Returns the config and the lines to print: the crop, the augmentation level with its
    limits for this model's size, and the smoothing and drop-path.
    """
    side = config.img_size if isinstance(config.img_size, int) else min(config.img_size or (32,))
    parameters = model_parameters(config)
    level, settings = choose_regularisation(images_per_class, parameters, side, epochs)
    scale = capacity_scale(parameters)
    by_data = regularisation_level(images_per_class, parameters)
    model_rate = float(get_config(config.model or "swin_t", **config.model_overrides).drop_path_rate)
    settings["drop_path"] = round(settings["drop_path"] * model_rate, 4)  # type: ignore[operator]
    if config.crop == "pad":
        settings.pop("scale")
        crop = f"pad {settings['pad']} + crop"
    else:
        settings.pop("pad")
        low, high = settings["scale"]  # type: ignore[misc]
        crop = f"resized, area {low:g}-{high:g}"
    unset = {key: value for key, value in settings.items() if getattr(config, key) is None}
    fits = (
        f"{images_per_class:,.0f} images a class for {parameters / 1e6:.2f} M parameters (light below "
        f"{LIGHT_BELOW * scale:,.0f}, the paper's from {STRONG_FROM * scale:,.0f} at this size)"
    )
    if level != by_data:
        fits += (
            f"; {by_data} for the data, but {epochs} passes over it are too few (light below {LIGHT_EPOCHS_BELOW}, "
            f"the paper's from {STRONG_EPOCHS_FROM})"
        )
    choices = []
    if "pad" in unset or "scale" in unset:
        why = {
            "light": "random shifts of up to 1/16 of the side" if config.crop == "pad" else "light resized crops",
            "medium": "random shifts of up to 1/8 of the side" if config.crop == "pad" else "mild resized crops",
            "strong": "random shifts of up to 1/8 of the side" if config.crop == "pad" else "mild resized crops",
        }[level]
        choices.append(Choice("crop", crop, f"{why} ({level})", "--crop --pad --scale"))
    if unset.keys() & {"auto_augment", "mixup", "cutmix", "re_prob"}:
        described = {
            "light": "no RandAugment, mixing or erasing, which would keep the model from fitting",
            "medium": "RandAugment 2 ops at m5, MixUp 0.2:",
            "strong": "the paper's (RandAugment m9, MixUp 0.8, CutMix 1.0, erasing 0.25):",
        }[level]
        choices.append(Choice("augment", level, f"{described} {fits}", "--auto-augment --mixup --cutmix --re-prob"))
    if unset.keys() & {"label_smoothing", "drop_path"}:
        values = f"smoothing {settings['label_smoothing']:g}, drop-path {settings['drop_path']:g}"
        if level == "light":
            why = "none: the model should fit its few images" if by_data == "light" else "none: a short run should fit"
        else:
            why = f"{level} regularisation"
        if level == "medium":
            why += f" (half the model's drop-path {model_rate:g})"
        choices.append(Choice("regularise", values, why, "--smoothing --drop-path"))
    return dataclasses.replace(config, **unset), choices
