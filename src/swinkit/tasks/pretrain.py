"""Masked-image pre-training (SimMIM) on unlabelled images: ``swinkit pretrain --data DIR``.

What the training loop leaves to this task: every image below the folder (labels ignored,
:func:`~swinkit.data.sources.load_unlabelled`), the :class:`~swinkit.model.SimMIM` model, the
official augmentation (resized crops of area 0.67-1, flips), a fresh random mask per image
and step (:class:`~swinkit.model.MaskGenerator`), the masked L1 loss (Eq. 1), its value on
the held-out images with fixed masks as the metric that picks ``best``, the recipe (the
official schedule, or one chosen from the data: :mod:`swinkit.train.pretrain_recipe`), and a
picture per epoch of a few held-out images: original, masked, reconstruction. Checkpoints
are SimMIM checkpoints in swinkit's layout (:func:`~swinkit.checkpoints.save_simmim`), from
which ``swinkit train --pretrained RUN`` fine-tunes a classifier.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from swinkit.checkpoints import create_simmim, save_simmim
from swinkit.data import AugmentConfig, TransformedDataset, build_transforms
from swinkit.data.profile import profile_data
from swinkit.data.sources import DataBundle, load_unlabelled
from swinkit.model import MaskGenerator, SimMIM, get_config
from swinkit.model.registry import TASK_MODELS
from swinkit.model.simmim import MASK_RATIO, masked_l1_loss
from swinkit.preprocessing import Preprocessing
from swinkit.tasks.base import Command, Task
from swinkit.train import pretrain_recipe, recipe
from swinkit.train.config import DEFAULT_BUDGET, TrainConfig
from swinkit.train.pretrain_recipe import MaskSettings
from swinkit.train.recipe import Choice
from swinkit.train.task import Evaluator, Loaders, Metric, RecipePlan, Scores, StepOutput, cores, loader_workers
from swinkit.viz.figure import save_figure
from swinkit.viz.reconstruction import draw_reconstructions

#: Held-out images drawn in each epoch's picture.
PICTURE_IMAGES = 4
#: Seed of the fixed masks of the held-out images (the validation loss compares like with like).
VAL_MASK_SEED = 1234
RECIPE_LINES = {
    "imagenet": "imagenet (the official SimMIM Swin-B schedule: 192 px, window 6, 100 epochs, lr 2e-4 per 512 images)",
}


def build_simmim(config: TrainConfig) -> SimMIM:
    """The SimMIM model of ``config``: a registered ``simmim_*`` name or a classifier variant, or ``--pretrained``.

    ``config.pretrained`` (a SimMIM checkpoint of any layout, or a pre-training run) continues
    its pre-training; ``model_overrides``, ``img_size`` and ``drop_path`` apply either way.
    """
    overrides = dict(config.model_overrides)
    if config.drop_path is not None:
        overrides["drop_path_rate"] = config.drop_path
    if config.img_size is not None:
        overrides["img_size"] = config.img_size
    if config.pretrained is not None:
        return create_simmim(config.pretrained, config.model if config.model in TASK_MODELS else None, **overrides)
    if config.model in TASK_MODELS:
        return TASK_MODELS[config.model](**overrides)
    return SimMIM(get_config(config.model, **(overrides | {"num_classes": 0, "labels": ()})))


class MaskedBatches:
    """Batches of ``(images, masks)``: the loader's images, each with a fresh mask of the task's current model.

    Masks are drawn in the training process from ``generator``, which the loop reseeds each
    epoch, so a resumed run draws the same masks.
    """

    def __init__(self, loader: DataLoader, task: PretrainTask, generator: torch.Generator) -> None:
        self.loader = loader
        self.task = task
        self.generator = generator

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, _ in self.loader:
            yield images, self.task.masks(images.shape[0], self.generator)


class FixedMasks(Dataset):
    """The held-out images, each with a mask fixed by its index: items ``(image, mask)``."""

    def __init__(self, images: Dataset, task: PretrainTask) -> None:
        self.images = images
        self.task = task

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        mask = self.task.masks(1, torch.Generator().manual_seed(VAL_MASK_SEED + index))[0]
        return self.images[index][0], mask


class ReconstructionEvaluator(Evaluator):
    """The masked L1 loss over the held-out images with their fixed masks, weighted by images."""

    def __init__(self, task: PretrainTask) -> None:
        self.runtime = task.runtime
        self.patch = task.patch_size
        self.total = torch.zeros(2, dtype=torch.float64, device=task.runtime.device)

    def update(self, model: nn.Module, batch: Any) -> int:
        images, masks = (part.to(self.runtime.device) for part in batch)
        with self.runtime.autocast():
            reconstruction = model(images, masks)
        loss = masked_l1_loss(images, reconstruction.float(), masks, self.patch)
        batch = torch.tensor([loss.item() * len(images), len(images)], dtype=torch.float64)
        self.total += batch.to(self.total.device)
        return len(images)

    def compute(self) -> Scores:
        total = self.runtime.context.all_reduce_sum(self.total.clone())
        if total[1] == 0:
            raise ValueError("no held-out images were evaluated")
        return Scores({"loss": float(total[0] / total[1])}, int(total[1]))


class PretrainTask(Task):
    """SimMIM pre-training: the held-out masked L1 loss picks ``best``; batches are ``(images, masks)``."""

    name: ClassVar[str] = "pretrain"
    description: ClassVar[str] = "SimMIM masked-image pre-training: unlabelled images in, an encoder to fine-tune out"
    primary: ClassVar[Metric] = Metric("loss", "min")
    val_columns: ClassVar[tuple[str, ...]] = ("loss",)

    @classmethod
    def add_arguments(cls, command: Command, group: argparse._ArgumentGroup) -> None:
        if command == "train":
            group.add_argument("--mask-patch", type=int, help="mask patch in pixels (default: from the input size)")
            group.add_argument(
                "--mask-ratio", type=float, help=f"fraction of mask patches hidden (default {MASK_RATIO})"
            )

    def resolve(self, config: TrainConfig) -> TrainConfig:
        """The named recipe's settings (``auto``: the fixed part; :mod:`swinkit.train.pretrain_recipe`) filled."""
        name = config.recipe or pretrain_recipe.RECIPES[0]
        if name not in pretrain_recipe.RECIPES:
            raise ValueError(f"pre-training recipe {name!r} is not one of {', '.join(pretrain_recipe.RECIPES)}")
        if name == "auto" and config.pretrained is not None:
            raise ValueError(
                "the auto recipe pre-trains a model it chooses from scratch; to go on pre-training --pretrained "
                "weights pass --recipe imagenet (the official schedule; --model, --epochs, --lr ... override it)"
            )
        table = pretrain_recipe.OFFICIAL if name == "imagenet" else pretrain_recipe.AUTO_FIXED
        # Pre-training goes on with the architecture of --pretrained weights.
        kept = ("model", "img_size") if config.pretrained is not None else ()
        unset = {key: value for key, value in table.items() if getattr(config, key) is None and key not in kept}
        if config.schedule is None:
            unset["schedule"] = "cosine"  # both recipes decay by a cosine after the warm-up
        filled = dataclasses.replace(config, recipe=name, **unset)
        if name == "auto" and filled.time_budget is None and filled.epochs is None:
            filled = dataclasses.replace(filled, time_budget=DEFAULT_BUDGET)
        filled.validate()
        return filled

    def recipe_line(self, recipe_name: str) -> str:
        return RECIPE_LINES[recipe_name]

    def load_data(self, config: TrainConfig) -> int:
        if config.data is None:
            raise ValueError("pre-training needs --data: a folder of images (searched recursively, labels ignored)")
        self.data: DataBundle = load_unlabelled(
            config.data,
            val_split=config.val_split,
            seed=config.seed,
            skip_bad_images=config.skip_bad_images,
            keep_in_memory=config.memory_limit,
        )
        if self.data.skipped:
            self.runtime.log(f"skipped {self.data.skipped} unreadable image(s) (--skip-bad-images)")
        options = config.task_options
        ratio = options.get("mask_ratio")
        self.mask = MaskSettings(options.get("mask_patch"), MASK_RATIO if ratio is None else ratio)
        self.chosen_patch: int | None = None
        return len(self.data.train)

    def choose_recipe(self, config: TrainConfig) -> RecipePlan:
        profile = profile_data(self.data.train, seed=config.seed)
        chosen, choices, candidates = pretrain_recipe.from_data(config, profile, self.mask)
        return RecipePlan(chosen, choices, candidates)

    def after_timing(
        self, config: TrainConfig, epochs: int, steps_per_epoch: int, reason: str
    ) -> tuple[TrainConfig, list[Choice]]:
        """The epochs and the warm-up as the classification recipe sets them (the augmentation is fixed)."""
        return recipe.after_timing(config, epochs, steps_per_epoch, reason)

    def build_model(self, config: TrainConfig) -> SimMIM:
        model = build_simmim(config)
        if config.grad_checkpointing:
            model.encoder.set_grad_checkpointing(True)
        self.masks: MaskGenerator = model.mask_generator(self.mask.mask_patch, self.mask.ratio)
        if self.mask.mask_patch is None and self.chosen_patch not in (None, self.masks.mask_patch):
            self.runtime.log(f"  mask patch    {self.masks.mask_patch} px for this model's stride {model.stride}")
        self.chosen_patch = self.masks.mask_patch
        self.patch_size = model.config.patch_size
        return model

    def preprocessing(self, config: TrainConfig, model: nn.Module) -> Preprocessing:
        """The normalisation of ``--pretrained`` weights (their targets were so normalised), else the default;
        the run's choices (``mean``, ``std``, ``crop_pct``) win."""
        size, channels = model.config.img_size, model.config.in_chans
        stored = getattr(model, "pretrained_cfg", None)
        base = (
            Preprocessing.from_dict(stored).for_model(size, channels)
            if stored
            else Preprocessing.default(size, channels).replace(crop_pct=1.0)
        )
        changes = {key: getattr(config, key) for key in ("mean", "std", "crop_pct") if getattr(config, key) is not None}
        return base.replace(**changes)

    def run_record(self, model: nn.Module) -> dict[str, Any]:
        masks = self.masks
        return {"model": model.config.to_dict(), "mask": {"mask_patch": masks.mask_patch, "ratio": masks.ratio}}

    def headline(self, model: nn.Module) -> str:
        parameters = sum(p.numel() for p in model.parameters())
        rows, columns = self.masks.grid
        return (
            f"SimMIM on a {model.config.embed_dim}-wide Swin ({parameters:,} parameters) on {len(self.data.train)} "
            f"unlabelled images, masking {self.masks.mask_count} of {rows}x{columns} patches of "
            f"{self.masks.mask_patch} px"
        )

    def save_model(self, model: nn.Module, folder: Path, preprocessing: Preprocessing) -> None:
        save_simmim(model, folder, preprocessing=preprocessing)

    def build_loaders(
        self,
        config: TrainConfig,
        preprocessing: Preprocessing,
        sampler: DistributedSampler,
        generator: torch.Generator,
    ) -> Loaders:
        """Images transformed per image by loading processes; masks drawn per batch (train) or fixed (held out)."""
        context = self.runtime.context
        self._preprocessing = preprocessing
        augment = AugmentConfig(
            scale=tuple(config.scale), crop=config.crop, hflip=config.hflip, auto_augment="none", re_prob=0.0
        )
        transform = build_transforms(config.augment, preprocessing, augment if config.augment else None)
        workers = loader_workers(self.runtime.device, cores()) if config.workers is None else config.workers
        loader = DataLoader(
            TransformedDataset(self.data.train, transform),
            batch_size=config.batch_size,
            sampler=sampler,
            num_workers=workers,
            generator=generator,
            pin_memory=self.runtime.device.type == "cuda",
        )
        self.train_loader = MaskedBatches(loader, self, generator)
        self.held_out: FixedMasks | None = None
        val_loader = None
        if self.data.val is not None and len(self.data.val):
            self.held_out = FixedMasks(TransformedDataset(self.data.val, build_transforms(False, preprocessing)), self)
            rows = range(context.rank, len(self.held_out), context.world_size)
            val_loader = DataLoader(Subset(self.held_out, rows), batch_size=2 * config.batch_size, num_workers=workers)
        val_count = len(self.held_out) if self.held_out is not None else 0
        return Loaders(
            train=self.train_loader,
            val=val_loader,
            train_count=len(self.data.train),
            val_count=val_count,
            workers=workers,
            description=(
                f"data: {len(self.data.train):,} training and {val_count:,} held-out unlabelled images, transformed "
                f"per image by {workers} loading process(es) (--workers)"
            ),
        )

    def timing_batch(self, size: int) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
        dataset = self.train_loader.loader.dataset
        images = torch.stack([dataset[index % len(dataset)][0] for index in range(size)])
        masks = self.masks(size, torch.Generator().manual_seed(0))
        return lambda: (images, masks)

    def training_step(self, model: nn.Module, batch: Any) -> StepOutput:
        images, masks = (part.to(self.runtime.device, non_blocking=True) for part in batch)
        with self.runtime.autocast():
            reconstruction = model(images, masks)
        return StepOutput(masked_l1_loss(images, reconstruction.float(), masks, self.patch_size), images.shape[0])

    def evaluator(self) -> ReconstructionEvaluator:
        return ReconstructionEvaluator(self)

    def epoch_pictures(self, model: nn.Module, folder: Path, epoch: int) -> list[Path]:
        """A few held-out images (the first ones, with their fixed masks): original, masked, reconstruction."""
        if self.held_out is None:
            return []
        items = [self.held_out[index] for index in range(min(PICTURE_IMAGES, len(self.held_out)))]
        images = torch.stack([image for image, _ in items])
        masks = torch.stack([mask for _, mask in items])
        with torch.no_grad():
            reconstruction = model(images.to(self.runtime.device), masks.to(self.runtime.device)).float().cpu()
        figure = draw_reconstructions(images, masks, reconstruction, self._preprocessing, f"epoch {epoch}")
        return [save_figure(figure, folder / "reconstructions" / f"epoch_{epoch:03d}.png")]

    def summary(self, result: Scores, best: float | None, best_path: Path) -> str:
        return (
            f"reconstruction: masked L1 {result.metrics['loss']:.4f} on {result.count} held-out images "
            f"(best {best:.4f}, saved as {best_path}); fine-tune with swinkit train --pretrained RUN"
        )
