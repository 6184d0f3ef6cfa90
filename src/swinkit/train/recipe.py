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
6. after the steps are timed, **epochs** (as many as fit in the budget, at most
   :data:`MAX_EPOCHS`), **warm-up**, and how far the crops go, **RandAugment, mixing and
   erasing**, all scaled to how many times each image will be seen (:func:`choose_regularisation`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from swinkit.data.profile import DataProfile
from swinkit.model import COMPACT, get_config
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
    the closest), a last stage of exactly one window, three stages, the size error, the
    smaller window.
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
                rank = (outside, error if outside else 0.0, last_partial, abs(count - 3), error, size_window)
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


def choose_regularisation(epochs: int, side: int) -> tuple[str, dict[str, object]]:
    """Augmentation for a run of ``epochs`` passes over ``side``-pixel images, and the level's name.

    A compact model seeing each image fewer than 50 times is still fitting the data: any
    augmentation only slows it down (none: no crops either). From 50 passes it starts to
    memorise (light: pad-and-crop by 1/16 of the side or resized crops of area 0.6-1,
    RandAugment two ops at magnitude 5, MixUp 0.2); from 150, the full set (1/8 of the side
    or area 0.35-1, and the paper's RandAugment m9, MixUp 0.8, CutMix 1.0, erasing 0.25).
    """
    if epochs < 50:
        return "none", {"pad": 0, "scale": (1.0, 1.0), "auto_augment": "none", "mixup": 0.0, "cutmix": 0.0,
                        "re_prob": 0.0}  # fmt: skip
    if epochs < 150:
        return "light", {"pad": max(1, round(side / 16)), "scale": (0.6, 1.0), "auto_augment": "rand-m5-n2",
                         "mixup": 0.2, "cutmix": 0.0, "re_prob": 0.0}  # fmt: skip
    return "strong", {"pad": max(1, round(side / 8)), "scale": (0.35, 1.0), "auto_augment": "rand-m9-n2",
                      "mixup": 0.8, "cutmix": 1.0, "re_prob": 0.25}  # fmt: skip


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

    # Crop (how far it moves is chosen with the epochs) and flip.
    input_side = config.img_size if config.img_size is not None else geometry.img_size
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


def after_timing(
    config: TrainConfig, epochs: int, steps_per_epoch: int, reason: str
) -> tuple[TrainConfig, list[Choice]]:
    """Set ``epochs`` (chosen for ``reason``), then fill warm-up and the regularisation level of ``config``."""
    changes: dict[str, object] = {"epochs": epochs}
    choices = [Choice("epochs", str(epochs), reason, "--epochs, --time")]
    total = epochs
    if config.warmup_epochs is None:
        changes["warmup_epochs"] = choose_warmup(total, steps_per_epoch)
        choices.append(
            Choice(
                "warm-up",
                f"{changes['warmup_epochs']:g} epochs",
                "5% of the run, at least 100 steps",
                "--warmup-epochs",
            )
        )
    side = config.img_size if isinstance(config.img_size, int) else min(config.img_size or (32,))
    level, settings = choose_regularisation(total, side)
    if config.crop == "pad":
        settings.pop("scale")
        crop = f"pad {settings['pad']} + crop" if settings["pad"] else "none"
    else:
        settings.pop("pad")
        low, high = settings["scale"]
        crop = f"resized, area {low:g}-{high:g}" if low < 1 else "none"
    unset = {key: value for key, value in settings.items() if getattr(config, key) is None}
    changes.update(unset)
    if "pad" in unset or "scale" in unset:
        why = {
            "none": "none in a short run",
            "light": "random shifts of up to 1/16 of the side" if config.crop == "pad" else "light resized crops",
            "strong": "random shifts of up to 1/8 of the side" if config.crop == "pad" else "mild resized crops",
        }[level]
        choices.append(Choice("crop", crop, f"{why} ({total} epochs)", "--crop --pad --scale"))
    if unset.keys() - {"pad", "scale"}:
        described = {
            "none": f"none: {total} passes over the data leave a compact model still fitting it",
            "light": f"light (RandAugment 2 ops at m5, MixUp 0.2): {total} passes, enough to start memorising",
            "strong": f"the paper's (RandAugment m9, MixUp 0.8, CutMix 1.0, erasing 0.25): {total} passes",
        }[level]
        choices.append(Choice("augment", level, described, "--auto-augment --mixup --cutmix --re-prob"))
    return dataclasses.replace(config, **changes), choices
