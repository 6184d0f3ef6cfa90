"""Detection from scratch: ``swinkit train --task detect`` against torchvision's Mask R-CNN in a plain loop.

    swinkit bench detection               # the full run: 3 seeds x 2 systems, 100 s budgets, then the speed test
    swinkit bench detection --quick       # a smoke run: 64/16 images, seed 0, 30 s budgets, 1 speed round
    swinkit bench detection --budget 150 --seeds 0 1
    swinkit bench detection --run-only    # only the documented runs (AP)
    swinkit bench detection --speed-only  # only step time and memory

The data set is built here without any download (:func:`build_shapes`): 128x128 colour
images with one to four filled shapes (circle, square, triangle; squares and triangles
rotated) of random colour and size (14 to 44 px), not overlapping, on procedural textures
(a colour gradient, two sinusoidal gratings, thin random lines and pixel noise), the shapes
themselves noisy. Each object has its tight box and its mask as compressed RLE, written in
a COCO ``annotations.json`` (three categories, ``iscrowd`` 0): 1,500 training and 300
validation images from two separate random streams (``train/`` and ``val/``).

For each seed, in turn, each in a fresh process:

- ``swinkit train --task detect --data train/ --val val/ --time BUDGET --seed S``: every other
  setting chosen from the data (Mask R-CNN since the annotations have masks; the model rung,
  input size, anchors, heads, batch, lr and epochs), read back from the run folder;
- torchvision's ``maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=4)``
  with ``min_size`` and ``max_size`` set to swinkit's (128 and 214 for this set: neither model
  rescales the 128-px images), its other settings torchvision's defaults, at swinkit's batch,
  trained by a plain PyTorch loop (:class:`PlainLoop`) with torchvision's reference detection
  recipe: horizontal flip, SGD momentum 0.9, weight decay 1e-4, lr 0.02 x batch / 16, linear
  warm-up from 1/1000 over min(1000, a fifth of the run) steps, x0.1 at 16/26 and 22/26 of
  the run (the reference's 26-epoch milestones, compressed into the budget). Its budget is
  the wall time swinkit's run took (``swinkit train`` does at least one epoch, so it may
  take longer than ``--time``); its steps are fitted to it from timed steps, as a user would
  (whole epochs when one or more fit), and it is evaluated once, at the end.

Both are scored by the same code: :func:`swinkit.train.coco_eval.evaluate_coco` (pycocotools)
on the validation set's ground truth; box AP (0.50:0.95), box AP50 and mask AP of the last
epoch. The time reported is each process's wall-clock time from start to exit.

Then step time and memory (``--speed-rounds``): swinkit's detector as the recipe configures
it for this set (the documented run's, else the recipe's first choice before timing), Mask
R-CNN on Swin-T (``maskrcnn_swin_t`` with torchvision's default heads, as the R50 model's) and
torchvision's ``maskrcnn_resnet50_fpn``, at the same input and batch (the recipe's on a GPU,
4 on a CPU, ``--speed-batch``; real training images and targets), untrained: a training step
(losses, backward, SGD step) and inference (up to 100 detections per image) interleaved in
one process, medians of the rounds; the peak memory two training steps add, each model in a fresh process (resident set
on a CPU, the CUDA allocator's peak on a GPU). On a GPU, when there is one, everything runs on it.

Writes ``detection.json`` and ``detection.md`` to ``--output`` (``benchmarks/results``;
``detection_quick.*`` with ``--quick``, ``_run`` or ``_speed`` added with ``--run-only`` or
``--speed-only``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from swinkit.bench import measure, tables
from swinkit.data.detection import load_detection
from swinkit.model import get_config
from swinkit.model.detection import DetectorConfig, build_detector
from swinkit.tasks import get_task
from swinkit.train.coco_eval import evaluate_coco, to_coco_results
from swinkit.train.config import TrainConfig
from swinkit.train.timing import process_age

#: The categories of the set, by COCO id.
CATEGORIES = {1: "circle", 2: "square", 3: "triangle"}
#: The systems of the speed test, in the order of its table; the last is the one the ratios divide by.
SPEED_SYSTEMS = ("swinkit (recipe)", "swinkit maskrcnn_swin_t", "torchvision maskrcnn_resnet50_fpn")
TORCHVISION = SPEED_SYSTEMS[-1]


def texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """A procedural ``(size, size, 3)`` float background: colour gradient, two gratings, thin lines, pixel noise."""
    ys, xs = np.mgrid[0:size, 0:size] / size
    corners = rng.uniform(30, 220, (2, 3))
    direction = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(direction) * xs + np.sin(direction) * ys)[..., None]
    pixels = corners[0] + (corners[1] - corners[0]) * (ramp - ramp.min()) / (np.ptp(ramp) + 1e-9)
    for _ in range(2):
        angle, cycles, phase = rng.uniform(0, np.pi), rng.uniform(2, 14), rng.uniform(0, 2 * np.pi)
        wave = np.sin(2 * np.pi * cycles * (np.cos(angle) * xs + np.sin(angle) * ys) + phase)
        pixels += wave[..., None] * rng.uniform(5, 35) * rng.uniform(0.5, 1.0, 3)
    canvas = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(2, 7)):
        ends = [float(v) for v in rng.uniform(0, size, 4)]
        draw.line(ends, fill=tuple(int(v) for v in rng.integers(0, 256, 3)), width=int(rng.integers(1, 3)))
    return np.asarray(canvas, dtype=np.float64) + rng.normal(0, 8, (size, size, 3))


def shape_mask(
    category: int, side: int, centre: tuple[float, float], size: int, rng: np.random.Generator
) -> np.ndarray:
    """The ``(size, size)`` bool mask of a shape of ``CATEGORIES[category]``, ``side`` px across, at ``centre``."""
    canvas = Image.new("L", (size, size))
    draw = ImageDraw.Draw(canvas)
    cx, cy = centre
    radius = side / 2
    if CATEGORIES[category] == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=1)
    else:
        corners = 4 if CATEGORIES[category] == "square" else 3
        turn = rng.uniform(0, 2 * np.pi)
        angles = turn + 2 * np.pi * np.arange(corners) / corners
        draw.polygon([(cx + radius * math.cos(a), cy + radius * math.sin(a)) for a in angles], fill=1)
    return np.asarray(canvas, dtype=bool)


def shapes_scene(size: int, rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """A ``(size, size, 3)`` uint8 image of 1 to 4 shapes whose boxes do not touch, and ``(category, mask)`` each."""
    pixels = texture(size, rng)
    objects: list[tuple[int, np.ndarray]] = []
    taken = np.zeros((size, size), dtype=bool)
    wanted = int(rng.integers(1, 5))
    for _ in range(20 * wanted):
        if len(objects) == wanted:
            break
        category = int(rng.choice(list(CATEGORIES)))
        side = int(rng.integers(14, 45))
        centre = tuple(float(v) for v in rng.uniform(side / 2 + 1, size - side / 2 - 1, 2))
        mask = shape_mask(category, side, centre, size, rng)
        rows, columns = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        box = (slice(max(0, rows[0] - 1), rows[-1] + 2), slice(max(0, columns[0] - 1), columns[-1] + 2))
        if taken[box].any():
            continue
        taken[box] = True
        colour = rng.uniform(0, 255, 3) + rng.normal(0, 10, (size, size, 3))
        pixels = np.where(mask[..., None], colour, pixels)
        objects.append((category, mask))
    return np.clip(pixels, 0, 255).astype(np.uint8), objects


def coco_annotation(mask: np.ndarray, category: int, image_id: int, annotation_id: int) -> dict[str, object]:
    """A COCO annotation of one object mask: its tight ``bbox`` (x, y, w, h), ``area``, compressed RLE, iscrowd 0."""
    from pycocotools import mask as coco_mask

    rows, columns = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    x, y = int(columns[0]), int(rows[0])
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": category,
        "bbox": [x, y, int(columns[-1]) + 1 - x, int(rows[-1]) + 1 - y],
        "area": int(mask.sum()),
        "iscrowd": 0,
        "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
    }


def write_shapes(root: Path, count: int, size: int, rng: np.random.Generator) -> Path:
    """A COCO folder (``images/``, ``annotations.json``) of ``count`` :func:`shapes_scene` images."""
    (root / "images").mkdir(parents=True)
    images, annotations = [], []
    for image_id in range(1, count + 1):
        pixels, objects = shapes_scene(size, rng)
        name = f"{image_id:05d}.png"
        Image.fromarray(pixels).save(root / "images" / name)
        images.append({"id": image_id, "file_name": name, "width": size, "height": size})
        for category, mask in objects:
            annotations.append(coco_annotation(mask, category, image_id, len(annotations) + 1))
    categories = [{"id": key, "name": name, "supercategory": "shape"} for key, name in CATEGORIES.items()]
    data = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations.json").write_text(json.dumps(data))
    return root


def build_shapes(root: Path, train: int = 1500, val: int = 300, size: int = 128, seed: int = 0) -> Path:
    """The shapes set as ``root/train`` and ``root/val`` COCO folders, from two random streams of ``seed``."""
    write_shapes(root / "train", train, size, np.random.default_rng([seed, 0]))
    write_shapes(root / "val", val, size, np.random.default_rng([seed, 1]))
    return root


Sample = tuple[torch.Tensor, dict[str, torch.Tensor]]


def decoded(folder: Path) -> tuple[list[Sample], list[int], dict[str, list]]:
    """A COCO folder read by swinkit's reader: ``(uint8 image, target)`` samples, image ids, COCO ground truth."""
    dataset = load_detection(folder)
    samples = []
    for index in range(len(dataset)):
        image, target = dataset[index]
        keep = ("boxes", "labels", "masks")
        samples.append((image.as_subclass(torch.Tensor), {k: target[k].as_subclass(torch.Tensor) for k in keep}))
    return samples, [record.image_id for record in dataset.records], dataset.coco_dict()


def flipped(sample: Sample) -> Sample:
    """A sample mirrored left to right: the image, its boxes and its masks."""
    image, target = sample
    width = image.shape[-1]
    boxes = target["boxes"][:, [2, 1, 0, 3]] * torch.tensor([-1, 1, -1, 1]) + torch.tensor([width, 0, width, 0])
    return image.flip(-1), target | {"boxes": boxes, "masks": target["masks"].flip(-1)}


def reference_rate(step: int, total: int, lr: float, warmup: int) -> float:
    """torchvision's reference detection schedule over ``total`` steps: linear warm-up from lr/1000, x0.1 at 16/26
    and 22/26."""
    factor = 0.1 ** sum(step >= round(total * milestone / 26) for milestone in (16, 22))
    if step < warmup:
        alpha = step / warmup
        factor *= 0.001 * (1 - alpha) + alpha
    return lr * factor


class PlainLoop:
    """A plain PyTorch loop training a torchvision detector: flip, SGD with torchvision's reference schedule."""

    def __init__(
        self, model: nn.Module, samples: Sequence[Sample], batch: int, seed: int, device: torch.device = measure.CPU
    ) -> None:
        self.model = model.to(device).train()
        self.samples, self.batch, self.device = list(samples), batch, device
        self.lr = 0.02 * batch / 16
        parameters = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(parameters, lr=self.lr, momentum=0.9, weight_decay=1e-4)
        self.generator = torch.Generator().manual_seed(seed)
        self.steps_per_epoch = math.ceil(len(self.samples) / batch)
        self.total = 1
        self.done = 0

    @property
    def warmup(self) -> int:
        """Warm-up steps: the reference's 1000, at most a fifth of the run."""
        return max(1, min(1000, self.total // 5))

    def batches(self) -> Iterator[tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]]:
        """Batches for ever: float images in [0, 1] and their targets, each mirrored with probability 0.5, epochs in
        random orders."""
        while True:
            order = torch.randperm(len(self.samples), generator=self.generator).tolist()
            for start in range(0, len(order), self.batch):
                rows = order[start : start + self.batch]
                mirror = (torch.rand(len(rows), generator=self.generator) < 0.5).tolist()
                picked = [flipped(self.samples[r]) if m else self.samples[r] for r, m in zip(rows, mirror)]
                images = [(image.float() / 255).to(self.device) for image, _ in picked]
                targets = [{k: v.to(self.device) for k, v in target.items()} for _, target in picked]
                yield images, targets

    def step(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]) -> float:
        """One optimiser step on the sum of the detector's losses; returns that sum."""
        for group in self.optimizer.param_groups:
            group["lr"] = reference_rate(self.done, self.total, self.lr, self.warmup)
        loss = sum(self.model(images, targets).values())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.done += 1
        return float(loss.detach())

    def detections(self, samples: Sequence[Sample]) -> list[dict[str, torch.Tensor]]:
        """The model's detections on every sample (evaluation mode, batches of twice the training batch)."""
        self.model.eval()
        found = []
        with torch.inference_mode():
            for start in range(0, len(samples), 2 * self.batch):
                images = [(image.float() / 255).to(self.device) for image, _ in samples[start : start + 2 * self.batch]]
                found += [{k: v.cpu() for k, v in out.items()} for out in self.model(images)]
        self.model.train()
        return found


def torchvision_maskrcnn(num_classes: int, min_size: int, max_size: int) -> nn.Module:
    """torchvision's Mask R-CNN R50-FPN without any weights, at the given resize; every other setting its default."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    return maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=num_classes, min_size=min_size, max_size=max_size
    )


def device() -> torch.device:
    """The GPU when there is one (as ``swinkit train`` picks), else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else measure.CPU


def run_baseline(data: Path, run: Path, budget: float, seed: int) -> dict:
    """torchvision's Mask R-CNN in :class:`PlainLoop` on ``data``, at the batch and resize of swinkit's ``run``, its
    steps fitted to ``budget`` (counted from this process's start); COCO's metric on ``data/val``."""
    start = time.monotonic() - process_age()
    chosen = json.loads((run / "config.json").read_text())
    detector, batch = chosen["model"], chosen["train"]["batch_size"]
    sizes = detector["min_size"] if isinstance(detector["min_size"], list) else [detector["min_size"]]
    train_samples, _, _ = decoded(data / "train")
    val_samples, val_ids, truth = decoded(data / "val")
    category_ids = [c["id"] for c in truth["categories"]]
    here = device()

    def fresh() -> PlainLoop:
        torch.manual_seed(seed)
        model = torchvision_maskrcnn(len(category_ids) + 1, sizes[-1], detector["max_size"])
        return PlainLoop(model, train_samples, batch, seed, here)

    # Time a few steps (after an untimed one) and one evaluation batch, as a user fitting a budget would.
    loop = fresh()
    batches = loop.batches()
    loop.step(*next(batches))
    measure.synchronize(here)
    began = time.perf_counter()
    for _ in range(3):
        loop.step(*next(batches))
    measure.synchronize(here)
    per_step = (time.perf_counter() - began) / 3
    began = time.perf_counter()
    loop.detections(val_samples[: 2 * batch])
    evaluation = (time.perf_counter() - began) * len(val_samples) / (2 * batch) + 2.0
    steps = max(1, math.floor((budget - (time.monotonic() - start) - evaluation) / per_step))
    epochs = steps // loop.steps_per_epoch
    steps = epochs * loop.steps_per_epoch if epochs else steps
    # The timing steps were real steps: start afresh with a new model and optimiser.
    loop = fresh()
    loop.total = steps
    losses = [loop.step(images, targets) for (images, targets), _ in zip(loop.batches(), range(steps))]
    results = to_coco_results(val_ids, loop.detections(val_samples), category_ids)
    scores = evaluate_coco(truth, results, masks=True).scores
    return {
        **_scores(scores),
        "budget": budget,
        "steps": steps,
        "seconds_per_step": per_step,
        "epochs": steps / loop.steps_per_epoch,
        "batch": batch,
        "lr": loop.lr,
        "final_loss": statistics.mean(losses[-10:]),
        "min_size": sizes[-1],
        "max_size": detector["max_size"],
        "seconds_in_process": time.monotonic() - start,
    }


def _scores(scores: dict[str, float]) -> dict[str, float]:
    return {"box_AP": scores["box_AP"], "box_AP50": scores["box_AP50"], "mask_AP": scores["mask_AP"]}


def run_swinkit(data: Path, output: Path, name: str, budget: float, seed: int) -> dict:
    """``swinkit train --task detect`` in a fresh process, every setting chosen from the data; its last epoch's AP."""
    seconds, printed = measure.run_swinkit(
        "train", "--task", "detect", "--data", str(data / "train"), "--val", str(data / "val"),
        "--time", f"{budget:g}s", "--seed", str(seed), "--output", str(output), "--name", name,
    )  # fmt: skip
    with open(output / name / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    chosen = json.loads((output / name / "config.json").read_text())
    plan = [line for line in printed.splitlines() if line.startswith(("  ", "time:", "data:"))]
    last = {key: float(rows[-1][f"val_{key}"]) for key in ("box_AP", "box_AP50", "mask_AP")}
    return {
        **last,
        "best_box_AP": max(float(row["val_box_AP"]) for row in rows),
        "epochs": len(rows),
        "batch": chosen["train"]["batch_size"],
        "model": chosen["train"]["model"],
        "seconds": seconds,
        "plan": plan,
    }


def compare(data: Path, output: Path, budget: float, seeds: Sequence[int]) -> dict:
    """``swinkit train`` and torchvision's Mask R-CNN in the plain loop, each seed, each in a fresh process."""
    runs: dict[str, list[dict]] = {"swinkit": [], "torchvision": []}
    for seed in seeds:
        name = f"shapes-seed{seed}"
        print(f"seed {seed}: swinkit train --task detect ...", flush=True)
        runs["swinkit"].append(run_swinkit(data, output, name, budget, seed))
        _report(runs["swinkit"][-1])
        # The same wall time as swinkit's run took, which may pass the budget (it trains one epoch at least).
        same = max(budget, runs["swinkit"][-1]["seconds"])
        print(f"seed {seed}: torchvision maskrcnn_resnet50_fpn in a plain loop, {same:.0f} s ...", flush=True)
        began = time.monotonic()
        theirs = measure.worker_result(
            ["bench", "detection", "--baseline", str(data), "--run", str(output / name), "--budget", f"{same:.1f}",
             "--seed", str(seed)]
        )  # fmt: skip
        runs["torchvision"].append(theirs | {"seconds": time.monotonic() - began})
        _report(runs["torchvision"][-1])
    chosen = json.loads((output / f"shapes-seed{seeds[0]}" / "config.json").read_text())
    return {"runs": runs, "detector": chosen["model"], "train": chosen["train"]}


def _report(run: dict) -> None:
    print(
        f"  box AP {run['box_AP']:.4f}, AP50 {run['box_AP50']:.4f}, mask AP {run['mask_AP']:.4f}, "
        f"{run['epochs']:.2f} epochs, {run['seconds']:.1f}s",
        flush=True,
    )


def recipe_detector(data: Path) -> tuple[dict, int]:
    """The detector config (as a dict) and batch swinkit's recipe picks for ``data``, before any timing."""
    task = get_task("detect")
    config = task.resolve(TrainConfig(task="detect", data=str(data / "train"), val=str(data / "val")))
    task.load_data(config)
    plan = task.choose_recipe(config)
    return task.detector_config(plan.config).to_dict(), plan.config.batch_size


def speed_models(recipe: dict) -> dict[str, Callable[[], nn.Module]]:
    """Builders of the speed test's models (:data:`SPEED_SYSTEMS`), at the recipe's classes and resize."""
    chosen = DetectorConfig.from_dict(recipe)
    classes, size, largest = chosen.num_classes, chosen.min_sizes[-1], chosen.max_size
    swin_t = DetectorConfig(get_config("swin_t"), num_classes=classes, masks=True, min_size=size, max_size=largest)
    return dict(zip(SPEED_SYSTEMS, (
        lambda: build_detector(chosen),
        lambda: build_detector(swin_t),
        lambda: torchvision_maskrcnn(classes, size, largest),
    )))  # fmt: skip


def speed_batch(data: Path, batch: int, here: torch.device) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """The first ``batch`` training images and targets, as the models take them."""
    samples, _, _ = decoded(data / "train")
    images = [(image.float() / 255).to(here) for image, _ in samples[:batch]]
    return images, [{k: v.to(here) for k, v in target.items()} for _, target in samples[:batch]]


def detector_steps(model: nn.Module, images: list, targets: list) -> tuple[Callable[[], None], Callable[[], None]]:
    """A training step (sum of the losses, backward, SGD momentum step) and an inference pass of a detector."""
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)

    def train() -> None:
        model.train()
        loss = sum(model(images, targets).values())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def infer() -> None:
        model.eval()
        with torch.inference_mode():
            model(images)

    return train, infer


def training_peak(data: Path, recipe_file: Path, system: str, batch: int) -> dict[str, float]:
    """MB two training steps of ``system`` add at its peak (CUDA allocator's on a GPU, else resident set's)."""
    here = device()
    recipe = json.loads(recipe_file.read_text())
    images, targets = speed_batch(data, batch, here)
    torch.manual_seed(0)
    model = speed_models(recipe)[system]().to(here)
    train, _ = detector_steps(model, images, targets)
    return {"peak_mb": measure.peak_added(train, here)}


def speed(data: Path, scratch: Path, recipe: dict, batch: int, rounds: int) -> dict:
    """Seconds per training step and per inference pass of each model, interleaved; peak memory in fresh processes."""
    here = device()
    images, targets = speed_batch(data, batch, here)
    steps, parameters = {}, {}
    for system, build in speed_models(recipe).items():
        torch.manual_seed(0)
        model = build().to(here)
        parameters[system] = sum(p.numel() for p in model.parameters())
        steps[f"train {system}"], steps[f"infer {system}"] = detector_steps(model, images, targets)
    times = measure.interleaved(steps, rounds=rounds, repeats=1, device=here)
    medians = {name: statistics.median(values) for name, values in times.items()}
    recipe_file = scratch / "recipe.json"
    recipe_file.write_text(json.dumps(recipe))
    memory = {}
    for system in SPEED_SYSTEMS:
        print(f"  memory: {system} ...", flush=True)
        memory[system] = measure.worker_result(
            ["bench", "detection", "--memory", system, "--data", str(data), "--recipe", str(recipe_file),
             "--batch", str(batch)]
        )["peak_mb"]  # fmt: skip
    return {
        "device": here.type,
        "batch": batch,
        "size": DetectorConfig.from_dict(recipe).min_sizes[-1],
        "recipe_model": DetectorConfig.from_dict(recipe).backbone.to_dict(),
        "parameters": parameters,
        "seconds": medians,
        "rounds": times,
        "peak_mb": memory,
    }


def _summary(values: Sequence[float], digits: int = 3) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {spread:.{digits}f}"


def to_markdown(results: dict) -> str:
    """The tables the README quotes: AP of both systems (mean ± sd over seeds) and whether the target is met, then
    step time, inference time and peak memory with their ratios to torchvision's model."""
    data = results["data"]
    lines = [
        f"Machine: {results['machine']}, torch {results['torch']}, torchvision {results['torchvision']}.",
        f"Data: {data['train']} training and {data['val']} validation images of {data['size']} px, "
        f"{len(data['categories'])} categories ({', '.join(data['categories'])}), masks as RLE.",
    ]
    if "compare" in results:
        entry = results["compare"]
        detector = entry["detector"]
        backbone = detector["backbone"]
        lines += [
            f"Budget {results['budget']:g} s per run, seeds {results['seeds']}; swinkit chose "
            f"{entry['train']['model']} (C {backbone['embed_dim']}, depths {backbone['depths']}, patch "
            f"{backbone['patch_size']}), batch {entry['train']['batch_size']}, min/max size {detector['min_size']}/"
            f"{detector['max_size']} (torchvision's model at the same sizes and batch).",
            "",
        ]
        header = ["system", "box AP (mean ± sd)", "box AP50", "mask AP", "epochs", "wall time s (mean)"]
        rows = []
        for system, runs in entry["runs"].items():
            rows.append([
                system, _summary([r["box_AP"] for r in runs]), _summary([r["box_AP50"] for r in runs]),
                _summary([r["mask_AP"] for r in runs]), _summary([r["epochs"] for r in runs], 2),
                f"{statistics.mean(r['seconds'] for r in runs):.1f}",
            ])  # fmt: skip
        lines += tables.markdown_table(header, rows)
        lines += ["", *(f"Target: {line}" for line in targets(entry["runs"]))]
    if "speed" in results:
        measured = results["speed"]
        seconds, memory = measured["seconds"], measured["peak_mb"]
        train_ref, infer_ref = seconds[f"train {TORCHVISION}"], seconds[f"infer {TORCHVISION}"]
        lines += [
            "",
            f"Step time and memory on {measured['device']}, batch {measured['batch']} at {measured['size']} px, "
            f"untrained (medians of {len(next(iter(measured['rounds'].values())))} interleaved rounds; memory: "
            f"peak two training steps add, each model in a fresh process):",
            "",
        ]
        rows = []
        for system in SPEED_SYSTEMS:
            train, infer = seconds[f"train {system}"], seconds[f"infer {system}"]
            rows.append([
                system, f"{measured['parameters'][system] / 1e6:.1f}", f"{1000 * train:.0f}",
                f"{train / train_ref:.2f}",
                f"{1000 * infer:.0f}", f"{infer / infer_ref:.2f}", f"{memory[system]:.0f}",
                f"{memory[system] / memory[TORCHVISION]:.2f}",
            ])  # fmt: skip
        header = ["model", "params M", "train ms/step", "x torchvision", "infer ms/batch", "x torchvision",
                  "peak MB", "x torchvision"]  # fmt: skip
        lines += tables.markdown_table(header, rows)
    return "\n".join(lines) + "\n"


def targets(runs: dict[str, list[dict]]) -> list[str]:
    """Whether swinkit's mean box AP and mask AP are at least torchvision's, one sentence each."""
    sentences = []
    for key, name in (("box_AP", "box AP"), ("mask_AP", "mask AP")):
        ours, theirs = (statistics.mean(r[key] for r in runs[system]) for system in ("swinkit", "torchvision"))
        verdict = "met" if ours >= theirs else "not met"
        sentences.append(f"swinkit's {name} at least torchvision's: {verdict} ({ours:.3f} against {theirs:.3f}).")
    return sentences


def build_parser() -> argparse.ArgumentParser:
    """The options of ``swinkit bench detection``."""
    parser = argparse.ArgumentParser(prog="swinkit bench detection", description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=100.0, help="seconds per training run (default 100)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--images", type=int, nargs=2, default=[1500, 300], metavar=("TRAIN", "VAL"),
                        help="images in the training and validation sets (default 1500 300)")  # fmt: skip
    parser.add_argument("--speed-rounds", type=int, default=3)
    parser.add_argument(
        "--speed-batch", type=int, help="batch of the speed test (default: the recipe's on a GPU, 4 on a CPU)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 64/16 images, seed 0, 30 s, 1 speed round")
    parser.add_argument("--speed-only", action="store_true", help="only step time and memory")
    parser.add_argument("--run-only", action="store_true", help="only the training runs (AP)")
    parser.add_argument("--output", type=Path, default=tables.RESULTS, help="where detection.json and .md go")
    parser.add_argument("--baseline", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--memory", choices=SPEED_SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--recipe", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``swinkit bench detection``: build the set, train, compare, time; write ``detection.{json,md}``."""
    args = build_parser().parse_args(argv)
    if args.baseline:
        print(json.dumps(run_baseline(args.baseline, args.run, args.budget, args.seed)))
        return 0
    if args.memory:
        print(json.dumps(training_peak(args.data, args.recipe, args.memory, args.batch)))
        return 0
    if args.speed_only and args.run_only:
        raise SystemExit("--speed-only and --run-only leave nothing to run; give one of them at most")
    counts = (64, 16) if args.quick else tuple(args.images)
    if args.quick:
        args.budget, args.seeds, args.speed_rounds = 30.0, [0], 1
    import torchvision

    machine = measure.machine()
    gpu = f", GPU {machine['gpu']}" if machine["gpu"] else ""
    results: dict = {
        "machine": f"{machine['cpu']}, {machine['cores']} cores, {machine['threads']} threads{gpu}",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "budget": args.budget,
        "seeds": args.seeds,
        "quick": args.quick,
        "data": {"train": counts[0], "val": counts[1], "size": 128, "categories": list(CATEGORIES.values())},
    }
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="swinkit-detection-") as scratch:
        root = Path(scratch)
        data = build_shapes(root / "shapes", *counts, size=128)
        if not args.speed_only:
            results["compare"] = compare(data, root / "runs", args.budget, args.seeds)
        if not args.run_only:
            if "compare" in results:
                recipe, batch = results["compare"]["detector"], results["compare"]["train"]["batch_size"]
            else:
                recipe, batch = recipe_detector(data)
            batch = args.speed_batch or (batch if device().type == "cuda" else min(batch, 4))
            print("speed: interleaved rounds ...", flush=True)
            results["speed"] = speed(data, root, recipe, batch, args.speed_rounds)
    results["seconds"] = time.monotonic() - began
    suffix = ("_quick" if args.quick else "") + ("_speed" if args.speed_only else "_run" if args.run_only else "")
    table = to_markdown(results)
    tables.write_results(args.output, f"detection{suffix}", results, table)
    print(table)
    print(f"took {results['seconds']:.0f}s")
    return 0
