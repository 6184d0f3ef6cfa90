"""Semantic segmentation: a Swin UperNet trained on images with masks of class indices.

What the training loop leaves to a task, for segmentation: the image/mask pairs and their
class names (:mod:`swinkit.data.segmentation`), the segmenter (fresh, or from a
classification checkpoint as its backbone, or from a segmentation checkpoint), the joint
transforms (:mod:`swinkit.data.seg_transforms`), the cross-entropy with the ignore index
plus 0.4 of the auxiliary head's, mIoU, pixel accuracy and per-class IoU
(:mod:`swinkit.train.seg_metrics`), the recipe chosen from the data
(:mod:`swinkit.train.seg_recipe`), and the pictures (a grid of validation images with their
ground truth and prediction, the per-class IoU chart). The commands reach a trained
segmenter through :mod:`swinkit.segmenter`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset

from swinkit.checkpoints import io
from swinkit.checkpoints.segmentation import create_segmenter, detect_format, save_segmenter
from swinkit.data.seg_transforms import PairDataset, SegAugment, build_seg_transforms
from swinkit.data.segmentation import IGNORE_INDEX, SegmentationBundle, load_segmentation
from swinkit.model import SwinUperNet, create_model
from swinkit.model.upernet import PREFIX, resize, segmentation_loss
from swinkit.preprocessing import Preprocessing
from swinkit.segmenter import evaluate_masks, open_segmenter, predict_masks
from swinkit.tasks.base import Command, CommandOptions, Report, Task
from swinkit.train import seg_recipe
from swinkit.train.config import DEFAULT_BUDGET, TrainConfig
from swinkit.train.optim import parameter_groups
from swinkit.train.recipe import Candidate, Choice
from swinkit.train.seg_metrics import ConfusionMeter, SegmentationScores
from swinkit.train.task import Evaluator, Loaders, Metric, RecipePlan, Scores, StepOutput, cores, loader_workers
from swinkit.viz.figure import save_figure
from swinkit.viz.segmentation import draw_class_iou, draw_segmentation_grid

#: Metrics of every validation, before the per-class IoU columns (``iou_<class>``).
METRICS = ("loss", "miou", "pixel_accuracy", "mean_accuracy")
#: Classes whose IoU the epoch line lists (more: only in ``metrics.csv``).
LINE_CLASSES = 8
#: The run folder's pictures.
GRID_FILE = "validation_grid.png"
IOU_FILE = "class_iou.png"
#: Where ``swinkit predict`` writes masks and overlays unless told.
PREDICT_FOLDER = "masks"
#: Settings the segmentation recipe fixes whatever the data, from scratch and from pretrained weights.
SCRATCH_FIXED = {"accum_steps": 1, "lr_base_batch": 0, "min_lr": 1e-5, "weight_decay": 0.05, "clip_grad": 5.0,
                 "crop_pct": 1.0, "label_smoothing": 0.0, "schedule": "cosine"}  # fmt: skip
PRETRAINED_FIXED = {"accum_steps": 1, "lr_base_batch": 0, "min_lr": 0.0, "weight_decay": 0.01, "clip_grad": 0.0,
                    "crop_pct": 1.0, "label_smoothing": 0.0, "schedule": "poly"}  # fmt: skip


def collate_lists(
    batch: Sequence[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Validation batches as lists: images and masks keep their own sizes."""
    return [image for image, _ in batch], [mask for _, mask in batch]


class SegmentationEvaluator(Evaluator):
    """Cross-entropy and the confusion matrix at the masks' resolution; keeps a few samples for the grid.

    A batch is ``(images, masks)``: stacked tensors (training batches, when steps are timed)
    or lists of tensors of their own sizes (validation); same-sized images run together.
    """

    def __init__(self, task: SegmentTask) -> None:
        self.task = task
        self.runtime = task.runtime
        self.meter = ConfusionMeter(len(task.classes), task.runtime.device)
        self.sums = torch.zeros(2, dtype=torch.float64, device=task.runtime.device)
        self.samples: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def update(self, model: nn.Module, batch: Any) -> int:
        images, masks = batch
        device = self.runtime.device
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, image in enumerate(images):
            groups.setdefault(tuple(image.shape), []).append(index)
        for members in groups.values():
            pixels = torch.stack([images[i] for i in members]).to(device)
            with self.runtime.autocast():
                logits = model(pixels)
            for row, index in enumerate(members):
                mask = masks[index].to(device)[None]
                scaled = resize(logits[row : row + 1].float(), mask.shape[-2:])
                self.sums[0] += F.cross_entropy(scaled, mask, ignore_index=IGNORE_INDEX, reduction="sum").double()
                self.sums[1] += int((mask != IGNORE_INDEX).sum())
                predicted = self.meter.update(scaled, mask)
                if len(self.samples) < self.task.grid_rows:
                    self.samples.append((images[index].cpu(), mask[0].cpu(), predicted[0].cpu()))
        return len(images)

    def compute(self) -> Scores:
        context = self.runtime.context
        context.all_reduce_sum(self.meter.confusion)
        context.all_reduce_sum(self.sums)
        if not int(self.sums[1]) and not int(self.meter.confusion.sum()):
            raise ValueError("nothing was evaluated: the validation batches hold no labelled pixel")
        scores = self.meter.scores(float(self.sums[0] / self.sums[1]))
        metrics = {
            "loss": scores.loss,
            "miou": scores.miou,
            "pixel_accuracy": scores.pixel_accuracy,
            "mean_accuracy": scores.mean_accuracy,
            **{f"iou_{name}": value for name, value in zip(self.task.classes, scores.iou)},
        }
        return Scores(metrics, int(self.sums[1]), (scores, self.samples))


class SegmentTask(Task):
    """Segmentation: mIoU picks the best checkpoint; batches are ``(images, masks)``, masks 255 where ignored."""

    name: ClassVar[str] = "segment"
    description: ClassVar[str] = "semantic segmentation: images with masks in, a class per pixel out"
    primary: ClassVar[Metric] = Metric("miou", "max")
    val_columns: tuple[str, ...] = METRICS
    curves: ClassVar[Mapping[str, str]] = MappingProxyType(
        {"val_miou": "mIoU", "val_pixel_accuracy": "pixel accuracy", "val_mean_accuracy": "mean accuracy"}
    )
    curves_title: ClassVar[str] = "validation (%)"
    #: Validation samples drawn in the run's grid.
    grid_rows: ClassVar[int] = 4

    # Settings and data.

    def resolve(self, config: TrainConfig) -> TrainConfig:
        """Segmentation has one recipe, ``auto``: chosen from the data, with the official schedule when pretrained."""
        if config.data in (None, "digits"):
            raise ValueError(
                "--task segment needs --data: a folder of images/ and masks/, ADE20K's layout, or a datasets folder"
            )
        if config.recipe not in (None, "auto"):
            raise ValueError(
                f"--task segment chooses its recipe from the data (recipe auto; with --pretrained the official "
                f"schedule), not recipe {config.recipe!r}"
            )
        fixed = PRETRAINED_FIXED if config.pretrained else SCRATCH_FIXED
        filled = dataclasses.replace(config, recipe="auto")
        for key, value in fixed.items():
            if getattr(filled, key) is None:
                setattr(filled, key, value)
        if filled.time_budget is None and filled.epochs is None:
            filled.time_budget = DEFAULT_BUDGET
        if filled.layer_decay is None:
            filled.layer_decay = 1.0
        filled.validate()
        return filled

    def load_data(self, config: TrainConfig) -> int:
        self.data: SegmentationBundle = load_segmentation(
            config.data,  # type: ignore[arg-type]  # resolve() refuses a run without data
            val=config.val,
            val_split=config.val_split,
            seed=config.seed,
            zero_is_ignore=config.task_options.get("zero_is_ignore"),
        )
        self.classes = list(self.data.classes)
        self.val_columns = METRICS + tuple(f"iou_{name}" for name in self.classes)
        return len(self.data.train)

    def choose_recipe(self, config: TrainConfig) -> RecipePlan:
        model = config.model.removeprefix(PREFIX) if config.model else None
        chosen, choices = seg_recipe.choose_recipe(
            self.data.profile,
            pretrained=bool(config.pretrained),
            crop=config.img_size,
            batch=config.batch_size,
            lr=config.lr,
            backbone=model,
            head=config.model_overrides.get("channels"),
        )
        overrides = dict(chosen.overrides)
        if not config.pretrained:
            overrides |= {"channels": chosen.head, "aux_channels": chosen.aux_head}
        changes: dict[str, Any] = {
            "img_size": chosen.crop,
            "batch_size": chosen.batch,
            "lr": chosen.lr,
            "model_overrides": overrides | dict(config.model_overrides),
            "mean": config.mean or chosen.mean,
            "std": config.std or chosen.std,
            "hflip": chosen.augment.hflip if config.hflip is None else config.hflip,
        }
        if chosen.backbone is not None:
            changes["model"] = PREFIX + chosen.backbone
        candidates = [
            Candidate(PREFIX + c.model, c.overrides | _head_widths(c.model), c.gflops) for c in chosen.candidates
        ]
        self.recipe = chosen
        return RecipePlan(dataclasses.replace(config, **changes), choices, candidates)

    def after_timing(
        self, config: TrainConfig, epochs: int, steps_per_epoch: int, reason: str
    ) -> tuple[TrainConfig, list[Choice]]:
        timed, choices = seg_recipe.after_timing(self.recipe, epochs, steps_per_epoch, reason)
        warmup = config.warmup_epochs if config.warmup_epochs is not None else timed.warmup_epochs
        if config.warmup_epochs is not None:
            choices = [choice for choice in choices if choice.setting != "warm-up"]
        return dataclasses.replace(config, epochs=epochs, warmup_epochs=warmup), choices

    # The model.

    def build_model(self, config: TrainConfig) -> SwinUperNet:
        """The segmenter of ``config`` for the data's classes: fresh, or from ``config.pretrained``."""
        overrides = dict(config.model_overrides)
        if config.drop_path is not None:
            overrides["drop_path_rate"] = config.drop_path
        if config.img_size is not None:
            overrides["img_size"] = config.img_size
        overrides |= {"num_classes": len(self.classes), "labels": tuple(self.classes)}
        if config.pretrained:
            located = io.locate(config.pretrained)
            raw = io.read_weights(located.weights)
            if detect_format(list(raw)) is None and config.model is None:
                self.runtime.log(f"{config.pretrained}: a classifier; its weights start the backbone, heads are new")
            model = create_segmenter(located, raw, config.model, **overrides)
        elif config.model is None:
            raise ValueError("a fresh segmenter needs a model name (--model upernet_swin_atto, ...) or --pretrained")
        else:
            model = create_model(config.model, **overrides)
        if config.grad_checkpointing:
            model.backbone.set_grad_checkpointing(True)
        if config.freeze_backbone:
            for parameter in model.backbone.parameters():
                parameter.requires_grad_(False)
        self.aux_weight = model.config.aux_weight
        return model

    def parameter_groups(self, model: nn.Module, weight_decay: float, layer_decay: float) -> list[dict[str, object]]:
        """The layer-wise decay (``layer_decay`` < 1) over the Swin backbone's blocks; the heads at the base rate."""
        return parameter_groups(model, weight_decay, layer_decay, "backbone.", model.config.backbone.depths)

    def preprocessing(self, config: TrainConfig, model: nn.Module) -> Preprocessing:
        """The training crop as the input size, with the run's normalisation (the checkpoint's, else ImageNet's)."""
        backbone = model.config.backbone
        size, channels = backbone.img_size, backbone.in_chans
        stored = getattr(model, "pretrained_cfg", None)
        base = Preprocessing.from_dict(stored).for_model(size, channels) if stored else None
        base = base or Preprocessing.default(size, channels)
        changes = {key: getattr(config, key) for key in ("mean", "std") if getattr(config, key) is not None}
        return base.replace(crop_pct=1.0, **changes)

    def lora_heads(self, model: nn.Module) -> tuple[str, ...]:
        """Both heads and the stage norms train fully beside the adapters of a LoRA run."""
        norms = model.stage_norms if model.stage_norms is not None else []
        return ("head", "aux_head", *(f"stage_norms.{index}" for index in range(len(norms))))

    def run_record(self, model: nn.Module) -> dict[str, Any]:
        return {"model": model.config.to_dict(), "classes": self.classes}

    def headline(self, model: nn.Module) -> str:
        parameters = sum(p.numel() for p in model.parameters())
        backbone = model.config.backbone
        return (
            f"UperNet on a {backbone.embed_dim}-wide Swin ({parameters:,} parameters) on {len(self.data.train)} "
            f"images, {len(self.classes)} classes"
        )

    def save_model(self, model: nn.Module, folder: Path, preprocessing: Preprocessing) -> None:
        save_segmenter(model, folder, preprocessing=preprocessing)  # type: ignore[arg-type]

    # Batches.

    def build_loaders(
        self,
        config: TrainConfig,
        preprocessing: Preprocessing,
        sampler: DistributedSampler,
        generator: torch.Generator,
    ) -> Loaders:
        """Pairs transformed per image by loading processes; validation images at their own sizes."""
        runtime, data = self.runtime, self.data
        self._preprocessing = preprocessing
        workers = loader_workers(runtime.device, cores()) if config.workers is None else config.workers
        self.train_set = PairDataset(data.train, self._train_transform(config, preprocessing))
        train_loader = DataLoader(
            self.train_set,
            batch_size=config.batch_size,
            sampler=sampler,
            num_workers=workers,
            generator=generator,
            drop_last=len(data.train) > config.batch_size,
            pin_memory=runtime.device.type == "cuda",
        )
        val_loader = None
        val_count = len(data.val) if data.val is not None else 0
        if val_count:
            size = min(preprocessing.img_size)
            transform = build_seg_transforms(False, size=size, mean=preprocessing.mean, std=preprocessing.std,
                                             mode=preprocessing.mode)  # fmt: skip
            rows = range(runtime.context.rank, val_count, runtime.context.world_size)
            val_loader = DataLoader(
                Subset(PairDataset(data.val, transform), rows),
                batch_size=2 * config.batch_size,
                num_workers=workers,
                collate_fn=collate_lists,
            )
        return Loaders(
            train=train_loader,
            val=val_loader,
            train_count=len(data.train),
            val_count=val_count,
            workers=workers,
            description=(
                f"data: {len(data.train):,} training and {val_count:,} validation pairs, {len(self.classes)} classes; "
                f"rescaled, cropped to {preprocessing.img_size[0]}, flipped and colour-jittered by {workers} loading "
                f"process(es)"
            ),
        )

    def _train_transform(self, config: TrainConfig, preprocessing: Preprocessing) -> Callable:
        size = min(preprocessing.img_size)
        augment = SegAugment(hflip=config.hflip if config.hflip is not None else 0.5)
        if not config.augment:
            augment = SegAugment((1.0, 1.0), 1.0, 0.0, photometric=False)
        return build_seg_transforms(
            True, size=size, mean=preprocessing.mean, std=preprocessing.std, mode=preprocessing.mode, aug=augment
        )

    def timing_batch(self, size: int) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
        items = [self.train_set[index % len(self.train_set)] for index in range(size)]
        device = self.runtime.device
        images = torch.stack([image for image, _ in items]).to(device)
        masks = torch.stack([mask for _, mask in items]).to(device)
        return lambda: (images, masks)

    # Training and evaluation.

    def training_step(self, model: nn.Module, batch: Any) -> StepOutput:
        """Cross-entropy over the labelled pixels plus the auxiliary head's, weighted as the model says (0.4)."""
        device = self.runtime.device
        images, masks = batch
        images, masks = images.to(device, non_blocking=True), masks.to(device, non_blocking=True)
        with self.runtime.autocast():
            outputs = model(images)
        logits, aux = outputs if isinstance(outputs, tuple) else (outputs, None)
        loss = segmentation_loss(logits.float(), masks, None if aux is None else aux.float(), self.aux_weight)
        return StepOutput(loss, images.shape[0])

    def evaluator(self) -> SegmentationEvaluator:
        return SegmentationEvaluator(self)

    def epoch_text(self, row: Mapping[str, Any]) -> str:
        text = f"train loss {row['train_loss']:.4f}"
        if row["val_miou"] != "":
            text += (
                f"  val loss {row['val_loss']:.4f}  mIoU {row['val_miou']:.2f}%  "
                f"pixel accuracy {row['val_pixel_accuracy']:.2f}%"
            )
            if len(self.classes) <= LINE_CLASSES:
                text += "  IoU " + ", ".join(f"{name} {_shown(row['val_iou_' + name])}" for name in self.classes)
        return text

    def final_pictures(self, result: Scores, folder: Path) -> list[Path]:
        scores, samples = result.details
        paths = [save_figure(draw_class_iou(scores.iou, self.classes, "validation IoU per class"), folder / IOU_FILE)]
        if samples:
            images = [self._displayed(image, mask.shape) for image, mask, _ in samples]
            grid = draw_segmentation_grid(
                images, [m for _, m, _ in samples], [p for _, _, p in samples], self.classes, "validation"
            )
            paths.append(save_figure(grid, folder / GRID_FILE))
        return paths

    def _displayed(self, image: torch.Tensor, size: Sequence[int]) -> np.ndarray:
        """A normalised image tensor back to uint8 pixels at the mask's size."""
        pre = self._preprocessing
        mean, std = torch.tensor(pre.mean)[:, None, None], torch.tensor(pre.std)[:, None, None]
        pixels = resize((image * std + mean)[None], size)[0]
        array = (pixels.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        return array[..., 0] if array.shape[2] == 1 else array

    def summary(self, result: Scores, best: float | None, best_path: Path) -> str:
        scores: SegmentationScores = result.details[0]
        return (
            f"validation: mIoU {scores.miou:.2f}%, pixel accuracy {scores.pixel_accuracy:.2f}% over "
            f"{scores.pixels:,} pixels (best mIoU {best:.2f}%, saved as {best_path})"
        )

    # The commands.

    @classmethod
    def add_arguments(cls, command: Command, group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--zero-is-ignore",
            action="store_true",
            default=None,
            help="masks use 0 for unlabelled pixels and 1.. for the classes (ADE20K's; automatic for its layout)",
        )
        if command in ("eval", "predict"):
            group.add_argument("--slide-window", type=int, help="sliding-window inference on crops of this many pixels")
            group.add_argument("--slide-stride", type=int, help="the sliding window's step (default 2/3 of the crop)")
        if command == "predict":
            group.add_argument("--masks-to", help=f"folder for the masks and overlays (default ./{PREDICT_FOLDER})")

    @classmethod
    def recognises(cls, source: str) -> bool:
        """Whether ``source`` holds a segmenter (its weights' names say so)."""
        try:
            located = io.locate(source)
            return detect_format(list(io.read_weights(located.weights))) is not None
        except (OSError, ValueError):
            return False

    def evaluate(self, source: str, data: str, options: CommandOptions) -> Report:
        """mIoU, pixel accuracy, per-class IoU and accuracy (a table, and its picture in ``options.output``)."""
        segmenter = _open(source, options)
        result = evaluate_masks(segmenter, data, options.extra.get("zero_is_ignore"))
        scores = result.scores
        report = {
            "model": source,
            "data": data,
            "precision": segmenter.precision,
            "images": result.images,
            "pixels": scores.pixels,
            "loss": scores.loss,
            "miou": scores.miou,
            "pixel_accuracy": scores.pixel_accuracy,
            "mean_accuracy": scores.mean_accuracy,
            "iou": {name: _json(value) for name, value in zip(segmenter.classes, scores.iou)},
            "accuracy": {name: _json(value) for name, value in zip(segmenter.classes, scores.accuracy)},
            "confusion_matrix": scores.confusion.tolist(),
            "classes": segmenter.classes,
        }
        picture = save_figure(
            draw_class_iou(scores.iou, segmenter.classes, f"IoU per class: {data}"),
            (options.output or Path(".")) / "eval_class_iou.png",
        )
        lines = [
            f"{result.images} images, {scores.pixels:,} pixels, {segmenter.precision}: mIoU {scores.miou:.2f}%  "
            f"pixel accuracy {scores.pixel_accuracy:.2f}%  loss {scores.loss:.4f}",
            *scores.table(segmenter.classes).splitlines(),
        ]
        return Report(report, lines, [picture])

    def predict(self, source: str, inputs: Sequence[str], options: CommandOptions) -> Report:
        """A class-index mask and a colour overlay per image (``--masks-to``), and the share of each class."""
        segmenter = _open(source, options)
        folder = Path(options.extra.get("masks_to") or options.output or PREDICT_FOLDER)
        predictions = predict_masks(segmenter, inputs, folder)
        width = max(len(p.path) for p in predictions)
        lines = []
        for p in predictions:
            if p.error is not None:
                lines.append(f"{p.path:<{width}}  unreadable: {p.error}")
                continue
            shares = ", ".join(f"{name} {100 * share:.1f}%" for name, share in sorted(p.shares.items(), key=_by_share))
            lines.append(f"{p.path:<{width}}  {p.mask}  {shares}")
        failed = any(p.error is not None for p in predictions)
        files = [Path(f) for p in predictions for f in (p.mask, p.overlay) if f is not None]
        return Report([p.to_dict() for p in predictions], lines, files, code=1 if failed else 0)


def _open(source: str, options: CommandOptions) -> Any:
    extra = options.extra
    window, stride = extra.get("slide_window"), extra.get("slide_stride")
    return open_segmenter(source, options.device, options.precision, window, stride)


def _head_widths(backbone: str) -> dict[str, int]:
    head, aux_head, _ = seg_recipe.choose_head(backbone, pretrained=False)
    return {"channels": head, "aux_channels": aux_head}


def _by_share(item: tuple[str, float]) -> float:
    return -item[1]


def _shown(value: Any) -> str:
    return "-" if value == "" or math.isnan(float(value)) else f"{float(value):.1f}"


def _json(value: float) -> float | None:
    return None if math.isnan(value) else value
