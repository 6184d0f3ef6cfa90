"""The segmenter against transformers' UperNet: speed and memory with the same weights, then mIoU in the same time.

    swinkit bench segmentation               # both parts (~4 + ~10 min on a 2-core CPU)
    swinkit bench segmentation --quick       # a smoke run: one small speed round; 160 small scenes, 15 s
    swinkit bench segmentation --speed-only  # only speed and memory
    swinkit bench segmentation --run-only --budget 120 --seeds 0 1 2

**Speed and memory.** swinkit's ``upernet_swin_t`` (``--backbone``) and transformers'
``UperNetForSemanticSegmentation`` built from it by swinkit's Hugging Face export, so the same
configuration and the same weights, each loaded as a user loads it (``swinkit.load_segmenter``
of swinkit's save; ``from_pretrained`` of ``save_segmenter(format="hf")``); swinkit's head
dropout is set to 0, as transformers has none. Before anything is timed the two must give the
same logits and the same loss. Then, interleaved in one process
(:func:`~swinkit.bench.measure.interleaved`): inference without gradients in evaluation mode
(``--size``, ``--batch``; each library's own forward: transformers' also runs its auxiliary
head there) and a training step in training mode (forward, cross-entropy with the ignore index
plus 0.4 times the auxiliary head's, backward, AdamW; ``--train-size``, by default 128 on a
CPU, where Swin-T at 256 takes over ten seconds a step). Peak memory of each system and mode
comes from a fresh process (:func:`memory_worker`): the peak resident set the steps add on a
CPU, the CUDA allocator's peak on a GPU.

**The documented run.** A segmentation set built here without downloads
(:func:`swinkit.bench.scenes.build_scenes`): one to three of scikit-learn's 8x8 digits,
enlarged, coloured and placed on procedural textures (value noise, stripes, gradients,
checks), 2,000 training and 500 validation images of 64x64 pixels; masks hold 0 for the
background, ``d + 1`` for digit ``d``, and 255 (ignored) on the soft rim of each digit;
training and validation scenes draw on disjoint source digits. For each seed, each in a fresh
process:

- ``swinkit train --task segment --data TRAIN --val VAL --time BUDGET --seed S``: everything
  chosen from the data (backbone rung, crop, batch, learning rate, schedule, epochs);
- transformers' UperNet of the configuration swinkit chose (its model config turned into an
  ``UperNetConfig`` by swinkit's converter, :func:`transformers_config`; transformers' own
  initialisation; its auxiliary head reads the third stage, which transformers fixes, and a
  backbone of two stages gets none), in a plain PyTorch loop (:class:`PlainSegLoop`): random
  rescale 0.5-2.0, pad and crop to the images' size, horizontal flip; the training set's mean
  and std; AdamW at 1e-3 (weight decay 0.01 on weights; mmsegmentation's Swin setting with the
  learning rate raised for training from scratch), 5% linear warm-up then poly decay (power 1)
  to zero; transformers' own loss (cross-entropy with ignore index 255 plus 0.4 times the
  auxiliary head's); swinkit's batch; epochs fitted to the same budget from five timed steps,
  as a user would. On a GPU both train there.

Both final models are scored by this module with the same code (:func:`evaluate`:
:class:`~swinkit.train.seg_metrics.ConfusionMeter` over the validation set); swinkit's own
last-epoch figure is kept beside it as a check. Writes ``segmentation.{json,md}`` to
``--output`` (``segmentation_quick.*`` with ``--quick``, ``_speed`` / ``_run`` added for one
part alone).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import swinkit
from swinkit.bench import measure, tables
from swinkit.bench.scenes import SCENE_CLASSES, build_scenes, load_pairs
from swinkit.checkpoints import hf_upernet
from swinkit.checkpoints.segmentation import save_segmenter
from swinkit.data.segmentation import IGNORE_INDEX
from swinkit.model import SegmenterConfig
from swinkit.train.seg_metrics import ConfusionMeter

SYSTEMS = ("swinkit", "transformers")
MODES = ("inference", "training")
#: Classes of the speed test (ADE20K's 150).
SPEED_CLASSES = 150
#: Largest logit and loss difference accepted between the two models with the same weights.
TOLERANCE = 1e-4
#: The plain loop's settings (see the module docstring).
BASELINE_LR, BASELINE_WEIGHT_DECAY, BASELINE_WARMUP = 1e-3, 0.01, 0.05


class TransformersSegmenter(nn.Module):
    """transformers' UperNet answering as swinkit's segmenter does: logits from ``forward``, its own loss from
    :meth:`loss` (``UperNetForSemanticSegmentation`` computes it from the labels, auxiliary head included)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W) -> (B, K, H, W)`` logits."""
        return self.inner(pixel_values=pixels).logits

    def loss(self, pixels: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """transformers' loss of ``pixels`` against ``labels`` ``(B, H, W)`` (255 ignored)."""
        return self.inner(pixel_values=pixels, labels=labels).loss


def transformers_config(config: SegmenterConfig) -> object:
    """transformers' ``UperNetConfig`` of a swinkit segmenter config, by swinkit's converter
    (:func:`swinkit.checkpoints.hf_upernet.export_config`).

    transformers' auxiliary head always reads the third stage: a backbone of fewer stages (swinkit's
    recipe steps down to two-stage backbones on small images) gets none, and the loss is the main
    head's alone.
    """
    import transformers

    if config.backbone.num_stages <= hf_upernet.AUX_STAGE:
        config = config.replace(aux_channels=0)
    return transformers.UperNetConfig.from_dict(hf_upernet.export_config(config))


def fresh_transformers(config: SegmenterConfig, seed: int) -> TransformersSegmenter:
    """transformers' UperNet of ``config``'s architecture with transformers' own initialisation."""
    import transformers

    torch.manual_seed(seed)
    return TransformersSegmenter(transformers.UperNetForSemanticSegmentation(transformers_config(config)))


def write_speed_models(backbone: str, size: int, folder: Path, seed: int = 0, **overrides: object) -> Path:
    """swinkit's ``upernet_BACKBONE`` at ``size`` (a four-stage backbone, whose auxiliary head transformers
    can hold), with ``overrides``, its weights moved off their initial values, saved twice in ``folder``: in
    swinkit's format (``swinkit/``) and by swinkit's Hugging Face export (``transformers/``)."""
    torch.manual_seed(seed)
    fields = {"img_size": size, "num_classes": SPEED_CLASSES, "dropout": 0.0, **overrides}
    model = swinkit.create_model(f"upernet_{backbone}", **fields)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    save_segmenter(model, folder / "swinkit")
    save_segmenter(model, folder / "transformers", format="hf")
    return folder


def load_speed_model(system: str, folder: Path) -> nn.Module:
    """One system's model from :func:`write_speed_models`' folder, as a user loads it: ``swinkit.load_segmenter``
    or transformers' ``from_pretrained``."""
    if system == "swinkit":
        return swinkit.load_segmenter(folder / "swinkit")
    import transformers

    return TransformersSegmenter(transformers.UperNetForSemanticSegmentation.from_pretrained(folder / "transformers"))


def _loss(model: nn.Module, pixels: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if isinstance(model, TransformersSegmenter):
        return model.loss(pixels, labels)
    return model.loss(model(pixels), labels)


def speed_batch(batch: int, size: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random pixels ``(batch, 3, size, size)`` and labels of :data:`SPEED_CLASSES` classes, a band ignored."""
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(batch, 3, size, size, generator=generator)
    labels = torch.randint(0, SPEED_CLASSES, (batch, size, size), generator=generator)
    labels[:, : size // 8] = IGNORE_INDEX
    return pixels.to(device), labels.to(device)


def agreement(
    ours: nn.Module, theirs: TransformersSegmenter, pixels: torch.Tensor, labels: torch.Tensor
) -> dict[str, float]:
    """Largest logit difference and loss difference (auxiliary head included, as transformers computes it in
    every mode) of swinkit's segmenter and transformers' in evaluation mode."""
    ours.eval(), theirs.eval()
    with torch.no_grad():
        logits = (ours(pixels) - theirs(pixels)).abs().max().item()
        loss = (ours.loss(ours.forward_with_aux(pixels), labels) - theirs.loss(pixels, labels)).abs().item()
    return {"logits": logits, "loss": loss}


def step_function(
    model: nn.Module, mode: str, pixels: torch.Tensor, labels: torch.Tensor
) -> Callable[[], None]:
    """One inference pass (evaluation mode, no gradients) or one training step (AdamW) of ``model``."""
    if mode == "inference":

        def infer() -> None:
            model.eval()
            with torch.inference_mode():
                model(pixels)

        return infer
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train_step() -> None:
        model.train()
        loss = _loss(model, pixels, labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return train_step


def memory_worker(system: str, mode: str, folder: Path, size: int, batch: int, device: torch.device) -> dict:
    """MB that two steps of ``mode`` add at their peak, for one system's model in ``folder``: the resident set's
    on a CPU (in a fresh process), the CUDA allocator's on a GPU."""
    model = load_speed_model(system, folder).to(device)
    gc.collect()
    pixels, labels = speed_batch(batch, size, device)
    step = step_function(model, mode, pixels, labels)
    return {"peak_mb": measure.peak_added(step, device)}


def speed(args: argparse.Namespace, scratch: Path) -> dict:
    """Agreement, interleaved timings and peak memory of both systems in both modes."""
    device = torch.device(args.device)
    sizes = {"inference": args.size, "training": args.train_size}
    folders = {mode: write_speed_models(args.backbone, size, scratch / f"speed-{size}") for mode, size in sizes.items()}
    memory: dict[str, dict[str, float]] = {mode: {} for mode in MODES}
    if args.memory:
        for mode in MODES:
            for system in SYSTEMS:
                if device.type == "cuda":
                    found = memory_worker(system, mode, folders[mode], sizes[mode], args.batch, device)
                    torch.cuda.empty_cache()
                else:
                    found = measure.worker_result(
                        ["bench", "segmentation", "--memory-worker", system, "--mode", mode, "--models",
                         str(folders[mode]), "--size", str(sizes[mode]), "--batch", str(args.batch)]
                    )  # fmt: skip
                memory[mode][system] = found["peak_mb"]
            print(f"{mode}, peak memory added, MB: {memory[mode]}", flush=True)
    timings: dict[str, dict[str, float]] = {}
    differences: dict[str, dict[str, float]] = {}
    rounds: dict[str, dict[str, list[float]]] = {}
    for mode in MODES:
        models = {system: load_speed_model(system, folders[mode]).to(device) for system in SYSTEMS}
        pixels, labels = speed_batch(args.batch, sizes[mode], device)
        differences[mode] = agreement(models["swinkit"], models["transformers"], pixels, labels)
        if max(differences[mode].values()) > TOLERANCE:
            raise SystemExit(f"the two models disagree with the same weights: {differences[mode]}")
        steps = {system: step_function(model, mode, pixels, labels) for system, model in models.items()}
        rounds[mode] = measure.interleaved(steps, args.rounds, 1, device)
        timings[mode] = {system: statistics.median(times) for system, times in rounds[mode].items()}
        print(f"{mode}: median s per step {timings[mode]}; agreement {differences[mode]}", flush=True)
        del models, steps
        gc.collect()
    return {
        "backbone": args.backbone,
        "batch": args.batch,
        "sizes": sizes,
        "rounds": args.rounds,
        "seconds": timings,
        "all_rounds": rounds,
        "peak_mb": memory,
        "agreement": differences,
    }


# The documented run.


def evaluate(model: nn.Module, images: torch.Tensor, masks: torch.Tensor, mean: Sequence[float],
             std: Sequence[float], batch: int = 64) -> float:  # fmt: skip
    """mIoU (percent) of ``model``'s logits on uint8 ``images`` normalised by ``mean``/``std`` (0..1 scale),
    against ``masks`` (255 ignored): one :class:`~swinkit.train.seg_metrics.ConfusionMeter` over the set."""
    meter = ConfusionMeter(len(SCENE_CLASSES))
    device = next(model.parameters(), torch.empty(0)).device
    shift = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    scale = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(images), batch):
            pixels = (images[start : start + batch].float() / 255.0 - shift) / scale
            meter.update(model(pixels.to(device)).float().cpu(), masks[start : start + batch])
    model.train(was_training)
    return meter.scores().miou


def scale_crop_flip(
    pixels: torch.Tensor, masks: torch.Tensor, crop: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The usual segmentation augmentation on a normalised batch: per image a rescale by 0.5-2.0 (bilinear;
    masks nearest), zero padding (masks 255) up to ``crop``, a random ``crop`` square and a horizontal flip."""
    out_pixels, out_masks = [], []
    for image, mask in zip(pixels, masks):
        ratio = 0.5 + 1.5 * torch.rand(1, generator=generator).item()
        height, width = (max(1, round(side * ratio)) for side in image.shape[1:])
        image = F.interpolate(image[None], size=(height, width), mode="bilinear", align_corners=False)[0]
        mask = F.interpolate(mask[None, None].float(), size=(height, width), mode="nearest")[0, 0].long()
        pad_h, pad_w = max(0, crop - height), max(0, crop - width)
        image = F.pad(image, (0, pad_w, 0, pad_h))
        mask = F.pad(mask, (0, pad_w, 0, pad_h), value=IGNORE_INDEX)
        top = int(torch.randint(0, image.shape[1] - crop + 1, (1,), generator=generator))
        left = int(torch.randint(0, image.shape[2] - crop + 1, (1,), generator=generator))
        image, mask = image[:, top : top + crop, left : left + crop], mask[top : top + crop, left : left + crop]
        if torch.rand(1, generator=generator).item() < 0.5:
            image, mask = image.flip(2), mask.flip(1)
        out_pixels.append(image)
        out_masks.append(mask)
    return torch.stack(out_pixels), torch.stack(out_masks)


class PlainSegLoop:
    """A plain PyTorch loop training transformers' UperNet on uint8 tensors (what a user writes), on the GPU
    when there is one (batches augmented on the CPU)."""

    def __init__(self, model: TransformersSegmenter, images: torch.Tensor, masks: torch.Tensor, batch: int,
                 mean: Sequence[float], std: Sequence[float], seed: int) -> None:  # fmt: skip
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model, self.images, self.masks, self.batch = model.train().to(self.device), images, masks, batch
        self.mean, self.std = list(mean), list(std)
        self.shift = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.scale = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        decay = [p for n, p in model.named_parameters() if p.ndim > 1 and "relative_position_bias_table" not in n]
        rest = [p for n, p in model.named_parameters() if not (p.ndim > 1 and "relative_position_bias_table" not in n)]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": BASELINE_WEIGHT_DECAY}, {"params": rest, "weight_decay": 0.0}],
            lr=BASELINE_LR,
        )
        self.generator = torch.Generator().manual_seed(seed)
        self.steps_per_epoch = max(1, len(images) // batch)
        self.total = 1
        self.done = 0

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of augmented, normalised batches (full batches only), in a random order."""
        order = torch.randperm(len(self.images), generator=self.generator)
        crop = self.images.shape[-1]
        for start in range(0, self.steps_per_epoch * self.batch, self.batch):
            rows = order[start : start + self.batch]
            pixels = (self.images[rows].float() / 255.0 - self.shift) / self.scale
            yield scale_crop_flip(pixels, self.masks[rows], crop, self.generator)

    def rate(self) -> float:
        """The learning rate of the next step: linear warm-up over 5% of the steps, then poly (power 1) to 0."""
        warm = max(1, round(BASELINE_WARMUP * self.total))
        if self.done < warm:
            return BASELINE_LR * (self.done + 1) / warm
        return BASELINE_LR * max(0.0, 1 - (self.done - warm) / max(1, self.total - warm))

    def step(self, pixels: torch.Tensor, masks: torch.Tensor) -> float:
        """One optimiser step on transformers' loss of a batch; returns the loss."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.rate()
        loss = self.model.loss(pixels.to(self.device), masks.to(self.device))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.done += 1
        return loss.item()


def run_baseline(train_root: Path, val_root: Path, run: Path, budget: float, seed: int) -> dict:
    """transformers' UperNet of swinkit's run ``run``'s architecture in :class:`PlainSegLoop`, fitted to ``budget``
    seconds counted from this call; its last epoch's mIoU by :func:`evaluate`."""
    start = time.monotonic()
    recorded = json.loads((run / "config.json").read_text())
    config = SegmenterConfig.from_dict(recorded["model"])
    batch = recorded["train"]["batch_size"]
    images, masks = load_pairs(train_root)
    val_images, val_masks = load_pairs(val_root)
    values = images.double() / 255.0
    mean, std = values.mean((0, 2, 3)).tolist(), values.std((0, 2, 3)).tolist()

    def fresh() -> PlainSegLoop:
        return PlainSegLoop(fresh_transformers(config, seed), images, masks, batch, mean, std, seed)

    # Fit the epochs to the budget from five timed steps (after one untimed), as a user would.
    loop = fresh()
    batches = loop.batches()
    loop.step(*next(batches))
    began = time.perf_counter()
    for _ in range(5):
        loop.step(*next(batches))
    per_step = (time.perf_counter() - began) / 5
    evaluation = len(val_images) * per_step / batch / 3
    per_epoch = loop.steps_per_epoch * per_step + evaluation
    epochs = max(1, math.floor((budget - (time.monotonic() - start)) / per_epoch))
    # The timing steps were real steps: start afresh with a new model and optimiser.
    loop = fresh()
    loop.total = epochs * loop.steps_per_epoch
    history = []
    for _ in range(epochs):
        for pixels, labels in loop.batches():
            loop.step(pixels, labels)
        history.append(evaluate(loop.model, val_images, val_masks, mean, std))
    return {"miou": history[-1], "best_miou": max(history), "epochs": epochs,
            "seconds_in_loop": time.monotonic() - start}  # fmt: skip


def run_swinkit(train_root: Path, val_root: Path, output: Path, name: str, budget: float, seed: int) -> dict:
    """``swinkit train --task segment`` in a fresh process, everything chosen from the data; its final model
    scored by :func:`evaluate`, beside the run's own last-epoch mIoU."""
    seconds, _ = measure.run_swinkit(
        "train", "--task", "segment", "--data", str(train_root), "--val", str(val_root), "--time", f"{budget:g}s",
        "--seed", str(seed), "--output", str(output), "--name", name,
    )  # fmt: skip
    run = output / name
    rows = (run / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    values = [dict(zip(header, row.split(","))) for row in rows[1:]]
    recorded = json.loads((run / "config.json").read_text())
    model = swinkit.load_segmenter(run / "last")
    val_images, val_masks = load_pairs(val_root)
    miou = evaluate(model, val_images, val_masks, recorded["train"]["mean"], recorded["train"]["std"])
    return {
        "miou": miou,
        "own_miou": float(values[-1]["val_miou"]),
        "best_miou": max(float(v["val_miou"]) for v in values),
        "epochs": len(values),
        "seconds": seconds,
        "model": recorded["train"]["model"],
    }


def documented_run(root: Path, budget: float, seeds: Sequence[int], train: int, val: int, side: int) -> dict:
    """Build the set, then ``swinkit train`` and the plain loop for each seed, each in a fresh process."""
    began = time.monotonic()
    train_root, val_root = build_scenes(root / "scenes", train, val, side)
    built = time.monotonic() - began
    print(f"built {train:,} + {val:,} scenes of {side}x{side} in {built:.0f}s", flush=True)
    runs: dict[str, list[dict]] = {system: [] for system in SYSTEMS}
    for seed in seeds:
        name = f"seed{seed}"
        print(f"seed {seed}: swinkit train ...", flush=True)
        runs["swinkit"].append(run_swinkit(train_root, val_root, root / "runs", name, budget, seed))
        _report(runs["swinkit"][-1])
        print(f"seed {seed}: transformers' UperNet in a plain loop ...", flush=True)
        began = time.monotonic()
        theirs = measure.worker_result(
            ["bench", "segmentation", "--baseline", str(train_root), "--val-data", str(val_root),
             "--run", str(root / "runs" / name), "--budget", str(budget), "--seed", str(seed)]
        )  # fmt: skip
        runs["transformers"].append(theirs | {"seconds": time.monotonic() - began})
        _report(runs["transformers"][-1])
    recorded = json.loads((root / "runs" / f"seed{seeds[0]}" / "config.json").read_text())
    return {"runs": runs, "model": recorded["model"], "train": recorded["train"], "build_seconds": built,
            "images": {"train": train, "val": val, "side": side}}  # fmt: skip


def _report(run: dict) -> None:
    print(f"  mIoU {run['miou']:.2f}%, {run['epochs']} epochs, {run['seconds']:.1f}s", flush=True)


# The tables.


def _summary(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {spread:.2f}"


def targets(results: dict) -> dict[str, bool]:
    """Whether each target is met: at least as fast (inference and training), less memory, mIoU at least the
    reference's (means over seeds); only the targets the results hold."""
    met = {}
    if "speed" in results:
        seconds, memory = results["speed"]["seconds"], results["speed"]["peak_mb"]
        for mode in MODES:
            met[f"{mode}: at least as fast"] = seconds[mode]["swinkit"] <= seconds[mode]["transformers"]
            if memory.get(mode):
                met[f"{mode}: less memory"] = memory[mode]["swinkit"] < memory[mode]["transformers"]
    if "run" in results:
        runs = results["run"]["runs"]
        ours, theirs = (statistics.mean(r["miou"] for r in runs[system]) for system in SYSTEMS)
        met["mIoU at least the reference's"] = ours >= theirs
    return met


def to_markdown(results: dict) -> str:
    """The tables the README quotes: speed and memory, then mIoU in the same time, then the targets."""
    lines = [f"Machine: {results['machine']}; torch {results['torch']}, transformers {results['transformers']}.", ""]
    if "speed" in results:
        found = results["speed"]
        lines += [
            f"upernet_{found['backbone']} ({SPEED_CLASSES} classes), batch {found['batch']}, same weights (logits "
            f"agree to {max(d['logits'] for d in found['agreement'].values()):.1e}); inference at "
            f"{found['sizes']['inference']}x{found['sizes']['inference']} in evaluation mode without gradients, a "
            f"training step (loss with the auxiliary head, backward, AdamW) at "
            f"{found['sizes']['training']}x{found['sizes']['training']}; medians of {found['rounds']} interleaved "
            "rounds; peak memory the steps add, each from a fresh process on a CPU.",
            "",
        ]
        rows = []
        for mode in MODES:
            seconds, memory = found["seconds"][mode], found["peak_mb"].get(mode, {})
            ratio = seconds["transformers"] / seconds["swinkit"]
            row = [mode, *(f"{1000 * seconds[system]:.0f}" for system in SYSTEMS), f"{ratio:.2f}"]
            if memory:
                row += [f"{memory[system]:.0f}" for system in SYSTEMS]
                row.append(f"{memory['swinkit'] / memory['transformers']:.2f}")
            else:
                row += ["", "", ""]
            rows.append(row)
        lines += tables.markdown_table(
            ["step", "swinkit ms", "transformers ms", "speed-up (transformers / swinkit)", "swinkit MB",
             "transformers MB", "memory swinkit / transformers"],
            rows,
        )  # fmt: skip
        lines.append("")
    if "run" in results:
        found = results["run"]
        model, backbone, images = found["model"], found["model"]["backbone"], found["images"]
        lines += [
            f"Digit scenes ({images['train']:,} training, {images['val']:,} validation, {images['side']}x"
            f"{images['side']}, {len(SCENE_CLASSES)} classes), {results['budget']:g} s per run, seeds "
            f"{results['seeds']}. Model chosen by swinkit: {found['train']['model']} (C {backbone['embed_dim']}, "
            f"depths {backbone['depths']}, patch {backbone['patch_size']}, window {backbone['window_size']}, head "
            f"{model['channels']}, auxiliary {model['aux_channels']}), batch {found['train']['batch_size']}; "
            "transformers' UperNet of the same architecture in a plain loop. mIoU of the final models, scored by "
            "the same code.",
            "",
        ]
        rows = []
        for system in SYSTEMS:
            runs = found["runs"][system]
            own = _summary([r["own_miou"] for r in runs]) if system == "swinkit" else ""
            seconds = statistics.mean(r["seconds"] for r in runs)
            miou, epochs = _summary([r["miou"] for r in runs]), _summary([r["epochs"] for r in runs])
            rows.append([system, miou, own, epochs, f"{seconds:.1f}"])
        lines += tables.markdown_table(
            ["system", "val mIoU % (mean ± sd)", "as the run reported it", "epochs", "wall time s (mean)"], rows
        )
        lines.append("")
    met = results["targets"]
    lines += tables.markdown_table(["target", "met"], [[name, "yes" if ok else "no"] for name, ok in met.items()])
    return "\n".join(lines) + "\n"


# The command.


def build_parser() -> argparse.ArgumentParser:
    """The options of ``swinkit bench segmentation``."""
    parser = argparse.ArgumentParser(prog="swinkit bench segmentation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="swin_t", help="backbone of the speed test (default swin_t)")
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="of the speed test (default: a GPU)"
    )
    parser.add_argument("--size", type=int, help="inference input side (default 256 on a CPU, 512 on a GPU)")
    parser.add_argument("--train-size", type=int, help="training step input side (default 128 on a CPU, 512 on a GPU)")
    parser.add_argument("--batch", type=int, help="images per step in the speed test (default 2 on a CPU, 8 on a GPU)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the speed test (default 3)")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory workers")
    parser.add_argument("--budget", type=float, default=75.0, help="seconds per training run (default 75)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="a run per system each (default 0 1 2)")
    parser.add_argument("--train-images", type=int, default=2000)
    parser.add_argument("--val-images", type=int, default=500)
    parser.add_argument("--side", type=int, default=64, help="side of the scenes in pixels (default 64)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: Swin-T at 128/64, 1 round; seed 0, 160 scenes of 32 px, 15 s"
    )
    parser.add_argument("--speed-only", action="store_true", help="only speed and memory")
    parser.add_argument("--run-only", action="store_true", help="only the documented run")
    parser.add_argument("--output", type=Path, default=tables.RESULTS, help="where segmentation.json and .md go")
    parser.add_argument("--memory-worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, default="inference", help=argparse.SUPPRESS)
    parser.add_argument("--models", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--baseline", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--val-data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The options, with the device's defaults and ``--quick``'s filled in."""
    args = build_parser().parse_args(argv)
    if args.speed_only and args.run_only:
        raise SystemExit("--speed-only and --run-only exclude each other; give neither to run both parts")
    gpu = args.device.startswith("cuda")
    if args.quick:
        args.size, args.train_size, args.rounds = args.size or 128, args.train_size or 64, 1
        args.budget, args.seeds, args.train_images, args.val_images, args.side = 15.0, [0], 160, 40, 32
    args.size = args.size or (512 if gpu else 256)
    args.train_size = args.train_size or (512 if gpu else 128)
    args.batch = args.batch or (8 if gpu else 2)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """``swinkit bench segmentation``: measure, train, compare, write ``segmentation.{json,md}``."""
    args = parse_args(argv)
    if args.memory_worker:
        found = memory_worker(args.memory_worker, args.mode, args.models, args.size, args.batch, measure.CPU)
        print(json.dumps(found))
        return 0
    if args.baseline:
        print(json.dumps(run_baseline(args.baseline, args.val_data, args.run, args.budget, args.seed)))
        return 0
    import transformers

    machine = measure.machine()
    results: dict = {
        "machine": f"{machine['gpu'] or machine['cpu']}, {machine['cores']} cores, {machine['threads']} threads",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "quick": args.quick,
        "budget": args.budget,
        "seeds": args.seeds,
    }
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="swinkit-segmentation-") as scratch:
        if not args.run_only:
            results["speed"] = speed(args, Path(scratch))
        if not args.speed_only:
            results["run"] = documented_run(
                Path(scratch), args.budget, args.seeds, args.train_images, args.val_images, args.side
            )
    results["targets"] = targets(results)
    results["seconds"] = time.monotonic() - began
    suffix = "_quick" if args.quick else ""
    suffix += "_speed" if args.speed_only else "_run" if args.run_only else ""
    table = to_markdown(results)
    tables.write_results(args.output, f"segmentation{suffix}", results, table)
    print(table)
    print(f"took {results['seconds']:.0f}s")
    return 0
