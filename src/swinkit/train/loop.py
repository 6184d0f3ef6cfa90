"""The training loop: data, model, optimiser, epochs, evaluation, checkpoints, resume.

:func:`train` runs a whole run from a :class:`TrainConfig` (or resumes one from its
directory). It works in one process or under ``torchrun`` with DistributedDataParallel;
``--batch-size`` is per process, so the global batch is ``batch_size * processes *
accum_steps``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import random
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, DistributedSampler, Subset
from tqdm import tqdm

import swinkit
from swinkit.data import (
    AugmentConfig,
    TransformedDataset,
    build_mixup,
    build_transforms,
    load_data,
    soft_target_cross_entropy,
)
from swinkit.data.imagesets import ImageDataset
from swinkit.data.memory import default_memory_limit, format_size, in_memory
from swinkit.data.profile import profile_data
from swinkit.data.tensors import BatchAugment, TensorBatches, fits_as_tensor, stack_images
from swinkit.model import SwinTransformer
from swinkit.preprocessing import Preprocessing
from swinkit.train import plots, recipe
from swinkit.train.config import TrainConfig
from swinkit.train.distributed import Distributed, setup, teardown
from swinkit.train.lora import LoraAdapters
from swinkit.train.metrics import Evaluation, autocast, evaluate, topk_correct
from swinkit.train.optim import build_optimizer, build_scheduler, set_total_steps
from swinkit.train.rundir import RunDirectory
from swinkit.train.timing import (
    LONG_RUN,
    ProgressLog,
    epoch_seconds,
    fit_epochs,
    format_duration,
    refit,
    time_calls,
)

#: Seconds a checkpoint (and the metrics file) is assumed to take before one is measured.
SAVE_SECONDS = 0.3
#: Seconds assumed for what follows the last epoch (the confusion matrix and curves).
FINAL_SECONDS = 2.0
#: The curves are redrawn at most this often (seconds), and after the last epoch.
PLOT_INTERVAL = 30.0
#: A step whose first try takes longer than this is timed once more, not three times.
SLOW_STEP = 2.0


def _now() -> float:
    """The clock of budgets and progress lines (seconds; tests replace it)."""
    return time.monotonic()


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    epochs: int
    best_top1: float | None
    final: Evaluation | None
    metrics: list[dict[str, Any]]


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), position, has_gauss, gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _gather(context: Distributed, value: Any) -> list[Any]:
    if not context.enabled:
        return [value]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def _new_run_dir(config: TrainConfig) -> Path:
    root = Path(config.output)
    stem = config.name or datetime.now().strftime("%Y%m%d-%H%M%S")
    path, suffix = root / stem, 1
    while path.exists():
        suffix += 1
        path = root / f"{stem}-{suffix}"
    return path


def _build_model(config: TrainConfig, classes: list[str]) -> SwinTransformer:
    overrides = dict(config.model_overrides)
    if config.drop_path is not None:
        overrides["drop_path_rate"] = config.drop_path
    if config.img_size is not None:
        overrides["img_size"] = config.img_size
    return swinkit.create_model(
        config.model, pretrained=config.pretrained, num_classes=len(classes), labels=tuple(classes), **overrides
    )


def _preprocessing(config: TrainConfig, model: SwinTransformer) -> Preprocessing:
    """The checkpoint's preprocessing (or the default) for this model's size, with the run's choices."""
    size, channels = model.config.img_size, model.config.in_chans
    stored = getattr(model, "pretrained_cfg", None)
    base = (
        Preprocessing.from_dict(stored).for_model(size, channels) if stored else Preprocessing.default(size, channels)
    )
    changes = {key: getattr(config, key) for key in ("mean", "std", "crop_pct") if getattr(config, key) is not None}
    return base.replace(**changes)


RECIPE_LINES = {
    "digits": "digits (the built-in data set's: a two-stage Swin for 8x8 images; --recipe auto chooses from the data)",
    "imagenet": "imagenet (the paper's ImageNet-1k recipe, 300 epochs; --recipe auto chooses from the data)",
    "finetune": "finetune (the Hugging Face example's, from --pretrained weights)",
}


class _Printer:
    """Rank 0's output: a progress bar on a terminal, plain lines otherwise, nothing when quiet.

    ``log`` prints the lines and, away from a terminal, a progress line within long epochs.
    """

    def __init__(self, context: Distributed, quiet: bool, start: float) -> None:
        self.enabled = context.is_main and not quiet
        self.interactive = self.enabled and sys.stderr.isatty()
        self.log = ProgressLog(enabled=self.enabled, interactive=self.interactive, clock=_now, start=start)

    def line(self, text: str) -> None:
        self.log.line(text)

    def bar(self, total: int, description: str) -> tqdm:
        """A bar counting images, so that its rate reads in img/s."""
        return tqdm(
            total=total, desc=description, unit="img", disable=not self.interactive, leave=False, dynamic_ncols=True
        )


def loader_workers(device: torch.device, cores: int) -> int:
    """Loading processes for images read from files: most cores beside a GPU, half of them beside CPU training."""
    if device.type == "cuda":
        return max(1, min(8, cores - 1))
    return max(1, min(4, cores // 2))


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def train(config: TrainConfig, resume: str | Path | None = None, *, spent: float = 0.0) -> TrainResult:
    """Run (or, with ``resume``, continue) a training run; returns where it went and how well.

    On resume the saved settings are used, except ``quiet``, ``workers`` and ``device``
    where ``config`` sets them. Augmentation randomness depends on the number of loading
    processes, so an exact resume keeps the saved ``workers``. Settings left ``None`` come
    from the recipe; with ``time_budget`` and no ``epochs`` the epochs are fitted to the
    budget from a few timed steps (and shortened if epochs turn out slower); ``spent``
    seconds already gone count against it (the command line passes the time since the
    process started). Raises :class:`TrainingDiverged` on a non-finite loss.
    """
    start = _now() - spent
    given = frozenset(field.name for field in dataclasses.fields(config) if getattr(config, field.name) is not None)
    if resume is not None:
        run = RunDirectory(resume)
        saved = TrainConfig.from_dict(run.read_config()["train"])
        config = dataclasses.replace(
            saved,
            quiet=config.quiet or saved.quiet,
            workers=saved.workers if config.workers is None else config.workers,
            device=config.device or saved.device,
        )
    config = config.resolved()
    context = setup(config.device)
    printer = _Printer(context, config.quiet, start)
    printer.log.start_heartbeat()
    try:
        return _Trainer(config, context, resume, printer, given=given).run()
    finally:
        printer.log.stop_heartbeat()
        teardown(context)


class _Trainer:
    def __init__(
        self,
        config: TrainConfig,
        context: Distributed,
        resume: str | Path | None,
        printer: _Printer,
        given: frozenset[str] = frozenset(),
    ) -> None:
        self.config = config
        self.context = context
        self.device = context.device
        self.printer = printer
        self.start = printer.log.start
        self.given = given
        self.fresh = resume is None
        if config.deterministic:
            torch.use_deterministic_algorithms(True)
        if config.memory_limit is None:
            self.config = config = dataclasses.replace(config, memory_limit=default_memory_limit())

        data = load_data(
            config.data,
            val=config.val,
            val_split=config.val_split,
            seed=config.seed,
            skip_bad_images=config.skip_bad_images,
            keep_in_memory=config.memory_limit,
        )
        if data.skipped:
            self.printer.line(f"skipped {data.skipped} unreadable image(s) (--skip-bad-images)")
        self.classes = list(data.classes)
        self.choices: list[recipe.Choice] = []
        self.candidates: list[recipe.Candidate] = []
        if self.fresh and config.recipe == "auto":
            profile = profile_data(data.train, seed=config.seed)
            self.config, self.choices, self.candidates = recipe.from_data(config, profile)
            self.config.validate()
        self._build_model()
        self._build_data(data)
        self.fit_budget = 0.0
        self.most_epochs: int | None = None
        if self.fresh:
            self._plan()
        # Training draws random numbers from where the model's initialisation left them,
        # whatever the timing drew.
        _set_rng_state(self.rng_after_init)
        config = self.config

        global_batch = config.batch_size * context.world_size * config.accum_steps
        self.lr = config.lr * global_batch / config.lr_base_batch if config.lr_base_batch else config.lr
        self.optimizer = build_optimizer(self.model, self.lr, config.weight_decay, config.layer_decay)
        self.scheduler = build_scheduler(
            self.optimizer,
            total_steps=self.steps_per_epoch * config.epochs,
            warmup_steps=round(config.warmup_epochs * self.steps_per_epoch),
            min_lr=config.min_lr,
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.precision == "fp16")
        self.ema = (
            AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
            if config.ema
            else None
        )
        self.network: nn.Module = self.model
        if context.enabled:
            self.network = DistributedDataParallel(
                self.model, device_ids=[context.local_rank] if self.device.type == "cuda" else None
            )

        self.start_epoch, self.step, self.best_top1 = 1, 0, None
        self.best_loss = math.inf
        self.rows: list[dict[str, Any]] = []
        self.plotted = -math.inf
        if resume is not None:
            self.run_dir = RunDirectory(resume)
            self._restore()
        else:
            path = _new_run_dir(config) if context.is_main else Path(config.output)
            path = Path(_gather(context, str(path))[0])
            self.run_dir = RunDirectory(path)
            if context.is_main:
                self.run_dir.path.mkdir(parents=True, exist_ok=True)
                self.run_dir.write_config(self._config_record())

    def _build_model(self) -> None:
        """The model of the settings, initialised from the seed (the same whatever ran before)."""
        _seed(self.config.seed + self.context.rank)
        config = self.config
        self.model = _build_model(config, self.classes).to(self.device)
        self.preprocessing = _preprocessing(config, self.model)
        if config.grad_checkpointing:
            self.model.set_grad_checkpointing(True)
        if config.freeze_backbone:
            for name, parameter in self.model.named_parameters():
                parameter.requires_grad_(name.startswith("head."))
        self.lora = None
        if config.lora:
            self.lora = LoraAdapters(
                self.model, config.lora, config.lora_alpha, config.lora_dropout, config.lora_targets, config.pretrained
            )
            self.printer.line(self.lora.summary())
        self.rng_after_init = _rng_state()

    def _augment_config(self) -> AugmentConfig:
        config = self.config
        return AugmentConfig(
            scale=tuple(config.scale) if config.scale is not None else (1.0, 1.0),
            crop=config.crop,
            pad=config.pad or 0,
            hflip=config.hflip,
            auto_augment=config.auto_augment or "none",
            re_prob=config.re_prob or 0.0,
            mixup=config.mixup or 0.0,
            cutmix=config.cutmix or 0.0,
            label_smoothing=config.label_smoothing,
        )

    def _build_data(self, data: Any) -> None:
        """Loaders: batches augmented from one uint8 tensor when the images are in memory, else a DataLoader."""
        config, context = self.config, self.context
        augment = self._augment_config()
        val_dataset: ImageDataset | None = data.val if data.val is not None and len(data.val) else None
        self.train_labels = torch.tensor(data.train.labels)
        self.val_count = len(val_dataset) if val_dataset is not None else 0
        self.tensor_path = fits_as_tensor(data.train, self.preprocessing, config.memory_limit)
        self.sampler = DistributedSampler(
            range(len(data.train)), num_replicas=context.world_size, rank=context.rank, shuffle=True, seed=config.seed
        )
        self.loader_generator = torch.Generator()
        if self.tensor_path:
            self.train_images = stack_images(data.train, self.preprocessing)
            self.train_loader: Any = TensorBatches(
                self.train_images,
                self.train_labels,
                config.batch_size,
                self.sampler,
                BatchAugment(self.preprocessing, augment if config.augment else None),
                self.device,
                self.loader_generator,
            )
            if config.workers is None:
                self.config = config = dataclasses.replace(config, workers=0)
            where = (
                f"decoded once and kept in memory ({format_size(self.train_images.numel())} as uint8 at "
                f"{self.preprocessing.img_size[0]}x{self.preprocessing.img_size[1]}); batches augmented in the "
                f"training process"
            )
        else:
            if config.workers is None:
                self.config = config = dataclasses.replace(config, workers=loader_workers(self.device, _cores()))
            train_transform = build_transforms(
                config.augment, self.preprocessing, augment if config.augment else None
            )
            train_set = TransformedDataset(data.train, train_transform)
            self.train_loader = DataLoader(
                train_set,
                batch_size=config.batch_size,
                sampler=self.sampler,
                num_workers=config.workers,
                generator=self.loader_generator,
                persistent_workers=False,
                pin_memory=self.device.type == "cuda",
            )
            kept = "decoded once and kept in memory" if in_memory(data.train) else "read from their files"
            where = (
                f"{kept}, transformed per image by {config.workers} loading process(es) "
                f"(--workers; within --memory-limit {format_size(config.memory_limit)} in memory as tensors "
                f"when no larger than the input)"
            )
        # Without augmentation, training images get the evaluation transform and no mixing.
        self.mixup = build_mixup(augment, len(self.classes)) if config.augment else None
        self.val_loader: Any = None
        if val_dataset is not None:
            rows = range(context.rank, len(val_dataset), context.world_size)
            left = config.memory_limit - (self.train_images.numel() if self.tensor_path else 0)
            if fits_as_tensor(val_dataset, self.preprocessing, left):
                val_images = stack_images(val_dataset, self.preprocessing)
                labels = torch.tensor(val_dataset.labels)
                self.val_loader = TensorBatches(
                    val_images, labels, 2 * config.batch_size, rows, BatchAugment(self.preprocessing, None),
                    self.device,
                )  # fmt: skip
            else:
                val_set = TransformedDataset(val_dataset, build_transforms(False, self.preprocessing))
                self.val_loader = DataLoader(
                    Subset(val_set, rows), batch_size=2 * config.batch_size, num_workers=config.workers
                )
        self.steps_per_epoch = math.ceil(len(self.train_loader) / config.accum_steps)
        self.data_line = f"data: {len(data.train):,} training and {self.val_count:,} validation images, {where}"

    def _rebuild_augmentation(self) -> None:
        """The training augmentation and mixing again, after the recipe's last choices."""
        augment = self._augment_config()
        self.mixup = build_mixup(augment, len(self.classes)) if self.config.augment else None
        if self.tensor_path:
            self.train_loader.augment = BatchAugment(self.preprocessing, augment if self.config.augment else None)
        else:
            self.train_loader.dataset.transform = build_transforms(
                self.config.augment, self.preprocessing, augment if self.config.augment else None
            )

    def _clock(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def _timing_batch(self, size: int) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
        """A function giving a training batch of ``size`` images: augmented anew each call on the tensor path."""
        size = min(size, len(self.train_labels))
        if self.tensor_path:
            rows = torch.randperm(len(self.train_images), generator=torch.Generator().manual_seed(0))[:size]
            images = self.train_images[rows].to(self.device)
            labels = self.train_labels[rows].to(self.device)
            generator = torch.Generator().manual_seed(0)
            return lambda: (self.train_loader.augment(images, generator), labels)
        items = [self.train_loader.dataset[index] for index in range(size)]
        images = torch.stack([image for image, _ in items]).to(self.device)
        labels = torch.tensor([label for _, label in items]).to(self.device)
        return lambda: (images, labels)

    def _time_steps(self) -> tuple[float, float]:
        """Seconds per training step of ``batch_size`` images and per evaluated image, timed on a copy of the model.

        A model whose step would take long is timed on 8 images and the time scaled to the batch.
        """
        config = self.config
        probe = copy.deepcopy(self.model).train()
        optimizer = build_optimizer(probe, 1e-6, config.weight_decay, config.layer_decay)
        smoothing = 0.0 if self.mixup is not None else config.label_smoothing

        def stepper(size: int) -> Callable[[], None]:
            batch = self._timing_batch(size)

            def step() -> None:
                images, targets = batch()
                if self.mixup is not None:
                    images, targets = self.mixup(images, targets)
                with autocast(self.device, config.precision):
                    logits = probe(images)
                loss = soft_target_cross_entropy(logits.float(), targets, smoothing)
                loss.backward()
                if config.clip_grad:
                    nn.utils.clip_grad_norm_(probe.parameters(), config.clip_grad)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

            return step

        small = min(8, config.batch_size)
        first = time_calls(stepper(small), warmup=1, repeats=1, clock=self._clock)
        scale = config.batch_size / small
        if first * scale <= SLOW_STEP:
            step_seconds = time_calls(stepper(config.batch_size), warmup=1, repeats=3, clock=self._clock)
            evaluated = 2 * config.batch_size  # as the validation batches
        else:
            step_seconds = first * scale
            evaluated = small
        images, _ = self._timing_batch(evaluated)()
        probe.eval()
        with torch.no_grad(), autocast(self.device, config.precision):
            per_image = time_calls(lambda: probe(images), warmup=0, repeats=1, clock=self._clock) / len(images)
        timings = _gather(self.context, (step_seconds, per_image))
        return max(t[0] for t in timings), max(t[1] for t in timings)

    def _epoch_seconds(self) -> tuple[float, float]:
        """An epoch's estimated seconds, and a step's."""
        step, per_image = self._time_steps()
        val_count = math.ceil(self.val_count / self.context.world_size)
        batches = self.steps_per_epoch * self.config.accum_steps
        return epoch_seconds(batches, step, val_count, per_image, SAVE_SECONDS), step

    def _switch_model(self, candidate: recipe.Candidate) -> None:
        overrides = dict(self.config.model_overrides) | candidate.overrides
        self.config = dataclasses.replace(self.config, model=candidate.model, model_overrides=overrides)
        self._build_model()

    def _plan(self) -> None:
        """Print the recipe, fit the epochs to the time budget (timing a few steps), print the estimate."""
        config = self.config
        budget = config.time_budget or 0.0
        self.fit_budget = budget if budget > 0 and "epochs" not in self.given else 0.0
        auto = config.recipe == "auto"
        log = self.printer.log
        for choice in self.choices:
            log.line(str(choice))
        if not auto:
            log.line(f"recipe: {RECIPE_LINES[config.recipe]}")
        log.line(self.data_line)
        per_epoch = step = None
        if self.fit_budget or self.printer.enabled:
            log.set_activity(f"timing a few training steps of {config.model or 'the model'}")
            per_epoch, step = self._epoch_seconds()
        epochs = config.epochs
        reason = "given" if "epochs" in self.given else f"the {config.recipe} recipe's"
        if self.fit_budget:
            most = self.most_epochs = recipe.MAX_EPOCHS if auto else config.epochs
            epochs = fit_epochs(budget, _now() - self.start, per_epoch, FINAL_SECONDS, most)
            for previous, candidate in zip(self.candidates, self.candidates[1:]):
                if epochs >= recipe.MIN_EPOCHS:
                    break
                fitted = epochs
                self._switch_model(candidate)
                config = self.config
                log.set_activity(f"timing a few training steps of {candidate.describe()}")
                per_epoch, step = self._epoch_seconds()
                epochs = fit_epochs(budget, _now() - self.start, per_epoch, FINAL_SECONDS, most)
                log.line(
                    str(
                        recipe.Choice(
                            "model",
                            candidate.describe(),
                            f"a step down ({candidate.gflops * 1000:.0f} MFLOPs): only {fitted} "
                            f"epoch{'s' if fitted != 1 else ''} of {previous.describe()} fit in the time, fewer "
                            f"than {recipe.MIN_EPOCHS}",
                            "--model, --set patch_size=P",
                        )
                    )
                )
            source = "--time" if "time_budget" in self.given else "the default budget"
            reason = f"as many as fit in {format_duration(budget)} ({source}), at most {most}"
            if not auto and epochs < config.epochs and "warmup_epochs" not in self.given:
                warmup = config.warmup_epochs * epochs / config.epochs
                self.config = config = dataclasses.replace(config, warmup_epochs=warmup)
            self.config = config = dataclasses.replace(config, epochs=epochs)
        if auto:
            self.config, more = recipe.after_timing(config, epochs, self.steps_per_epoch, reason)
            config = self.config
            config.validate()
            self._rebuild_augmentation()
            for choice in more:
                log.line(str(choice))
        log.set_activity(None)
        if per_epoch is None:
            return
        total = _now() - self.start + config.epochs * per_epoch + FINAL_SECONDS
        log.planned_epoch = per_epoch
        log.final_seconds = FINAL_SECONDS
        budget_note = f"; budget {format_duration(budget)}" if self.fit_budget else ""
        log.line(
            f"time: about {format_duration(total)} in all, {config.epochs} epochs of ~{format_duration(per_epoch)} "
            f"({self.steps_per_epoch} steps of {1000 * step:.0f} ms, validation and checkpoint){budget_note}"
        )
        if total > LONG_RUN:
            log.line(
                f"warning: this run would take about {format_duration(total)}. To shorten it: --time 1h fits the "
                f"epochs to an hour (any duration: 30m, 2h); or fewer --epochs, a smaller model (--model "
                f"swin_femto, see swinkit models), a smaller --img-size, or a GPU"
            )

    def _config_record(self) -> dict[str, Any]:
        return {
            "train": self.config.to_dict(),
            "model": self.model.config.to_dict(),
            "classes": self.classes,
            "preprocessing": self.preprocessing.to_dict(),
            "world_size": self.context.world_size,
            "swinkit_version": swinkit.__version__,
        }

    def _restore(self) -> None:
        if self.run_dir.link("last") is None:
            # Killed before its first checkpoint: start over with the same settings and seed.
            self.printer.line(f"{self.run_dir.path} has no checkpoint yet: starting it over")
            return
        state = self.run_dir.load_state()
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.start_epoch = state["epoch"] + 1
        # A run shortened to keep to its time budget resumes with its shortened plan.
        self.config = dataclasses.replace(self.config, epochs=state.get("epochs", self.config.epochs))
        self.step = state["step"]
        self.best_top1 = state["best_top1"]
        self.best_loss = state["best_loss"]
        ranks = state["rng"]
        if len(ranks) != self.context.world_size:
            raise ValueError(
                f"this run was saved with {len(ranks)} process(es); resume it with the same number "
                f"(got {self.context.world_size})"
            )
        _set_rng_state(ranks[self.context.rank])
        self.rows = [row for row in self.run_dir.read_metrics() if int(row["epoch"]) < self.start_epoch]
        self.printer.line(f"resuming {self.run_dir.path} at epoch {self.start_epoch}/{self.config.epochs}")

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def run(self) -> TrainResult:
        config = self.config
        self.printer.line(
            f"training {self.model.config.embed_dim}-wide Swin ({sum(p.numel() for p in self.model.parameters()):,} "
            f"parameters) on {len(self.sampler.dataset)} images, {len(self.classes)} classes, "
            f"{config.epochs} epochs, lr {self.lr:.2e}, run {self.run_dir.path}"
        )
        final = None
        epoch = self.start_epoch
        while epoch <= self.config.epochs:
            self.printer.log.epoch_started()
            row = self._train_epoch(epoch)
            self.printer.log.set_activity(f"epoch {epoch}/{self.config.epochs}  evaluating")
            final = (
                evaluate(
                    self.eval_model, self.val_loader, len(self.classes), self.device, config.precision, self.context
                )
                if self.val_loader
                else None
            )
            if final is not None:
                row |= {"val_loss": final.loss, "val_top1": final.top1, "val_top5": final.top5}
                better = self.best_top1 is None or final.top1 > self.best_top1
                if better:
                    self.best_top1 = final.top1
            else:
                row |= {"val_loss": "", "val_top1": "", "val_top5": ""}
                better = row["train_loss"] < self.best_loss
                self.best_loss = min(self.best_loss, row["train_loss"])
            self.rows.append(row)
            self._save(epoch, better)
            self.printer.log.set_activity(None)
            self.printer.log.epoch_ended()
            self._report(row, self.config.epochs)
            self._keep_to_budget(epoch)
            epoch += 1
        if final is None and self.val_loader is not None:
            final = evaluate(
                self.eval_model, self.val_loader, len(self.classes), self.device, config.precision, self.context
            )
        if self.context.is_main and self.rows:
            plots.plot_curves(self.rows, self.run_dir.path / "curves.png")
        if self.context.is_main and final is not None:
            plots.plot_confusion(
                final.confusion, self.classes, self.run_dir.path / "confusion_matrix.png", "validation confusion matrix"
            )
        self.printer.line(f"run: {self.run_dir.path}")
        if final is not None:
            self.printer.line(
                f"accuracy: {final.top1:.2f}% top-1, {final.top5:.2f}% top-5 on {final.count} validation images "
                f"(best top-1 {self.best_top1:.2f}%, saved as {self.run_dir.path / 'best'})"
            )
            self.printer.line(
                f"plots: {self.run_dir.path / 'curves.png'}, {self.run_dir.path / 'confusion_matrix.png'}"
            )
        else:
            self.printer.line(f"no validation set; plots: {self.run_dir.path / 'curves.png'}")
        return TrainResult(self.run_dir.path, self.config.epochs, self.best_top1, final, self.rows)

    def _keep_to_budget(self, epoch: int) -> None:
        """Refit the epochs when they turn out slower (or, early on, faster) than timed."""
        if not self.fit_budget or not self.fresh or epoch >= self.config.epochs:
            return
        per_epoch = self.printer.log.per_epoch() or 0.0
        elapsed = _now() - self.start
        epochs = refit(
            self.fit_budget, elapsed, epoch, self.config.epochs, per_epoch, FINAL_SECONDS, self.most_epochs
        )
        epochs = _gather(self.context, epochs)[0]
        if epochs == self.config.epochs:
            return
        change = "longer" if epochs < self.config.epochs else "shorter"
        verb = "shortening" if epochs < self.config.epochs else "lengthening"
        self.printer.line(
            f"epochs take ~{format_duration(per_epoch)}, {change} than timed: {verb} the run to {epochs} epochs "
            f"to end within {format_duration(self.fit_budget)}"
        )
        self.config = dataclasses.replace(self.config, epochs=epochs)
        set_total_steps(self.scheduler, self.steps_per_epoch * epochs)
        if self.context.is_main:
            self.run_dir.write_config(self._config_record())

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        config = self.config
        self.network.train()
        self.sampler.set_epoch(epoch)
        self.loader_generator.manual_seed(config.seed * 1_000_003 + epoch * 1009 + self.context.rank)
        totals = torch.zeros(3, dtype=torch.float64)  # loss sum, images, correct (hard labels)
        started = time.perf_counter()
        batches = len(self.train_loader)
        bar = self.printer.bar(len(self.sampler), f"epoch {epoch}/{config.epochs}")
        for index, (images, targets) in enumerate(self.train_loader):
            images, targets = images.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)
            hard = targets
            if self.mixup is not None:
                images, targets = self.mixup(images, targets)
            stepping = (index + 1) % config.accum_steps == 0 or index + 1 == batches
            sync = stepping or not self.context.enabled
            with self.network.no_sync() if not sync else contextlib.nullcontext():
                with autocast(self.device, config.precision):
                    logits = self.network(images)
                # Mixed targets arrive already smoothed.
                smoothing = 0.0 if self.mixup is not None else config.label_smoothing
                loss = soft_target_cross_entropy(logits.float(), targets, smoothing)
                self._check_finite(loss, epoch, index)
                self.scaler.scale(loss / config.accum_steps).backward()
            if stepping:
                self._optimizer_step()
            count = images.shape[0]
            loss_value = loss.item()
            totals += torch.tensor(
                [loss_value * count, count, 0.0 if self.mixup else topk_correct(logits.detach(), hard, (1,))[0]],
                dtype=torch.float64,
            )
            bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{self.optimizer.param_groups[-1]['lr']:.2e}", refresh=False)
            bar.update(count)
            self.printer.log.batch_done(epoch, config.epochs, index + 1, batches, loss_value)
        bar.close()
        seconds = time.perf_counter() - started
        totals = self.context.all_reduce_sum(totals.to(self.device)).cpu()
        loss_sum, images_seen, correct = totals.tolist()
        return {
            "epoch": epoch,
            "step": self.step,
            "train_loss": loss_sum / images_seen,
            "train_top1": "" if self.mixup else 100.0 * correct / images_seen,
            "lr": self.optimizer.param_groups[-1]["lr"],
            "img_per_s": images_seen / seconds,
            "seconds": seconds,
        }

    def _check_finite(self, loss: torch.Tensor, epoch: int, index: int) -> None:
        bad = torch.tensor([0.0 if torch.isfinite(loss).item() else 1.0], device=self.device)
        if self.context.all_reduce_sum(bad).item() > 0:
            last = self.run_dir.link("last")
            kept = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
            raise TrainingDiverged(
                f"loss became {loss.item()} at epoch {epoch}, batch {index + 1}: training stopped; {kept}. "
                f"Try a lower --lr, --clip-grad, or --precision fp32."
            )

    def _optimizer_step(self) -> None:
        if self.config.clip_grad:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.step += 1

    def _save(self, epoch: int, best: bool) -> None:
        rng = _gather(self.context, _rng_state())
        if not self.context.is_main:
            return
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "epoch": epoch,
            "epochs": self.config.epochs,
            "step": self.step,
            "best_top1": self.best_top1,
            "best_loss": self.best_loss,
            "rng": rng,
        }

        def export(folder: Path) -> None:
            if self.lora is not None:
                self.lora.save(folder, self.preprocessing)
            else:
                swinkit.save_pretrained(self.eval_model, folder, format="native", preprocessing=self.preprocessing)

        # Metrics first: a kill between the two leaves rows past the last checkpoint, which
        # resume drops, never a checkpoint without its row.
        self.run_dir.write_metrics(self.rows)
        self.run_dir.save_checkpoint(epoch, export, state, best)
        if _now() - self.plotted >= PLOT_INTERVAL:
            plots.plot_curves(self.rows, self.run_dir.path / "curves.png")
            self.plotted = _now()

    def _report(self, row: dict[str, Any], epochs: int) -> None:
        text = f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f}"
        if row["val_top1"] != "":
            text += f"  val loss {row['val_loss']:.4f}  top-1 {row['val_top1']:.2f}%  top-5 {row['val_top5']:.2f}%"
        text += f"  lr {row['lr']:.2e}  {row['img_per_s']:.0f} img/s  {row['seconds']:.1f}s"
        left = epochs - int(row["epoch"])
        text += f"  elapsed {format_duration(self.printer.log.elapsed())}"
        if left:
            remaining = self.printer.log.remaining(left)
            text += f", remaining ~{format_duration(remaining)}" if remaining is not None else ""
        self.printer.line(text)
