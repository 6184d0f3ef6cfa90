"""The training loop: data, model, optimiser, epochs, evaluation, checkpoints, resume.

:func:`train` runs a whole run from a :class:`TrainConfig` (or resumes one from its
directory). It works in one process or under ``torchrun`` with DistributedDataParallel;
``--batch-size`` is per process, so the global batch is ``batch_size * processes *
accum_steps``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import sys
import time
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
from swinkit.model import SwinTransformer
from swinkit.preprocessing import Preprocessing
from swinkit.train import plots
from swinkit.train.config import TrainConfig
from swinkit.train.distributed import Distributed, setup, teardown
from swinkit.train.lora import LoraAdapters
from swinkit.train.metrics import Evaluation, autocast, evaluate, topk_correct
from swinkit.train.optim import build_optimizer, build_scheduler
from swinkit.train.rundir import RunDirectory


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


class _Printer:
    """Rank 0's output: a progress bar on a terminal, plain lines otherwise, nothing when quiet."""

    def __init__(self, context: Distributed, quiet: bool) -> None:
        self.enabled = context.is_main and not quiet
        self.interactive = self.enabled and sys.stderr.isatty()

    def line(self, text: str) -> None:
        if self.enabled:
            print(text, flush=True)

    def bar(self, total: int, description: str) -> tqdm:
        """A bar counting images, so that its rate reads in img/s."""
        return tqdm(
            total=total, desc=description, unit="img", disable=not self.interactive, leave=False, dynamic_ncols=True
        )


def train(config: TrainConfig, resume: str | Path | None = None) -> TrainResult:
    """Run (or, with ``resume``, continue) a training run; returns where it went and how well.

    On resume the saved settings are used, except ``quiet``, ``workers`` and ``device``
    where ``config`` sets them. Augmentation randomness depends on the number of loading
    processes, so an exact resume keeps the saved ``workers``. Raises
    :class:`TrainingDiverged` on a non-finite loss.
    """
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
    try:
        return _Trainer(config, context, resume).run()
    finally:
        teardown(context)


class _Trainer:
    def __init__(self, config: TrainConfig, context: Distributed, resume: str | Path | None) -> None:
        self.config = config
        self.context = context
        self.device = context.device
        self.printer = _Printer(context, config.quiet)
        if config.deterministic:
            torch.use_deterministic_algorithms(True)
        _seed(config.seed + context.rank)

        data = load_data(
            config.data,
            val=config.val,
            val_split=config.val_split,
            seed=config.seed,
            skip_bad_images=config.skip_bad_images,
        )
        if data.skipped:
            self.printer.line(f"skipped {data.skipped} unreadable image(s) (--skip-bad-images)")
        self.classes = list(data.classes)
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

        augment = AugmentConfig(
            scale=tuple(config.scale),
            hflip=config.hflip,
            auto_augment=config.auto_augment,
            re_prob=config.re_prob,
            mixup=config.mixup,
            cutmix=config.cutmix,
            label_smoothing=config.label_smoothing,
        )
        # Without augmentation, training images get the evaluation transform and no mixing.
        self.mixup = build_mixup(augment, len(self.classes)) if config.augment else None
        train_transform = build_transforms(config.augment, self.preprocessing, augment if config.augment else None)
        train_set = TransformedDataset(data.train, train_transform)
        self.sampler = DistributedSampler(
            train_set, num_replicas=context.world_size, rank=context.rank, shuffle=True, seed=config.seed
        )
        self.loader_generator = torch.Generator()
        self.train_loader = DataLoader(
            train_set,
            batch_size=config.batch_size,
            sampler=self.sampler,
            num_workers=config.workers,
            generator=self.loader_generator,
            persistent_workers=False,
            pin_memory=self.device.type == "cuda",
        )
        self.val_loader = None
        if data.val is not None and len(data.val):
            val_set = TransformedDataset(data.val, build_transforms(False, self.preprocessing))
            shard = Subset(val_set, range(context.rank, len(val_set), context.world_size))
            self.val_loader = DataLoader(shard, batch_size=2 * config.batch_size, num_workers=config.workers)

        global_batch = config.batch_size * context.world_size * config.accum_steps
        self.lr = config.lr * global_batch / config.lr_base_batch if config.lr_base_batch else config.lr
        self.steps_per_epoch = math.ceil(len(self.train_loader) / config.accum_steps)
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
        for epoch in range(self.start_epoch, config.epochs + 1):
            row = self._train_epoch(epoch)
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
            self._report(row, config.epochs)
        if final is None and self.val_loader is not None:
            final = evaluate(
                self.eval_model, self.val_loader, len(self.classes), self.device, config.precision, self.context
            )
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
        return TrainResult(self.run_dir.path, config.epochs, self.best_top1, final, self.rows)

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
            totals += torch.tensor(
                [loss.item() * count, count, 0.0 if self.mixup else topk_correct(logits.detach(), hard, (1,))[0]],
                dtype=torch.float64,
            )
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{self.optimizer.param_groups[-1]['lr']:.2e}", refresh=False)
            bar.update(count)
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
        plots.plot_curves(self.rows, self.run_dir.path / "curves.png")

    def _report(self, row: dict[str, Any], epochs: int) -> None:
        text = f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f}"
        if row["val_top1"] != "":
            text += f"  val loss {row['val_loss']:.4f}  top-1 {row['val_top1']:.2f}%  top-5 {row['val_top5']:.2f}%"
        text += f"  lr {row['lr']:.2e}  {row['img_per_s']:.0f} img/s  {row['seconds']:.1f}s"
        self.printer.line(text)
