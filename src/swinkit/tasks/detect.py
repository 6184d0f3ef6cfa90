"""Object detection and instance segmentation: a Swin + FPN in torchvision's Faster / Mask R-CNN.

What the training loop leaves to this task: the detection folders (COCO or YOLO,
:mod:`swinkit.data.detection`), the detector (Mask R-CNN when the annotations carry masks,
else Faster R-CNN; ``--detector`` chooses), the recipe from the data (input size, anchors
from the boxes' percentiles, model rung, batch, learning rate; the official schedule from
``--pretrained`` weights), the losses per part, COCO's metric on the validation set (best
by box AP), validation pictures with ground truth and predictions side by side, and the
commands: ``eval`` (the COCO table), ``predict`` (COCO result-format JSON and a picture per
image).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import PIL.Image
import torch
from torch import nn
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF
from torch.utils.data import DataLoader, DistributedSampler, Subset

from swinkit.checkpoints import io
from swinkit.checkpoints.detection import (
    METADATA_FILE,
    create_detector,
    is_detection_checkpoint,
    load_detector,
    save_detector,
)
from swinkit.checkpoints.loading import convert_checkpoint
from swinkit.data.detection import collate, detection_transforms, load_detection
from swinkit.data.images import load_images
from swinkit.model import SwinConfig, get_config
from swinkit.model.detection import DetectorConfig
from swinkit.preprocessing import Preprocessing
from swinkit.tasks.base import Command, CommandOptions, Report, Task
from swinkit.train.coco_eval import METRICS, CocoEvaluation, evaluate_coco, to_coco_results
from swinkit.train.config import TrainConfig
from swinkit.train.detection_recipe import choose_anchors, choose_input_size
from swinkit.train.optim import parameter_groups
from swinkit.train.recipe import Choice
from swinkit.train.rundir import LINKS
from swinkit.train.task import Evaluator, Loaders, Metric, RecipePlan, Scores, StepOutput, cores, loader_workers
from swinkit.viz.detection import draw_detections, side_by_side

#: The parts of torchvision's loss, in the order of the metrics file (``loss_mask`` for Mask R-CNN only).
LOSS_PARTS = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg", "loss_mask")
BOX_COLUMNS = tuple(f"box_{name}" for name in METRICS)
MASK_COLUMNS = tuple(f"mask_{name}" for name in METRICS)
#: Settings of every detection recipe: AdamW with weight decay 0.05 and none of classification's mixing.
DETECT_FIXED = {
    "accum_steps": 1,
    "weight_decay": 0.05,
    "layer_decay": 1.0,
    "clip_grad": 0.0,
    "label_smoothing": 0.0,
    "auto_augment": "none",
    "re_prob": 0.0,
    "mixup": 0.0,
    "cutmix": 0.0,
    "hflip": 0.5,
    "crop_pct": 1.0,
}
#: The official detection schedule (Swin-Transformer-Object-Detection, Mask R-CNN 3x): AdamW 1e-4 at 16 images,
#: weight decay 0.05, 36 epochs, multi-scale training; from pretrained weights.
OFFICIAL = {"lr": 1e-4, "lr_base_batch": 16, "epochs": 36, "batch_size": 2, "warmup_epochs": 0.5, "min_lr": 0.0}
#: From scratch (recipe ``auto``): a higher rate, no scaling, a warm-up epoch.
SCRATCH = {"lr": 5e-4, "lr_base_batch": 0, "warmup_epochs": 1.0, "min_lr": 1e-6}
#: Proposals per image at torchvision's 800-pixel input; fewer for smaller inputs (by area).
PROPOSALS_AT_800 = (2000, 1000)
#: Inputs smaller than this (shorter side) get light heads: :data:`LIGHT_HEADS`.
LIGHT_BELOW = 256
#: FPN channels and box-head samples per image for small inputs (torchvision's are 256 and 512, for 800 px).
LIGHT_HEADS = {"out_channels": 64, "box_batch_size_per_image": 128, "mask_head_channels": 64}
#: Predictions under this score are not drawn or written by ``swinkit predict`` unless ``--score-threshold`` says.
SCORE_THRESHOLD = 0.5
#: Validation images drawn each epoch.
PICTURES = 4


def multi_scale(size: int) -> tuple[int, ...]:
    """Shorter sides for multi-scale training around ``size``: 0.6x to 1x in steps of 32 (the official 480..800)."""
    low = max(32, 32 * round(0.6 * size / 32))
    return tuple(range(low, size, 32)) + (size,)


def read_detector(source: str) -> nn.Module:
    """A trained detector from a run folder (its ``best``, else ``last``) or a detector export folder."""
    path = Path(source)
    for link in reversed(LINKS):  # best, then last
        if (path / link / METADATA_FILE).is_file():
            return load_detector(path / link)
    return load_detector(path)


class DetectionEvaluator(Evaluator):
    """COCO's metric over the validation batches: detections gathered from every process, scored once."""

    def __init__(self, task: DetectTask) -> None:
        self.runtime = task.runtime
        self.truth = task.val_truth
        self.masks = task.masks
        self.category_ids = task.train_data.category_ids
        self.results: list[dict[str, object]] = []
        self.count = 0

    def update(self, model: nn.Module, batch: Any) -> int:
        images, targets = batch
        with self.runtime.autocast():
            outputs = model([image.to(self.runtime.device) for image in images])
        ids = [int(target["image_id"]) for target in targets]
        self.results += to_coco_results(ids, outputs, self.category_ids)
        self.count += len(images)
        return len(images)

    def compute(self) -> Scores:
        gathered = [(self.results, self.count)]
        if self.runtime.context.enabled:
            gathered = [None] * self.runtime.context.world_size  # type: ignore[list-item]
            torch.distributed.all_gather_object(gathered, (self.results, self.count))
        results = [result for part, _ in gathered for result in part]
        count = sum(part for _, part in gathered)
        if count == 0:
            raise ValueError("no validation images were evaluated")
        evaluation = evaluate_coco(self.truth, results, masks=self.masks)
        return Scores(evaluation.scores, count, evaluation)


class DetectTask(Task):
    """Detection: box AP (COCO's, 0.50:0.95) picks the best checkpoint; batches are lists of images and targets."""

    name: ClassVar[str] = "detect"
    description: ClassVar[str] = (
        "object detection (and instance segmentation): a COCO or YOLO folder in, boxes (and masks) out"
    )
    primary: ClassVar[Metric] = Metric("box_AP", "max")
    val_columns: tuple[str, ...] = BOX_COLUMNS  # type: ignore[misc]  (plus the mask columns for masks)
    train_columns: tuple[str, ...] = LOSS_PARTS[:4]  # type: ignore[misc]
    curves_title: ClassVar[str] = "validation AP"

    def recipe_line(self, recipe_name: str) -> str:
        if recipe_name == "finetune":
            return (
                "finetune (the official detection schedule from pretrained weights: AdamW 1e-4 at 16 images, "
                "weight decay 0.05, multi-scale training)"
            )
        return recipe_name

    def resolve(self, config: TrainConfig) -> TrainConfig:
        """Detection's settings, then the named recipe's for anything left: official with weights, else auto.

        ``--model`` takes a backbone (``swin_t``) or a detector name (``maskrcnn_swin_t``, which also
        chooses the detector).
        """
        recipe = config.recipe or ("finetune" if config.pretrained else "auto")
        defaults = DETECT_FIXED | (OFFICIAL if recipe == "finetune" else SCRATCH)
        filled = dataclasses.replace(config, recipe=recipe)
        head, _, variant = (config.model or "").partition("_")
        if head in ("fasterrcnn", "maskrcnn") and variant:
            kind = "mask" if head == "maskrcnn" else "faster"
            filled.model, filled.task_options = variant, {"detector": kind} | dict(config.task_options)
        for key, value in defaults.items():
            if getattr(filled, key) is None:
                setattr(filled, key, value)
        return filled.resolved()

    # Data.

    def load_data(self, config: TrainConfig) -> int:
        if config.data is None:
            raise ValueError("--task detect needs --data: a folder of images/ with annotations.json or labels/")
        data = load_detection(config.data)
        if config.val is not None:
            val = load_detection(config.val)
            if val.category_ids != data.category_ids:
                raise ValueError(
                    f"{config.val} has categories {list(zip(val.category_ids, val.names))} but {config.data} has "
                    f"{list(zip(data.category_ids, data.names))}; both need the same"
                )
            train_rows, val_rows = list(range(len(data))), None
        else:
            val = data
            order = torch.randperm(len(data), generator=torch.Generator().manual_seed(config.seed)).tolist()
            cut = round(len(data) * config.val_split)
            train_rows, val_rows = sorted(order[cut:]), sorted(order[:cut])
        self.train_data, self.val_data = data, val
        self.train_rows = train_rows
        self.val_rows = val_rows if val_rows is not None else list(range(len(val)))
        if config.val is None and not config.val_split:
            self.val_rows = []
        detector = config.task_options.get("detector")
        self.masks = data.has_masks if detector is None else detector == "mask"
        if self.masks and not data.has_masks:
            raise ValueError(f"--detector mask needs segmentations in {config.data}; its annotations have none")
        self.val_columns = BOX_COLUMNS + (MASK_COLUMNS if self.masks else ())
        self.train_columns = LOSS_PARTS if self.masks else LOSS_PARTS[:4]
        truth = val.coco_dict()
        keep = {val.records[row].image_id for row in self.val_rows}
        truth["images"] = [image for image in truth["images"] if image["id"] in keep]
        truth["annotations"] = [a for a in truth["annotations"] if a["image_id"] in keep]
        self.val_truth = truth
        self.statistics = self._statistics(config)
        return len(self.train_rows)

    def _statistics(self, config: TrainConfig) -> dict[str, Any]:
        """Input size and anchors from the training boxes (at the input scale)."""
        records = [self.train_data.records[row] for row in self.train_rows]
        size = config.img_size or choose_input_size([min(r.width, r.height) for r in records])
        boxes = []
        for record in records:
            scale = size / min(record.width, record.height)
            boxes += [((i.box[2] - i.box[0]) * scale, (i.box[3] - i.box[1]) * scale) for i in record.instances]
        levels = self.backbone_config(config).num_stages + 1
        return {"size": size, "anchors": choose_anchors(boxes, levels), "boxes": len(boxes), "images": len(records)}

    def choose_recipe(self, config: TrainConfig) -> RecipePlan:
        """Model rung by the input size and the data's size, batch by the input size, the rest as :data:`SCRATCH`."""
        stats = self.statistics
        size, images = stats["size"], stats["images"]
        choices = [Choice("input size", f"{size} px", "the median shorter side, to a multiple of 32", "--img-size")]
        if config.model is None and self.pretrained_architecture(config) is not None:
            reason = f"the architecture of {config.pretrained}"
            choices.append(Choice("model", "from --pretrained", reason, "--model"))
        elif config.model is None:
            model = "swin_t" if size >= 384 else "swin_atto" if images < 500 else "swin_femto"
            reason = (
                "an input of 384 px or more: Swin-T, the official backbone"
                if model == "swin_t"
                else f"{size}-px inputs and {images} images: the compact ladder's {model} (patch 2, 3 stages)"
            )
            config = dataclasses.replace(config, model=model)
            choices.append(Choice("model", model, reason, "--model"))
            self.statistics = self._statistics(config)
        anchors = self.statistics["anchors"]
        sizes = str([s[0] for s in anchors.sizes])
        choices.append(Choice("anchor sizes", sizes, anchors.sizes_reason, "from the data, scaled by --img-size"))
        choices.append(Choice("aspect ratios", str(list(anchors.ratios)), anchors.ratios_reason, "from the data"))
        if config.batch_size is None:
            batch = max(2, min(16, (512 // size) ** 2 * 2))
            config = dataclasses.replace(config, batch_size=batch)
            choices.append(Choice("batch", str(batch), f"images of {size} px on one device", "--batch-size"))
        if size < LIGHT_BELOW:
            light = f"{LIGHT_HEADS['out_channels']} channels, {LIGHT_HEADS['box_batch_size_per_image']} RoIs"
            reason = f"inputs under {LIGHT_BELOW} px: lighter FPN and mask head (256) and fewer RoIs (512)"
            choices.append(Choice("heads", light, reason, "--img-size"))
        choices.append(Choice("lr", f"{config.lr:g}", "AdamW from scratch, weight decay 0.05", "--lr"))
        return RecipePlan(config, choices)

    # The model.

    def pretrained_architecture(self, config: TrainConfig) -> SwinConfig | None:
        """The encoder's architecture of ``--pretrained`` backbone weights (a classifier, a SimMIM checkpoint, a
        pre-training run), or None: no weights, or a detector's (whose backbone ``--model`` names, Swin-T if not)."""
        if not config.pretrained:
            return None
        cached = getattr(self, "_pretrained", None)
        if cached is None or cached[0] != config.pretrained:
            located = io.locate(config.pretrained)
            raw = io.read_weights(located.weights)
            architecture = None if is_detection_checkpoint(raw) else convert_checkpoint(located, raw).config()
            self._pretrained = (config.pretrained, architecture)
        return self._pretrained[1]

    def backbone_config(self, config: TrainConfig) -> SwinConfig:
        """The backbone: ``--model``'s, else the architecture of ``--pretrained`` backbone weights, else Swin-T;
        ``--set`` fields and ``--drop-path`` applied."""
        overrides = dict(config.model_overrides)
        if config.drop_path is not None:
            overrides["drop_path_rate"] = config.drop_path
        inherited = self.pretrained_architecture(config) if config.model is None else None
        if inherited is not None:
            return inherited.replace(**overrides)
        return get_config(config.model or "swin_t", **overrides)

    def detector_config(self, config: TrainConfig) -> DetectorConfig:
        """The detector the settings and the data's statistics describe."""
        size, anchors = self.statistics["size"], self.statistics["anchors"]
        train_sizes = multi_scale(size) if config.recipe == "finetune" and config.augment else (size,)
        train, test = (max(100, round(n * (size / 800) ** 2)) for n in PROPOSALS_AT_800)
        return DetectorConfig(
            backbone=self.backbone_config(config),
            num_classes=len(self.train_data.names) + 1,
            labels=self.train_data.names,
            category_ids=self.train_data.category_ids,
            masks=self.masks,
            anchor_sizes=anchors.sizes,
            aspect_ratios=anchors.ratios,
            min_size=train_sizes,
            max_size=math.ceil(size * 5 / 3),
            rpn_proposals_train=min(train, PROPOSALS_AT_800[0]),
            rpn_proposals_test=min(test, PROPOSALS_AT_800[1]),
            **(LIGHT_HEADS if size < LIGHT_BELOW else {}),
        )

    def build_model(self, config: TrainConfig) -> nn.Module:
        model = create_detector(self.detector_config(config), backbone_weights=config.pretrained)
        if config.pretrained:
            report = model.load_report
            self.runtime.log(
                f"backbone from {report.source} ({report.format}): {len(report.loaded)} tensors loaded, "
                f"{len(report.not_loaded)} left as built (stage norms, FPN, heads), {len(report.unused)} unused"
            )
        if config.grad_checkpointing:
            model.backbone.body.set_grad_checkpointing(True)
        if config.freeze_backbone:
            model.backbone.body.requires_grad_(False)
        return model

    def parameter_groups(self, model: nn.Module, weight_decay: float, layer_decay: float) -> list[dict[str, object]]:
        """The layer-wise decay (``layer_decay`` < 1) over the Swin backbone's blocks; the heads at the base rate."""
        return parameter_groups(model, weight_decay, layer_decay, "backbone.body.", model.config.backbone.depths)

    def preprocessing(self, config: TrainConfig, model: nn.Module) -> Preprocessing:
        """The detector normalises and resizes inside itself; this records its evaluation size and normalisation."""
        size = model.config.min_sizes[-1]
        return Preprocessing((3, size, size), model.config.image_mean, model.config.image_std, 1.0, "bilinear")

    def save_model(self, model: nn.Module, folder: Path, preprocessing: Preprocessing) -> None:
        save_detector(model, folder)

    def headline(self, model: nn.Module) -> str:
        parameters = sum(p.numel() for p in model.parameters())
        kind = "Mask R-CNN" if self.masks else "Faster R-CNN"
        return (
            f"{kind} on a {model.config.backbone.embed_dim}-wide Swin ({parameters:,} parameters) on "
            f"{len(self.train_rows)} images, {len(self.train_data.names)} classes"
        )

    # Batches.

    def build_loaders(
        self, config: TrainConfig, preprocessing: Preprocessing, sampler: DistributedSampler, generator: torch.Generator
    ) -> Loaders:
        context = self.runtime.context
        workers = loader_workers(self.runtime.device, cores()) if config.workers is None else config.workers
        train_set = Subset(self.train_data.with_transforms(detection_transforms(train=config.augment)), self.train_rows)
        self.train_set = train_set
        train = DataLoader(
            train_set,
            batch_size=config.batch_size,
            sampler=sampler,
            num_workers=workers,
            generator=generator,
            collate_fn=collate,
        )
        val = None
        if self.val_rows:
            rows = self.val_rows[context.rank :: context.world_size]
            self.val_set = Subset(self.val_data.with_transforms(detection_transforms(train=False)), rows)
            val = DataLoader(self.val_set, batch_size=2 * config.batch_size, num_workers=workers, collate_fn=collate)
        boxes = self.statistics["boxes"]
        return Loaders(
            train,
            val,
            len(self.train_rows),
            len(self.val_rows),
            workers,
            f"data: {len(self.train_rows):,} training and {len(self.val_rows):,} validation images "
            f"({self.train_data.layout} layout, {boxes:,} training boxes, {len(self.train_data.names)} classes"
            f"{', masks' if self.masks else ''}), transformed per image by {workers} loading process(es)",
        )

    def timing_batch(self, size: int) -> Callable[[], Any]:
        batch = collate([self.train_set[index] for index in range(size)])
        return lambda: batch

    def training_step(self, model: nn.Module, batch: Any) -> StepOutput:
        device = self.runtime.device
        images, targets = batch
        images = [image.to(device, non_blocking=True) for image in images]
        targets = [{key: value.to(device) for key, value in target.items()} for target in targets]
        with self.runtime.autocast():
            losses = model(images, targets)
        count = len(images)
        sums = {name: float(value.detach()) * count for name, value in losses.items()}
        return StepOutput(sum(loss.float() for loss in losses.values()), count, sums)

    def evaluator(self) -> DetectionEvaluator:
        return DetectionEvaluator(self)

    def epoch_text(self, row: Mapping[str, Any]) -> str:
        parts = "  ".join(
            f"{name.removeprefix('loss_')} {row['train_' + name]:.3f}"
            for name in self.train_columns
            if row[f"train_{name}"] != ""
        )
        text = f"train loss {row['train_loss']:.4f} ({parts})"
        if row["val_box_AP"] != "":
            text += f"  val box AP {row['val_box_AP']:.4f}  AP50 {row['val_box_AP50']:.4f}"
            if self.masks:
                text += f"  mask AP {row['val_mask_AP']:.4f}"
        return text

    # Pictures and the last lines.

    def curve_columns(self) -> Mapping[str, str]:
        columns = {"val_box_AP": "box AP", "val_box_AP50": "box AP50"}
        return columns | ({"val_mask_AP": "mask AP"} if self.masks else {})

    def epoch_pictures(self, model: nn.Module, folder: Path, epoch: int) -> list[Path]:
        """The first validation images, ground truth left and predictions right, in ``val_pictures/``."""
        if not self.val_rows:
            return []
        written = []
        names = self.train_data.names
        for index in range(min(PICTURES, len(self.val_set))):
            image, target = self.val_set[index]
            with torch.no_grad():
                (output,) = model([image.to(self.runtime.device)])
            keep = output["scores"] >= SCORE_THRESHOLD
            truth = draw_detections(image, target["boxes"], target["labels"], names, masks=target.get("masks"))
            found = draw_detections(
                image, output["boxes"][keep], output["labels"][keep], names, output["scores"][keep],
                output["masks"][keep] if "masks" in output else None,
            )  # fmt: skip
            path = folder / "val_pictures" / f"{int(target['image_id'])}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            side_by_side(truth, found).save(path)
            written.append(path)
        return written

    def summary(self, result: Scores, best: float | None, best_path: Path) -> str:
        evaluation: CocoEvaluation = result.details
        return (
            f"COCO metric on {result.count} validation images (best box AP {best:.4f}, saved as {best_path}):\n"
            f"{evaluation.table()}"
        )

    # The commands.

    @classmethod
    def add_arguments(cls, command: Command, group: argparse._ArgumentGroup) -> None:
        if command == "train":
            group.add_argument(
                "--detector",
                choices=("faster", "mask"),
                help="Faster R-CNN (boxes) or Mask R-CNN (boxes and masks); default: mask when the data has masks",
            )
        if command == "predict":
            group.add_argument(
                "--score-threshold",
                type=float,
                help=f"leave out detections scoring less (default {SCORE_THRESHOLD})",
            )
            group.add_argument(
                "--pictures", help="folder for detections.json and a picture per image (default predictions/)"
            )

    @classmethod
    def recognises(cls, source: str) -> bool:
        return (Path(source) / METADATA_FILE).is_file()

    def evaluate(self, source: str, data: str, options: CommandOptions) -> Report:
        """COCO's box (and mask) AP of the detector in ``source`` on the detection folder ``data``."""
        _check_precision(options.precision)
        model = read_detector(source).eval().to(options.device or "cpu")
        dataset = load_detection(data).with_transforms(detection_transforms(train=False))
        config = model.config
        if tuple(dataset.category_ids) != config.foreground_ids:
            raise ValueError(
                f"{data} has categories {list(dataset.category_ids)} but the detector knows "
                f"{list(config.foreground_ids)}"
            )
        loader = DataLoader(dataset, batch_size=options.batch_size, num_workers=options.workers, collate_fn=collate)
        results = []
        with torch.no_grad():
            for images, targets in loader:
                outputs = model([image.to(options.device or "cpu") for image in images])
                results += to_coco_results([int(t["image_id"]) for t in targets], outputs, config.foreground_ids)
        evaluation = evaluate_coco(dataset.coco_dict(), results, masks=config.masks and dataset.has_masks)
        data_out = {"model": source, "data": data, "images": len(dataset), **evaluation.scores}
        lines = [f"{len(dataset)} images, COCO metric (pycocotools):", *evaluation.table().splitlines()]
        return Report(data_out, lines)

    def predict(self, source: str, inputs: Sequence[str], options: CommandOptions) -> Report:
        """COCO result-format detections for every image, written as ``detections.json``, and a picture per image."""
        _check_precision(options.precision)
        model = read_detector(source).eval()
        threshold = options.extra.get("score_threshold")
        threshold = SCORE_THRESHOLD if threshold is None else float(threshold)
        chosen = options.extra.get("pictures")
        output = Path(chosen) if chosen is not None else options.output or Path("predictions")
        paths = _image_files(inputs)
        results, lines, files, failed = [], [], [], False
        names = model.config.labels or tuple(str(i) for i in model.config.foreground_ids)
        for image_id, (path, image) in enumerate(load_images(paths), start=1):
            if not hasattr(image, "convert"):
                lines.append(f"{path}  unreadable: {image.reason}")
                failed = True
                continue
            pixels = detection_transforms(train=False)(_as_image(image))
            with torch.no_grad():
                (detection,) = model([pixels])
            found = to_coco_results([image_id], [detection], model.config.foreground_ids, threshold)
            for result in found:
                result["file_name"] = path
            results += found
            keep = detection["scores"] >= threshold
            picture = draw_detections(
                pixels, detection["boxes"][keep], detection["labels"][keep], names, detection["scores"][keep],
                detection["masks"][keep] if "masks" in detection else None,
            )  # fmt: skip
            target = output / f"{image_id:05d}_{Path(path).stem}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            picture.save(target)
            files.append(target)
            named = [f"{names[int(label) - 1]} {float(score):.2f}" for label, score in
                     zip(detection["labels"][keep], detection["scores"][keep])]  # fmt: skip
            lines.append(f"{path}  {len(named)} detection(s){': ' + ', '.join(named) if named else ''}")
        output.mkdir(parents=True, exist_ok=True)
        written = output / "detections.json"
        written.write_text(json.dumps(results) + "\n")
        lines.append(f"wrote {written} and {len(files)} picture(s) in {output}")
        return Report(results, lines, [written, *files], code=1 if failed else 0)


def _check_precision(precision: str) -> None:
    if precision != "fp32":
        raise ValueError(f"detectors run in fp32 only (torchvision's heads), not {precision}")


def _image_files(inputs: Sequence[str]) -> list[str]:
    suffixes = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in suffixes)
        else:
            files.append(item)
    return files


def _as_image(image: PIL.Image.Image) -> tv_tensors.Image:
    return tv_tensors.Image(TF.pil_to_tensor(image.convert("RGB")))
