"""Image classification: a Swin with a linear head, trained on labelled images with cross-entropy.

What the training loop leaves to a task, for classification: the labelled data (an image
folder, a CSV, a Hugging Face dataset or the built-in digits) and its class names, the
model and its head (``--pretrained`` included), the loaders (images decoded once into one
uint8 tensor and augmented a batch at a time when they fit in memory, else transformed per
image by loading processes), MixUp and CutMix, the label-smoothed cross-entropy, top-1 and
top-5 accuracy, the confusion matrix, and the data-chosen recipe
(:mod:`swinkit.train.recipe`). The commands reach a trained classifier through
:mod:`swinkit.classifier`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset

import swinkit
from swinkit.checkpoints import read_checkpoint
from swinkit.classifier import evaluate_data, load_classifier
from swinkit.classifier import predict as label_images
from swinkit.data import (
    AugmentConfig,
    TransformedDataset,
    build_mixup,
    build_transforms,
    load_data,
    soft_target_cross_entropy,
)
from swinkit.data.memory import format_size, in_memory
from swinkit.data.profile import profile_data
from swinkit.data.sources import DataBundle
from swinkit.data.tensors import BatchAugment, TensorBatches, fits_as_tensor, stack_images
from swinkit.model import SwinTransformer
from swinkit.preprocessing import Preprocessing
from swinkit.tasks.base import Command, CommandOptions, Report, Task
from swinkit.train import plots, recipe, recipe_report
from swinkit.train.config import TrainConfig
from swinkit.train.layer_decay import default_layer_decay
from swinkit.train.metrics import ConfusionCounter, Evaluation, topk_correct
from swinkit.train.task import Evaluator, Loaders, Metric, RecipePlan, StepOutput, cores, loader_workers

RECIPE_LINES = {
    "digits": "digits (the built-in data set's: a two-stage Swin for 8x8 images; --recipe auto chooses from the data)",
    "imagenet": "imagenet (the paper's ImageNet-1k recipe, 300 epochs; --recipe auto chooses from the data)",
    "finetune": "finetune (the Hugging Face example's, from --pretrained weights)",
}
#: Labels per image that ``swinkit predict`` gives by default.
TOPK = 5


def build_classifier(config: TrainConfig, classes: list[str]) -> SwinTransformer:
    """The Swin of ``config`` with a head for ``classes`` (from ``config.pretrained`` when given)."""
    overrides = dict(config.model_overrides)
    if config.drop_path is not None:
        overrides["drop_path_rate"] = config.drop_path
    if config.img_size is not None:
        overrides["img_size"] = config.img_size
    return swinkit.create_model(
        config.model, pretrained=config.pretrained, num_classes=len(classes), labels=tuple(classes), **overrides
    )


def augment_config(config: TrainConfig) -> AugmentConfig:
    """The training augmentation the settings describe."""
    return AugmentConfig(
        scale=tuple(config.scale) if config.scale is not None else (1.0, 1.0),
        crop=config.crop,
        pad=config.pad or 0,
        hflip=config.hflip,
        auto_augment=config.auto_augment or "none",
        re_prob=config.re_prob or 0.0,
        mixup=config.mixup or 0.0,
        cutmix=config.cutmix or 0.0,
        label_smoothing=config.label_smoothing or 0.0,
    )


class ClassificationEvaluator(Evaluator):
    """Cross-entropy, top-1/top-5 and the confusion matrix over the validation batches of ``(images, labels)``."""

    def __init__(self, task: ClassifyTask) -> None:
        self.runtime = task.runtime
        self.counter = ConfusionCounter(len(task.classes), task.runtime.device)

    def update(self, model: nn.Module, batch: Any) -> None:
        images, targets = batch
        device = self.runtime.device
        images, targets = images.to(device), targets.to(device)
        with self.runtime.autocast():
            logits = model(images)
        self.counter.add(logits.float(), targets)

    def compute(self) -> Evaluation:
        return self.counter.result(self.runtime.context)


class ClassifyTask(Task):
    """Classification: top-1 accuracy picks the best checkpoint; batches are ``(images, labels)``."""

    name: ClassVar[str] = "classify"
    description: ClassVar[str] = "image classification: labelled images in, a class per image out"
    primary: ClassVar[Metric] = Metric("top1", "max")
    val_columns: ClassVar[tuple[str, ...]] = ("loss", "top1", "top5")
    train_columns: ClassVar[tuple[str, ...]] = ("top1",)
    curves: ClassVar[Mapping[str, str]] = MappingProxyType({"val_top1": "top-1", "val_top5": "top-5"})
    curves_title: ClassVar[str] = "validation accuracy (%)"
    repeats_small_sets: ClassVar[bool] = True

    def resolve(self, config: TrainConfig) -> TrainConfig:
        """The recipe's settings; fine-tuning from a SimMIM checkpoint without ``layer_decay`` (and without LoRA)
        takes the official layer decay of the encoder's size (:func:`~swinkit.train.layer_decay.default_layer_decay`).
        """
        if config.pretrained is not None and config.layer_decay is None and not config.lora:
            checkpoint = read_checkpoint(config.pretrained)
            if checkpoint.pretraining:
                config = dataclasses.replace(config, layer_decay=default_layer_decay(checkpoint.config()))
        return config.resolved()

    def recipe_line(self, recipe_name: str) -> str:
        return RECIPE_LINES[recipe_name]

    def load_data(self, config: TrainConfig) -> int:
        self.data: DataBundle = load_data(
            config.data,
            val=config.val,
            val_split=config.val_split,
            seed=config.seed,
            skip_bad_images=config.skip_bad_images,
            keep_in_memory=config.memory_limit,
        )
        if self.data.skipped:
            self.runtime.log(f"skipped {self.data.skipped} unreadable image(s) (--skip-bad-images)")
        self.classes = list(self.data.classes)
        return len(self.data.train)

    def choose_recipe(self, config: TrainConfig) -> RecipePlan:
        profile = profile_data(self.data.train, seed=config.seed)
        chosen, choices, candidates = recipe.from_data(config, profile)
        return RecipePlan(chosen, choices, candidates)

    def after_timing(
        self, config: TrainConfig, epochs: int, steps_per_epoch: int, reason: str
    ) -> tuple[TrainConfig, list[recipe.Choice]]:
        config, choices = recipe.after_timing(config, epochs, steps_per_epoch, reason, self.images_per_class)
        self._set_augmentation(config)
        return config, choices

    @property
    def images_per_class(self) -> float:
        """Training images per class, on average."""
        return len(self.data.train) / max(1, len(self.classes))

    def build_model(self, config: TrainConfig) -> SwinTransformer:
        model = build_classifier(config, self.classes)
        if config.grad_checkpointing:
            model.set_grad_checkpointing(True)
        if config.freeze_backbone:
            for name, parameter in model.named_parameters():
                parameter.requires_grad_(name.startswith("head."))
        return model

    def preprocessing(self, config: TrainConfig, model: nn.Module) -> Preprocessing:
        """The checkpoint's preprocessing (or the default) for this model's size, with the run's choices."""
        size, channels = model.config.img_size, model.config.in_chans
        stored = getattr(model, "pretrained_cfg", None)
        base = (
            Preprocessing.from_dict(stored).for_model(size, channels)
            if stored
            else Preprocessing.default(size, channels)
        )
        changes = {key: getattr(config, key) for key in ("mean", "std", "crop_pct") if getattr(config, key) is not None}
        return base.replace(**changes)

    def run_record(self, model: nn.Module) -> dict[str, Any]:
        return {"model": model.config.to_dict(), "classes": self.classes}

    def headline(self, model: nn.Module) -> str:
        parameters = sum(p.numel() for p in model.parameters())
        return (
            f"{model.config.embed_dim}-wide Swin ({parameters:,} parameters) on {len(self.data.train)} images, "
            f"{len(self.classes)} classes"
        )

    def build_loaders(
        self,
        config: TrainConfig,
        preprocessing: Preprocessing,
        sampler: DistributedSampler,
        generator: torch.Generator,
    ) -> Loaders:
        """Batches augmented from one uint8 tensor when the images fit in memory, else a DataLoader."""
        runtime, data = self.runtime, self.data
        device, context = runtime.device, runtime.context
        self._preprocessing = preprocessing
        augment = augment_config(config)
        val_dataset = data.val if data.val is not None and len(data.val) else None
        self.train_labels = torch.tensor(data.train.labels)
        self.tensor_path = fits_as_tensor(data.train, preprocessing, config.memory_limit)
        workers = config.workers
        if self.tensor_path:
            self.train_images = stack_images(data.train, preprocessing)
            self.train_loader: Any = TensorBatches(
                self.train_images,
                self.train_labels,
                config.batch_size,
                sampler,
                BatchAugment(preprocessing, augment if config.augment else None),
                device,
                generator,
            )
            workers = 0 if workers is None else workers
            where = (
                f"decoded once and kept in memory ({format_size(self.train_images.numel())} as uint8 at "
                f"{preprocessing.img_size[0]}x{preprocessing.img_size[1]}); batches augmented in the "
                f"training process"
            )
        else:
            workers = loader_workers(device, cores()) if workers is None else workers
            train_transform = build_transforms(config.augment, preprocessing, augment if config.augment else None)
            self.train_loader = DataLoader(
                TransformedDataset(data.train, train_transform),
                batch_size=config.batch_size,
                sampler=sampler,
                num_workers=workers,
                generator=generator,
                persistent_workers=False,
                pin_memory=device.type == "cuda",
            )
            kept = "decoded once and kept in memory" if in_memory(data.train) else "read from their files"
            where = (
                f"{kept}, transformed per image by {workers} loading process(es) "
                f"(--workers; within --memory-limit {format_size(config.memory_limit)} in memory as tensors "
                f"when no larger than the input)"
            )
        self._set_augmentation(config)
        val_loader: Any = None
        if val_dataset is not None:
            rows = range(context.rank, len(val_dataset), context.world_size)
            left = config.memory_limit - (self.train_images.numel() if self.tensor_path else 0)
            if fits_as_tensor(val_dataset, preprocessing, left):
                val_images = stack_images(val_dataset, preprocessing)
                labels = torch.tensor(val_dataset.labels)
                val_loader = TensorBatches(
                    val_images, labels, 2 * config.batch_size, rows, BatchAugment(preprocessing, None), device
                )
            else:
                val_set = TransformedDataset(val_dataset, build_transforms(False, preprocessing))
                val_loader = DataLoader(Subset(val_set, rows), batch_size=2 * config.batch_size, num_workers=workers)
        val_count = len(val_dataset) if val_dataset is not None else 0
        return Loaders(
            train=self.train_loader,
            val=val_loader,
            train_count=len(data.train),
            val_count=val_count,
            workers=workers,
            description=f"data: {len(data.train):,} training and {val_count:,} validation images, {where}",
        )

    def _set_augmentation(self, config: TrainConfig) -> None:
        """The training augmentation and mixing of ``config`` (again after the recipe's last choices).

        Without augmentation, training images get the evaluation transform and no mixing.
        """
        augment = augment_config(config)
        self.mixup = build_mixup(augment, len(self.classes)) if config.augment else None
        # Mixed targets arrive already smoothed.
        self.smoothing = 0.0 if self.mixup is not None else config.label_smoothing or 0.0
        batch_augment = augment if config.augment else None
        if self.tensor_path:
            self.train_loader.augment = BatchAugment(self._preprocessing, batch_augment)
        else:
            self.train_loader.dataset.transform = build_transforms(config.augment, self._preprocessing, batch_augment)

    def timing_batch(self, size: int) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
        """Training images and labels: augmented anew each call on the tensor path."""
        device = self.runtime.device
        if self.tensor_path:
            rows = torch.randperm(len(self.train_images), generator=torch.Generator().manual_seed(0))[:size]
            images = self.train_images[rows].to(device)
            labels = self.train_labels[rows].to(device)
            generator = torch.Generator().manual_seed(0)
            return lambda: (self.train_loader.augment(images, generator), labels)
        items = [self.train_loader.dataset[index] for index in range(size)]
        images = torch.stack([image for image, _ in items]).to(device)
        labels = torch.tensor([label for _, label in items]).to(device)
        return lambda: (images, labels)

    def training_step(self, model: nn.Module, batch: Any) -> StepOutput:
        """Mixed (when MixUp or CutMix is on) cross-entropy; top-1 counted on unmixed batches only."""
        device = self.runtime.device
        images, targets = batch
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        hard = targets
        if self.mixup is not None:
            images, targets = self.mixup(images, targets)
        with self.runtime.autocast():
            logits = model(images)
        loss = soft_target_cross_entropy(logits.float(), targets, self.smoothing)
        count = images.shape[0]
        if self.mixup is not None:
            return StepOutput(loss, count)
        return StepOutput(loss, count, {"top1": 100.0 * topk_correct(logits.detach(), hard, (1,))[0]})

    def evaluator(self) -> ClassificationEvaluator:
        return ClassificationEvaluator(self)

    def epoch_text(self, row: Mapping[str, Any]) -> str:
        text = f"train loss {row['train_loss']:.4f}"
        if row["val_top1"] != "":
            text += f"  val loss {row['val_loss']:.4f}  top-1 {row['val_top1']:.2f}%  top-5 {row['val_top5']:.2f}%"
        return text

    def final_pictures(self, result: Evaluation, folder: Path) -> list[Path]:
        path = folder / "confusion_matrix.png"
        plots.plot_confusion(result.confusion, self.classes, path, "validation confusion matrix")
        return [path]

    def closing_lines(self, config: TrainConfig, model: nn.Module) -> list[str]:
        """For a data-chosen run from scratch: what was chosen, and the small-data benchmark's figure for it."""
        if config.recipe != "auto":
            return []
        parameters = sum(parameter.numel() for parameter in model.parameters())
        return recipe_report.report_lines(config, self.images_per_class, parameters, model.config.stem)

    def summary(self, result: Evaluation, best: float | None, best_path: Path) -> str:
        return (
            f"accuracy: {result.top1:.2f}% top-1, {result.top5:.2f}% top-5 on {result.count} validation images "
            f"(best top-1 {best:.2f}%, saved as {best_path})"
        )

    # The commands.

    @classmethod
    def add_arguments(cls, command: Command, group: argparse._ArgumentGroup) -> None:
        if command == "predict":
            group.add_argument("--topk", type=int, help=f"how many labels per image (default {TOPK})")

    def evaluate(self, source: str, data: str, options: CommandOptions) -> Report:
        """Top-1, top-5, per-class accuracy and the confusion matrix (a picture in ``options.output``)."""
        classifier = load_classifier(source, options.device, options.precision, options.patch_remainder)
        result = evaluate_data(classifier, data, options.batch_size, options.workers, options.skip_bad_images)
        per_class = {
            name: (None if math.isnan(value) else value) for name, value in zip(classifier.classes, result.per_class)
        }
        report = {
            "model": source,
            "data": data,
            "precision": classifier.precision,
            "images": result.count,
            "loss": result.loss,
            "top1": result.top1,
            "top5": result.top5,
            "per_class": per_class,
            "confusion_matrix": result.confusion.tolist(),
            "classes": classifier.classes,
        }
        picture = (options.output or Path(".")) / "eval_confusion_matrix.png"
        plots.plot_confusion(result.confusion, classifier.classes, picture, data)
        width = max(len(name) for name in classifier.classes)
        lines = [
            f"{result.count} images, {classifier.precision}: top-1 {result.top1:.2f}%  top-5 {result.top5:.2f}%  "
            f"loss {result.loss:.4f}",
            *(f"  {name:<{width}}  {'-' if value is None else f'{value:6.2f}%'}" for name, value in per_class.items()),
        ]
        return Report(report, lines, [picture])

    def predict(self, source: str, inputs: Sequence[str], options: CommandOptions) -> Report:
        """The top labels and their probabilities per image (``--topk``, default :data:`TOPK`)."""
        classifier = load_classifier(source, options.device, options.precision, options.patch_remainder)
        topk = options.extra.get("topk")
        predictions = label_images(classifier, inputs, TOPK if topk is None else int(topk), options.batch_size)
        width = max(len(p.path) for p in predictions)
        lines = []
        for p in predictions:
            if p.error is not None:
                lines.append(f"{p.path:<{width}}  unreadable: {p.error}")
                continue
            labels = "  ".join(f"{label} {probability:.3f}" for label, probability in zip(p.labels, p.probabilities))
            lines.append(f"{p.path:<{width}}  {labels}")
        failed = any(p.error is not None for p in predictions)
        return Report([p.to_dict() for p in predictions], lines, code=1 if failed else 0)
