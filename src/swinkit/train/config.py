"""Training settings, and the recipes that fill the ones a user leaves unset.

Four recipes (``recipe``, ``--recipe``): ``auto`` (the default for training from scratch:
a compact Swin and its settings chosen from the data, :mod:`swinkit.train.recipe`),
``imagenet`` (the paper's ImageNet-1k recipe; :data:`SCRATCH`), ``finetune`` (the Hugging
Face image-classification example's, the default with ``pretrained``), and ``digits``
(the built-in data set, with a small Swin suited to 8x8 images, so that ``swinkit train``
with no arguments trains well in a couple of minutes).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import MappingProxyType
from typing import Any

from swinkit.data.transforms import CROPS, AugmentConfig

PRECISIONS = ("fp32", "bf16", "fp16")
AUGMENTS = ("randaugment", "trivial", "none")
RECIPES = ("auto", "imagenet", "finetune", "digits")
#: Learning-rate decays after the warm-up (see :func:`swinkit.train.optim.build_scheduler`).
SCHEDULES = ("cosine", "poly")

#: The default budget of a data-chosen run (seconds): a first run on a CPU.
DEFAULT_BUDGET = 600.0
#: Settings the data-chosen recipe fixes whatever the data (AdamW, cosine); label smoothing,
#: drop-path and the augmentation are chosen from the images a class, and the EMA from the steps.
AUTO_FIXED = {
    "accum_steps": 1,
    "lr_base_batch": 0,
    "min_lr": 1e-5,
    "weight_decay": 0.05,
    "clip_grad": 5.0,
    "crop_pct": 1.0,
    "ema": "auto",
}
#: ``ema`` settings: keep an exponential moving average of the weights, or not, or let the run decide.
EMA_MODES = ("on", "off", "auto")

#: The paper's recipe (the brief's "Training recipe"): lr 1e-3 at batch 1024, scaled linearly.
SCRATCH = MappingProxyType(
    {
        "model": "swin_t",
        "epochs": 300,
        "batch_size": 128,
        "accum_steps": 1,
        "lr": 1e-3,
        "lr_base_batch": 1024,
        "min_lr": 1e-5,
        "warmup_epochs": 20.0,
        "weight_decay": 0.05,
        "clip_grad": 5.0,
        "label_smoothing": 0.1,
        "auto_augment": "randaugment",
        "re_prob": 0.25,
        "mixup": 0.8,
        "cutmix": 1.0,
        "hflip": 0.5,
        "crop": "resized",
        "scale": (0.08, 1.0),
    }
)

#: The Hugging Face example's fine-tuning recipe (Swin-T on EuroSAT, about 97%). No model
#: name: the variant comes from the checkpoint unless ``--model`` names one.
FINETUNE = MappingProxyType(
    {
        "epochs": 3,
        "batch_size": 32,
        "accum_steps": 4,
        "lr": 5e-5,
        "lr_base_batch": 0,
        "min_lr": 0.0,
        "warmup_epochs": 0.3,
        "weight_decay": 0.0,
        "clip_grad": 1.0,
        "label_smoothing": 0.0,
        "auto_augment": "none",
        "re_prob": 0.0,
        "mixup": 0.0,
        "cutmix": 0.0,
        "hflip": 0.5,
        "crop": "resized",
        "scale": (0.08, 1.0),
    }
)

#: The built-in digits: 8x8 grey images, one token per pixel, two stages.
DIGITS = MappingProxyType(
    {
        "model": "swin_t",
        "model_overrides": {
            "img_size": 8,
            "patch_size": 1,
            "in_chans": 1,
            "embed_dim": 48,
            "depths": (2, 2),
            "num_heads": (3, 6),
            "window_size": 4,
            "drop_path_rate": 0.1,
        },
        "epochs": 40,
        "batch_size": 32,
        "accum_steps": 1,
        "lr": 2e-3,
        "lr_base_batch": 0,
        "min_lr": 1e-5,
        "warmup_epochs": 2.0,
        "weight_decay": 0.05,
        "clip_grad": 5.0,
        "label_smoothing": 0.1,
        "auto_augment": "none",
        "re_prob": 0.0,
        "mixup": 0.0,
        "cutmix": 0.0,
        "hflip": 0.0,
        "crop": "resized",
        "scale": (1.0, 1.0),
        "mean": (0.305,),
        "std": (0.375,),
        "crop_pct": 1.0,
    }
)


@dataclasses.dataclass
class TrainConfig:
    """Every setting of a training run; ``None`` means "take it from the recipe".

    ``task`` names what is trained (see :mod:`swinkit.tasks`; runs saved before tasks had
    names read back as ``"classify"``); ``task_options`` holds the settings only that task
    reads (its own command-line flags), by name.
    ``lr`` is the peak learning rate at ``lr_base_batch`` (0: not scaled); the effective
    rate is ``lr * global_batch / lr_base_batch``, the linear scaling rule of the paper.
    ``schedule`` is the decay after the warm-up: ``"cosine"`` (every named recipe's) or
    ``"poly"`` (power 1, mmsegmentation's), to ``min_lr``.
    ``lora`` > 0 fine-tunes LoRA adapters of that rank (see :mod:`swinkit.train.lora`) on
    the ``lora_targets`` layers of every block, scaled by ``lora_alpha / lora`` (alpha
    defaults to the rank), plus the head; 0 trains every parameter.
    ``time_budget`` (seconds; 0 for none) fits the epochs to a wall-clock budget when
    ``epochs`` is not given (the ``auto`` recipe defaults to 10 minutes).
    ``memory_limit`` (bytes) bounds the decoded images kept in memory (default: 4 GiB or
    half the free memory; 0 reads the files every epoch). ``crop`` is ``"resized"``
    (RandomResizedCrop over ``scale``) or ``"pad"`` (pad by ``pad`` pixels and crop).
    """

    task: str = "classify"
    data: str | None = None
    recipe: str | None = None
    time_budget: float | None = None
    val: str | None = None
    val_split: float = 0.1
    model: str | None = None
    model_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    pretrained: str | None = None
    img_size: int | None = None
    output: str = "runs"
    name: str | None = None
    epochs: int | None = None
    epoch_repeats: int | None = None
    batch_size: int | None = None
    accum_steps: int | None = None
    lr: float | None = None
    lr_base_batch: int | None = None
    min_lr: float | None = None
    warmup_epochs: float | None = None
    weight_decay: float | None = None
    schedule: str | None = None
    layer_decay: float | None = None
    clip_grad: float | None = None
    label_smoothing: float | None = None
    auto_augment: str | None = None
    re_prob: float | None = None
    mixup: float | None = None
    cutmix: float | None = None
    hflip: float | None = None
    crop: str | None = None
    pad: int | None = None
    scale: tuple[float, float] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    crop_pct: float | None = None
    drop_path: float | None = None
    augment: bool = True
    precision: str = "fp32"
    ema: str | None = None
    ema_decay: float | None = None
    grad_checkpointing: bool = False
    freeze_backbone: bool = False
    seed: int = 0
    deterministic: bool = False
    workers: int | None = None
    memory_limit: int | None = None
    skip_bad_images: bool = False
    quiet: bool = False
    device: str | None = None
    lora: int = 0
    lora_alpha: float | None = None
    lora_dropout: float = 0.0
    lora_targets: str = "qkv,proj,fc1,fc2"
    task_options: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def recipe_name(self) -> str:
        """The recipe that fills the unset fields: ``recipe`` when given, else ``digits`` without
        data, ``finetune`` with ``pretrained``, ``auto`` otherwise."""
        if self.recipe is not None:
            return self.recipe
        if self.data in (None, "digits"):
            return "digits"
        return "finetune" if self.pretrained else "auto"

    def resolved(self) -> TrainConfig:
        """A copy with every ``None`` the recipe fixes filled, validated.

        The ``auto`` recipe fixes only :data:`AUTO_FIXED` and the time
        budget here; the rest is chosen from the data when training starts
        (:func:`swinkit.train.recipe.from_data`).
        """
        name = self.recipe_name
        if name not in RECIPES:
            raise ValueError(f"recipe {name!r} is not one of {', '.join(RECIPES)}")
        recipe = {"digits": DIGITS, "finetune": FINETUNE, "imagenet": SCRATCH, "auto": AUTO_FIXED}[name]
        filled = dataclasses.replace(self, recipe=name)
        for key, value in recipe.items():
            if key == "model_overrides":
                if self.model is None:
                    filled.model_overrides = dict(value) | dict(self.model_overrides)
            elif getattr(filled, key, None) is None:
                setattr(filled, key, value)
        if name == "auto" and filled.time_budget is None and filled.epochs is None:
            filled.time_budget = DEFAULT_BUDGET
        if filled.layer_decay is None:
            filled.layer_decay = 1.0
        if filled.schedule is None:
            filled.schedule = "cosine"
        if filled.ema is None:
            filled.ema = "off"
        if name == "auto" and filled.pretrained:
            raise ValueError(
                "recipe 'auto' trains from scratch; with pretrained weights use recipe 'finetune' (the default)"
            )
        filled.validate()
        return filled

    def validate(self) -> None:
        """Raise ValueError naming a setting that cannot work and what is accepted."""
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.recipe is not None and self.recipe not in RECIPES:
            raise ValueError(f"recipe {self.recipe!r} is not one of {', '.join(RECIPES)}")
        if self.schedule is not None and self.schedule not in SCHEDULES:
            raise ValueError(f"schedule {self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        if self.auto_augment is not None and self.auto_augment not in AUGMENTS:
            try:
                AugmentConfig(auto_augment=self.auto_augment)
            except ValueError as error:
                raise ValueError(f"auto_augment {self.auto_augment!r}: {error}") from None
        if self.crop is not None and self.crop not in CROPS:
            raise ValueError(f"crop {self.crop!r} is not one of {', '.join(CROPS)}")
        for name in ("pad", "time_budget", "memory_limit"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "accum_steps": self.accum_steps}
        for name, value in positive.items():
            if value is not None and value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if self.lr is not None and self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0.0 <= self.val_split < 1.0:
            raise ValueError(f"val_split must be in [0, 1), got {self.val_split}")
        if self.layer_decay is not None and not 0.0 < self.layer_decay <= 1.0:
            raise ValueError(f"layer_decay must be in (0, 1] (1 disables it), got {self.layer_decay}")
        if self.ema is not None and self.ema not in EMA_MODES:
            raise ValueError(f"ema {self.ema!r} is not one of {', '.join(EMA_MODES)}")
        if self.epoch_repeats is not None and (not isinstance(self.epoch_repeats, int) or self.epoch_repeats < 1):
            raise ValueError(f"epoch_repeats must be a whole number of passes, 1 or more, got {self.epoch_repeats!r}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.lora < 0:
            raise ValueError(f"lora (the adapter rank) must be >= 0 (0: no adapters), got {self.lora}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.lora and (self.ema == "on" or self.freeze_backbone):
            raise ValueError("lora trains adapters and the head; it does not combine with ema or freeze_backbone")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Settings from :meth:`to_dict` output; unknown keys raise ValueError."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ValueError(f"unknown training setting(s) {unknown}; accepted: {sorted(fields)}")
        values = dict(data)
        if "recipe" not in values:
            # Runs written before recipes had names: the recipe their settings came from.
            digits = values.get("data") in (None, "digits")
            values["recipe"] = "digits" if digits else "finetune" if values.get("pretrained") else "imagenet"
        for key in ("scale", "mean", "std"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        if isinstance(values.get("ema"), bool):
            # Runs saved when EMA was a switch.
            values["ema"] = "on" if values["ema"] else "off"
        return cls(**values)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Read the ``config.json`` a run wrote."""
        return cls.from_dict(json.loads(Path(path).read_text())["train"])
