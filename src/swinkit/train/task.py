"""What the training loop asks of a task: the contract between :mod:`swinkit.train.loop` and a task.

The loop (epochs, accumulation, precision, the optimiser and schedule, EMA, LoRA, time
budgets and their step timing, checkpoints, resume, the run folder, distributed training)
knows no task. A :class:`TrainingTask` supplies what differs between classification,
segmentation, detection and masked-image pre-training: the data and its loaders, the
model, one training step's loss, an :class:`Evaluator`, the primary metric and its
direction, the recipe chosen from the data, and the pictures. The tasks themselves live
in :mod:`swinkit.tasks` (a layer above this one), whose :class:`swinkit.tasks.base.Task`
adds what the commands (``eval``, ``predict``, ``serve``) need.

A task object serves one run and may keep state between its calls (the data it read,
the loaders it built). The loop calls, in order::

    resolve(config)                      settings the named recipe fills
    bind(runtime)                        where the run executes (self.runtime)
    load_data(config)                    read the data (once)
    choose_recipe(config)                only a fresh run with recipe "auto"
    build_model(config)                  after the loop seeds the generators; again on a recipe step-down
    preprocessing(config, model)         what travels with the weights
    build_loaders(config, preprocessing, sampler, generator)
    timing_batch(size), training_step()  timing a few steps (fresh runs, before training)
    after_timing(config, epochs, ...)    recipe "auto": fill what depends on the epochs
    per epoch: training_step(model, batch) per batch; evaluator(), update(), compute();
               epoch_pictures(model, folder, epoch) on rank 0
    at the end: final_pictures(result, folder), summary(result, best, best_path), closing_lines(config, model)

``best`` is the checkpoint with the best primary metric; a run without validation data
keeps the one with the lowest training loss.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Literal, Protocol

import torch
from torch import nn
from torch.utils.data import DistributedSampler

import swinkit
from swinkit.preprocessing import Preprocessing
from swinkit.train.config import TrainConfig
from swinkit.train.distributed import Distributed
from swinkit.train.metrics import autocast
from swinkit.train.optim import parameter_groups
from swinkit.train.recipe import Candidate, Choice


@dataclasses.dataclass(frozen=True)
class Metric:
    """The validation metric that picks the ``best`` checkpoint: its name in the metrics and its direction.

    ``mode`` is ``"max"`` (accuracy, mIoU, AP) or ``"min"`` (a loss).
    """

    name: str
    mode: Literal["max", "min"]

    def __post_init__(self) -> None:
        if self.mode not in ("max", "min"):
            raise ValueError(f"metric mode {self.mode!r} is not one of max, min")

    def better(self, value: float, best: float | None) -> bool:
        """Whether ``value`` beats ``best`` (strictly; anything beats None)."""
        if best is None:
            return True
        return value > best if self.mode == "max" else value < best


@dataclasses.dataclass(frozen=True)
class Runtime:
    """Where a run executes, handed to the task once: device, precision, processes, and rank 0's output.

    ``log`` prints a line on rank 0 (nothing when quiet); :meth:`autocast` is the run's
    mixed-precision context, which a task enters around its forward passes.
    A task reaches it as ``self.runtime`` (:meth:`TrainingTask.bind`).
    """

    device: torch.device
    precision: str
    context: Distributed
    log: Callable[[str], None]

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast in the run's precision on its device (nothing for fp32)."""
        return autocast(self.device, self.precision)


@dataclasses.dataclass
class StepOutput:
    """One training batch's result: the loss to minimise and what the epoch's row reports.

    ``loss`` is the scalar the loop scales and back-propagates (a task whose model gives
    several named losses sums them here). ``count`` is the number of samples in the batch
    (it weights the epoch's mean loss and gives the samples per second). ``sums`` are the
    batch's totals of the task's :attr:`TrainingTask.train_columns`: the row holds each
    sum over the epoch divided by its samples, so a per-batch mean ``m`` is given as
    ``m * count`` (a column no batch gives is left blank).
    """

    loss: torch.Tensor
    count: int
    sums: Mapping[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Loaders:
    """The batches of a run: ``train`` (one epoch per iteration, with ``len``) and ``val`` (None without one).

    ``train_count`` and ``val_count`` are the samples in each set (all processes
    together); ``workers`` the loading processes chosen (recorded in the run's settings so
    that a resume loads alike); ``description`` the line printed about the data.
    """

    train: Any
    val: Iterable[Any] | None
    train_count: int
    val_count: int
    workers: int
    description: str


class EvaluationResult(Protocol):
    """What an :class:`Evaluator` returns: at least the metrics, by name (``loss``, ``top1``, ``miou``, ...)."""

    @property
    def metrics(self) -> Mapping[str, float]: ...


@dataclasses.dataclass(frozen=True)
class Scores:
    """A plain :class:`EvaluationResult`: the metrics over ``count`` samples, and anything else a task keeps."""

    metrics: Mapping[str, float]
    count: int
    details: Any = None


class Evaluator(abc.ABC):
    """Accumulates over the validation batches, then computes the metrics once (over all processes).

    The loop puts the model in eval mode, turns gradients off, calls :meth:`update` for
    every batch of this process's share, then :meth:`compute` on every process.
    """

    @abc.abstractmethod
    def update(self, model: nn.Module, batch: Any) -> None:
        """Run ``model`` on one batch (in the runtime's autocast) and accumulate."""

    @abc.abstractmethod
    def compute(self) -> EvaluationResult:
        """The metrics of everything accumulated, reduced (or gathered) over the processes.

        The result's ``metrics`` hold every name of :attr:`TrainingTask.val_columns`.
        Raises ValueError when nothing was accumulated.
        """


@dataclasses.dataclass
class RecipePlan:
    """The data-chosen recipe: the filled settings, the choices to print, and the models to step down to."""

    config: TrainConfig
    choices: list[Choice] = dataclasses.field(default_factory=list)
    candidates: list[Candidate] = dataclasses.field(default_factory=list)


class TrainingTask(abc.ABC):
    """The parts of a training run that differ between tasks; the loop supplies the rest.

    Class attributes to set: :attr:`name` (the ``--task`` name), :attr:`primary` (the
    validation metric that picks ``best``), :attr:`val_columns` (the metric names the
    evaluator returns, in the order of the metrics file; ``primary.name`` among them) and
    :attr:`train_columns` (the names a training step sums, :class:`StepOutput`). The
    metrics file has the columns ``epoch, step, train_loss, train_<name>..., lr, img_per_s,
    seconds, val_<name>...``. Abstract methods must be written; the others have defaults.
    """

    name: ClassVar[str]
    primary: ClassVar[Metric]
    val_columns: ClassVar[tuple[str, ...]]
    train_columns: ClassVar[tuple[str, ...]] = ()
    #: The columns drawn in ``curves.png`` beside the loss (column -> label; empty: every validation metric but
    #: the loss, see :meth:`curve_columns`), and that panel's title.
    curves: ClassVar[Mapping[str, str]] = MappingProxyType({})
    curves_title: ClassVar[str] = "validation"
    #: Whether the data-chosen recipe passes over a small training set several times an epoch
    #: (:func:`swinkit.train.recipe.choose_epoch_repeats`); ``--epoch-repeats`` sets it for any task.
    repeats_small_sets: ClassVar[bool] = False

    _runtime: Runtime | None = None

    def bind(self, runtime: Runtime) -> None:
        """Keep the run's :class:`Runtime` (the loop calls this first)."""
        self._runtime = runtime

    @property
    def runtime(self) -> Runtime:
        """The runtime of :meth:`bind` (RuntimeError before)."""
        if self._runtime is None:
            raise RuntimeError(f"task {self.name!r} is not bound to a run yet (bind(runtime) comes first)")
        return self._runtime

    # Settings and data.

    def resolve(self, config: TrainConfig) -> TrainConfig:
        """``config`` with the unset settings its named recipe fixes filled, validated (``config.resolved()``)."""
        return config.resolved()

    def recipe_line(self, recipe: str) -> str:
        """The line printed about a named recipe (not ``auto``, whose choices are printed one by one)."""
        return recipe

    @abc.abstractmethod
    def load_data(self, config: TrainConfig) -> int:
        """Read the training and validation data of ``config`` and keep it; returns the number of training samples."""

    def choose_recipe(self, config: TrainConfig) -> RecipePlan:
        """Fill the settings the data decides (recipe ``auto``, fresh runs only), with a :class:`Choice` per setting.

        ``candidates`` are cheaper models, most costly first, that the loop steps down to
        when too few epochs of the chosen one fit in the time budget. By default nothing is
        chosen.
        """
        return RecipePlan(config)

    def after_timing(
        self, config: TrainConfig, epochs: int, steps_per_epoch: int, reason: str
    ) -> tuple[TrainConfig, list[Choice]]:
        """Recipe ``auto``, once the steps are timed: set ``epochs`` (chosen for ``reason``) and what depends on it.

        A task whose augmentation depends on these settings rebuilds it here. By default
        only the epochs are set.
        """
        return dataclasses.replace(config, epochs=epochs), [Choice("epochs", str(epochs), reason, "--epochs, --time")]

    # The model.

    @abc.abstractmethod
    def build_model(self, config: TrainConfig) -> nn.Module:
        """The model of ``config``: fresh, or from ``config.pretrained``, on the CPU.

        The loop has seeded the random generators; it moves the model to the device. Apply
        ``config.grad_checkpointing`` and ``config.freeze_backbone`` here as the model allows.
        """

    @abc.abstractmethod
    def preprocessing(self, config: TrainConfig, model: nn.Module) -> Preprocessing:
        """The preprocessing the model's inputs get (and its export records)."""

    def parameter_groups(self, model: nn.Module, weight_decay: float, layer_decay: float) -> list[dict[str, object]]:
        """AdamW's parameter groups, each with an ``lr_scale`` (:func:`swinkit.train.optim.parameter_groups`).

        The default exempts norms, biases and position-bias tables from weight decay; its
        layer-wise decay (``layer_decay`` < 1) reads a Swin classifier's parameter names.
        """
        return parameter_groups(model, weight_decay, layer_decay)

    def lora_heads(self, model: nn.Module) -> tuple[str, ...]:
        """The modules a LoRA run trains fully beside the adapters (PEFT's ``modules_to_save``): the head."""
        return ("head",)

    def run_record(self, model: nn.Module) -> dict[str, Any]:
        """Entries of the run's ``config.json`` beside the settings (by default the model's config)."""
        return {"model": model.config.to_dict()}

    def headline(self, model: nn.Module) -> str:
        """What the first training line says is trained on what: ``"16-wide Swin (12,345 parameters) on 43 images"``."""
        parameters = sum(p.numel() for p in model.parameters())
        return f"{type(model).__name__} ({parameters:,} parameters)"

    def save_model(self, model: nn.Module, folder: Path, preprocessing: Preprocessing) -> None:
        """Write ``model`` into checkpoint folder ``folder`` so that it loads on its own (swinkit's native format)."""
        swinkit.save_pretrained(model, folder, format="native", preprocessing=preprocessing)

    # Batches.

    @abc.abstractmethod
    def build_loaders(
        self,
        config: TrainConfig,
        preprocessing: Preprocessing,
        sampler: DistributedSampler,
        generator: torch.Generator,
    ) -> Loaders:
        """The training and validation batches of the data read by :meth:`load_data`.

        ``sampler`` orders this process's training samples (the loop sets its epoch) and
        ``generator`` seeds the augmentation (the loop reseeds it each epoch): use both, so
        that a resumed run draws the same batches. ``config.workers`` None means: choose
        (see :func:`loader_workers`). Validation batches are this process's share of the
        validation set (rows ``rank, rank + world_size, ...``).
        """

    @abc.abstractmethod
    def timing_batch(self, size: int) -> Callable[[], Any]:
        """A function giving a training batch of ``size`` samples like the loader's, to time steps on."""

    # Training and evaluation.

    @abc.abstractmethod
    def training_step(self, model: nn.Module, batch: Any) -> StepOutput:
        """One batch's loss: move it to the device, run ``model`` in ``self.runtime.autocast()``, compute the loss.

        ``model`` is in train mode (wrapped for DistributedDataParallel when distributed);
        the loop checks the loss is finite, back-propagates and steps the optimiser.
        """

    @abc.abstractmethod
    def evaluator(self) -> Evaluator:
        """A fresh :class:`Evaluator` of the validation batches."""

    def epoch_text(self, row: Mapping[str, Any]) -> str:
        """The epoch line's middle, between ``epoch i/n`` and the learning rate: the losses and the metrics."""
        text = f"train loss {row['train_loss']:.4f}"
        trained = [name for name in self.train_columns if row[f"train_{name}"] != ""]
        text += "".join(f"  {name} {row['train_' + name]:.4f}" for name in trained)
        if row[f"val_{self.primary.name}"] != "":
            text += "  val " + "  ".join(f"{name} {row['val_' + name]:.4f}" for name in self.val_columns)
        return text

    # Pictures and the last lines.

    def curve_columns(self) -> Mapping[str, str]:
        """The columns ``curves.png`` draws beside the loss: :attr:`curves`, else every ``val_`` metric but the loss."""
        if self.curves:
            return self.curves
        return {f"val_{name}": name for name in self.val_columns if name != "loss"}

    def epoch_pictures(self, model: nn.Module, folder: Path, epoch: int) -> list[Path]:
        """Pictures drawn after each epoch into the run folder (rank 0; the model in eval mode); none by default."""
        return []

    def final_pictures(self, result: EvaluationResult, folder: Path) -> list[Path]:
        """Pictures of the final validation result, written into the run folder (rank 0); none by default."""
        return []

    def summary(self, result: EvaluationResult, best: float | None, best_path: Path) -> str:
        """The line about the final validation result and the best checkpoint."""
        values = ", ".join(f"{name} {value:.4f}" for name, value in result.metrics.items())
        return f"validation: {values} (best {self.primary.name} {best:.4f}, saved as {best_path})"

    def closing_lines(self, config: TrainConfig, model: nn.Module) -> list[str]:
        """Lines printed last, after the summary (a data-chosen recipe's report); none by default."""
        return []


def cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def loader_workers(device: torch.device, cores: int) -> int:
    """Loading processes for images read from files: most cores beside a GPU, half of them beside CPU training."""
    if device.type == "cuda":
        return max(1, min(8, cores - 1))
    return max(1, min(4, cores // 2))
