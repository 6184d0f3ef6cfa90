"""The training loop, for any task: epochs, evaluation, checkpoints, resume, time budgets.

:func:`train` runs a whole run of a :class:`~swinkit.train.task.TrainingTask` from a
:class:`TrainConfig` (or resumes one from its directory); the task supplies the data, the
model, the loss, the evaluator and the pictures (:mod:`swinkit.train.task`), and
:func:`swinkit.tasks.train` picks it by the config's ``task``. It works in one process or
under ``torchrun`` with DistributedDataParallel; ``--batch-size`` is per process, so the
global batch is ``batch_size * processes * accum_steps``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

import swinkit
from swinkit.data.memory import default_memory_limit
from swinkit.train import plots, recipe
from swinkit.train.config import TrainConfig
from swinkit.train.distributed import Distributed, RepeatedSampler, setup, teardown
from swinkit.train.lora import LoraAdapters
from swinkit.train.optim import build_optimizer, build_scheduler, set_total_steps
from swinkit.train.rng import rng_state, seed_all, set_rng_state
from swinkit.train.rundir import RunDirectory, new_run_path
from swinkit.train.task import EvaluationResult, Runtime, TrainingTask
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
#: Seconds assumed for what follows the last epoch (the final pictures and curves), at least.
FINAL_SECONDS = 2.0
#: Drawings after the last epoch, in units of one drawing of the curves as timed during the run
#: (the curves and the task's pictures); their time is kept out of the budget's last epochs.
FINAL_PICTURES = 2.0
#: The curves are redrawn at most this often (seconds), and after the last epoch.
PLOT_INTERVAL = 30.0
#: A step whose first try takes longer than this is timed once more, not three times.
SLOW_STEP = 2.0


def _now() -> float:
    """The clock of budgets and progress lines (seconds; tests replace it)."""
    return time.monotonic()


def _model_settings(config: TrainConfig) -> tuple[object, ...]:
    """The settings a task builds its model from: when the recipe changes them, the model is built again."""
    return config.model, config.model_overrides, config.drop_path, config.img_size, config.pretrained


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a finished run produced: ``best`` is the best value of the task's primary metric (``metric``).

    ``final`` is the task's evaluation of the last epoch's model (None without validation
    data); ``metrics`` the rows of the metrics file.
    """

    run_dir: Path
    epochs: int
    metric: str
    best: float | None
    final: EvaluationResult | None
    metrics: list[dict[str, Any]]


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
        """A bar counting samples, so that its rate reads in img/s."""
        return tqdm(
            total=total, desc=description, unit="img", disable=not self.interactive, leave=False, dynamic_ncols=True
        )


def train(
    config: TrainConfig, resume: str | Path | None = None, *, task: TrainingTask, spent: float = 0.0
) -> TrainResult:
    """Run (or, with ``resume``, continue) a training run of ``task``; returns where it went and how well.

    On resume the saved settings are used, except ``quiet``, ``workers`` and ``device``
    where ``config`` sets them. Augmentation randomness depends on the number of loading
    processes, so an exact resume keeps the saved ``workers``. Settings left ``None`` come
    from the recipe; with ``time_budget`` and no ``epochs`` the epochs are fitted to the
    budget from a few timed steps (and shortened if epochs turn out slower); ``spent``
    seconds already gone count against it (the command line passes the time since the
    process started). Raises :class:`TrainingDiverged` on a non-finite loss, and
    ValueError when ``task`` is not the task the config (or the resumed run) names.
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
    if config.task != task.name:
        raise ValueError(f"the settings name task {config.task!r} but the task given is {task.name!r}")
    config = task.resolve(config)
    context = setup(config.device)
    printer = _Printer(context, config.quiet, start)
    printer.log.start_heartbeat()
    try:
        return _Trainer(task, config, context, resume, printer, given=given).run()
    finally:
        printer.log.stop_heartbeat()
        teardown(context)


class _Trainer:
    def __init__(
        self,
        task: TrainingTask,
        config: TrainConfig,
        context: Distributed,
        resume: str | Path | None,
        printer: _Printer,
        given: frozenset[str] = frozenset(),
    ) -> None:
        self.task = task
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

        task.bind(Runtime(self.device, config.precision, context, printer.line))
        train_count = task.load_data(config)
        self.choices: list[recipe.Choice] = []
        self.candidates: list[recipe.Candidate] = []
        if self.fresh and config.recipe == "auto":
            plan = task.choose_recipe(config)
            self.config, self.choices, self.candidates = plan.config, plan.choices, plan.candidates
            self.config.validate()
        self._build_model()
        self.sampler = RepeatedSampler(train_count, context.world_size, context.rank, config.seed)
        self.loader_generator = torch.Generator()
        self.loaders = task.build_loaders(self.config, self.preprocessing, self.sampler, self.loader_generator)
        self.config = dataclasses.replace(self.config, workers=self.loaders.workers)
        # Only when the epochs are fitted to the time: epochs a user gives stay passes over the data.
        repeat = self.config.epoch_repeats is None and task.repeats_small_sets and "epochs" not in self.given
        if self.fresh and self.config.recipe == "auto" and repeat:
            repeats, why = recipe.choose_epoch_repeats(train_count, self.loaders.val_count)
            self.config = dataclasses.replace(self.config, epoch_repeats=repeats)
            self.choices.append(recipe.Choice("epoch", f"{repeats} pass{'es' if repeats > 1 else ''}", why,
                                              "--epoch-repeats"))  # fmt: skip
        self.sampler.repeats = self.config.epoch_repeats or 1
        self.train_loader, self.val_loader = self.loaders.train, self.loaders.val
        self.steps_per_epoch = math.ceil(len(self.train_loader) / self.config.accum_steps)
        self.fit_budget = 0.0
        self.most_epochs: int | None = None
        self.final_seconds = FINAL_SECONDS
        if self.fresh:
            self._plan()
        else:
            self._settle_ema(announce=False)
        # Training draws random numbers from where the model's initialisation left them,
        # whatever the timing drew.
        set_rng_state(self.rng_after_init)
        config = self.config

        global_batch = config.batch_size * context.world_size * config.accum_steps
        self.lr = config.lr * global_batch / config.lr_base_batch if config.lr_base_batch else config.lr
        self.optimizer = build_optimizer(
            self.model, self.lr, config.weight_decay, config.layer_decay, self.task.parameter_groups
        )
        self.scheduler = build_scheduler(
            self.optimizer,
            total_steps=self.steps_per_epoch * config.epochs,
            warmup_steps=round(config.warmup_epochs * self.steps_per_epoch),
            min_lr=config.min_lr,
            schedule=config.schedule,
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.precision == "fp16")
        self.ema = (
            AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
            if config.ema == "on"
            else None
        )
        self.network: nn.Module = self.model
        if context.enabled:
            self.network = DistributedDataParallel(
                self.model, device_ids=[context.local_rank] if self.device.type == "cuda" else None
            )

        self.start_epoch, self.step, self.best = 1, 0, None
        self.best_loss = math.inf
        self.rows: list[dict[str, Any]] = []
        self.plotted = -math.inf
        if resume is not None:
            self.run_dir = RunDirectory(resume)
            self._restore()
        else:
            path = new_run_path(config.output, config.name) if context.is_main else Path(config.output)
            path = Path(context.gather(str(path))[0])
            self.run_dir = RunDirectory(path)
            if context.is_main:
                self.run_dir.path.mkdir(parents=True, exist_ok=True)
                self.run_dir.write_config(self._config_record())

    def _build_model(self) -> None:
        """The task's model of the settings, initialised from the seed (the same whatever ran before)."""
        seed_all(self.config.seed + self.context.rank)
        config = self.config
        self.model = self.task.build_model(config).to(self.device)
        self.preprocessing = self.task.preprocessing(config, self.model)
        self.lora = None
        if config.lora:
            self.lora = LoraAdapters(
                self.model,
                config.lora,
                config.lora_alpha,
                config.lora_dropout,
                config.lora_targets,
                config.pretrained,
                heads=self.task.lora_heads(self.model),
            )
            self.printer.line(self.lora.summary())
        self.rng_after_init = rng_state()

    def _clock(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def _time_steps(self) -> tuple[float, float]:
        """Seconds per training step of ``batch_size`` samples and per evaluated sample, timed on a copy of the model.

        A model whose step would take long is timed on 8 samples and the time scaled to the batch.
        """
        config = self.config
        probe = copy.deepcopy(self.model).train()
        optimizer = build_optimizer(probe, 1e-6, config.weight_decay, config.layer_decay, self.task.parameter_groups)

        most = self.loaders.train_count
        # A run that may keep an EMA of the weights pays for its update in every step.
        averaged = (
            AveragedModel(probe, multi_avg_fn=get_ema_multi_avg_fn(0.999), use_buffers=True)
            if (config.ema or "off") != "off"
            else None
        )

        def stepper(size: int) -> Callable[[], None]:
            batch = self.task.timing_batch(min(size, most))

            def step() -> None:
                self.task.training_step(probe, batch()).loss.backward()
                if config.clip_grad:
                    nn.utils.clip_grad_norm_(probe.parameters(), config.clip_grad)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if averaged is not None:
                    averaged.update_parameters(probe)

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
        evaluated = min(evaluated, most)
        batch = self.task.timing_batch(evaluated)()
        evaluator = self.task.evaluator()
        probe.eval()
        with torch.no_grad():
            per_sample = time_calls(lambda: evaluator.update(probe, batch), warmup=0, repeats=1, clock=self._clock)
        timings = self.context.gather((step_seconds, per_sample / evaluated))
        return max(t[0] for t in timings), max(t[1] for t in timings)

    def _epoch_seconds(self) -> tuple[float, float]:
        """An epoch's estimated seconds, and a step's."""
        step, per_sample = self._time_steps()
        val_count = math.ceil(self.loaders.val_count / self.context.world_size)
        batches = self.steps_per_epoch * self.config.accum_steps
        return epoch_seconds(batches, step, val_count, per_sample, SAVE_SECONDS), step

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
            log.line(f"recipe: {self.task.recipe_line(config.recipe)}")
        log.line(self.loaders.description)
        per_epoch = step = None
        if self.fit_budget or self.printer.enabled:
            log.set_activity(f"timing a few training steps of {config.model or 'the model'}")
            per_epoch, step = self._epoch_seconds()
        epochs = config.epochs
        reason = "given" if "epochs" in self.given else f"the {config.recipe} recipe's"
        if self.fit_budget:
            most = self.most_epochs = recipe.MAX_EPOCHS if auto else config.epochs
            epochs = fit_epochs(budget, _now() - self.start, per_epoch, FINAL_SECONDS, most)
            timed = self.candidates[0] if self.candidates else None
            skipped: list[str] = []
            repeats = self.sampler.repeats  # the minimum counts passes over the data
            unit = "" if repeats == 1 else f" of {repeats} passes"
            for index, candidate in enumerate(self.candidates[1:], start=1):
                if epochs * repeats >= recipe.MIN_EPOCHS:
                    break
                # Epochs if the candidate's epoch took its share of FLOPs of the timed one's: more than it will
                # fit (a compact model's step is not that much faster), so one below the minimum is not timed.
                share = candidate.gflops / timed.gflops  # type: ignore[union-attr]
                bound = fit_epochs(budget, _now() - self.start, per_epoch * share, FINAL_SECONDS, most)
                if index < len(self.candidates) - 1 and bound * repeats < recipe.MIN_EPOCHS:
                    skipped.append(candidate.describe())
                    continue
                fitted, previous, timed = epochs, timed, candidate
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
                            f"epoch{'s' if fitted != 1 else ''}{unit} of {previous.describe()} fit in the time, "
                            f"fewer than {recipe.MIN_EPOCHS} passes over the data"
                            + (
                                f" ({', '.join(skipped)} not timed: fewer would fit even at their FLOPs' share)"
                                if skipped
                                else ""
                            ),
                            "--model, --set patch_size=P",
                        )
                    )
                )
                skipped = []
            source = "--time" if "time_budget" in self.given else "the default budget"
            reason = f"as many as fit in {format_duration(budget)} ({source}), at most {most}"
            if not auto and epochs < config.epochs and "warmup_epochs" not in self.given:
                warmup = config.warmup_epochs * epochs / config.epochs
                self.config = config = dataclasses.replace(config, warmup_epochs=warmup)
            self.config = config = dataclasses.replace(config, epochs=epochs)
        if auto:
            before = self.config
            self.config, more = self.task.after_timing(config, epochs, self.steps_per_epoch, reason)
            config = self.config
            config.validate()
            for choice in more:
                log.line(str(choice))
            if _model_settings(config) != _model_settings(before):
                # The recipe's last choices change the model (its drop-path): built again from the same seed.
                self._build_model()
        self._settle_ema(announce=auto or config.ema == "auto")
        config = self.config
        log.set_activity(None)
        if per_epoch is None:
            return
        total = _now() - self.start + config.epochs * per_epoch + self.final_seconds
        log.planned_epoch = per_epoch
        log.final_seconds = self.final_seconds
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

    def _settle_ema(self, announce: bool) -> None:
        """Decide the EMA of the weights (``ema`` "on" or "off", and its decay) from the run's steps; print why."""
        config = self.config
        from_scratch = not config.pretrained and not config.lora
        total_steps = self.steps_per_epoch * config.epochs
        keep, decay, why = recipe.choose_ema(total_steps, from_scratch, config.ema or "off", config.ema_decay)
        self.config = dataclasses.replace(config, ema="on" if keep else "off", ema_decay=decay)
        if announce:
            value = f"on, decay {decay:.4g}" if keep else "off"
            self.printer.line(str(recipe.Choice("EMA", value, why, "--ema on|off|auto --ema-decay")))

    def _config_record(self) -> dict[str, Any]:
        return {
            "train": self.config.to_dict(),
            **self.task.run_record(self.model),
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
        # Runs saved before tasks had one primary metric kept classification's top-1 under its own name.
        self.best = state["best_metric"] if "best_metric" in state else state["best_top1"]
        self.best_loss = state["best_loss"]
        ranks = state["rng"]
        if len(ranks) != self.context.world_size:
            raise ValueError(
                f"this run was saved with {len(ranks)} process(es); resume it with the same number "
                f"(got {self.context.world_size})"
            )
        set_rng_state(ranks[self.context.rank])
        self.rows = [row for row in self.run_dir.read_metrics() if int(row["epoch"]) < self.start_epoch]
        self.printer.line(f"resuming {self.run_dir.path} at epoch {self.start_epoch}/{self.config.epochs}")

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def run(self) -> TrainResult:
        self.printer.line(
            f"training {self.task.headline(self.model)}, {self.config.epochs} epochs, lr {self.lr:.2e}, "
            f"run {self.run_dir.path}"
        )
        primary = self.task.primary
        final = None
        epoch = self.start_epoch
        while epoch <= self.config.epochs:
            self.printer.log.epoch_started()
            row = self._train_epoch(epoch)
            self.printer.log.set_activity(f"epoch {epoch}/{self.config.epochs}  evaluating")
            final = self._evaluate()
            if final is not None:
                row |= {f"val_{name}": final.metrics[name] for name in self.task.val_columns}
                better = primary.better(final.metrics[primary.name], self.best)
                if better:
                    self.best = final.metrics[primary.name]
            else:
                row |= {f"val_{name}": "" for name in self.task.val_columns}
                better = row["train_loss"] < self.best_loss
                self.best_loss = min(self.best_loss, row["train_loss"])
            self.rows.append(row)
            self._save(epoch, better)
            self._epoch_pictures(epoch)
            self.printer.log.set_activity(None)
            self.printer.log.epoch_ended()
            self._report(row, self.config.epochs)
            self._keep_to_budget(epoch)
            epoch += 1
        if final is None:
            final = self._evaluate()
        pictures = [self.run_dir.path / "curves.png"]
        if self.context.is_main and self.rows:
            self._plot_curves()
        if self.context.is_main and final is not None:
            pictures += self.task.final_pictures(final, self.run_dir.path)
        self.printer.line(f"run: {self.run_dir.path}")
        if final is not None:
            self.printer.line(self.task.summary(final, self.best, self.run_dir.path / "best"))
            self.printer.line(f"plots: {', '.join(str(path) for path in pictures)}")
        else:
            self.printer.line(f"no validation set; plots: {pictures[0]}")
        for line in self.task.closing_lines(self.config, self.model):
            self.printer.line(line)
        return TrainResult(self.run_dir.path, self.config.epochs, primary.name, self.best, final, self.rows)

    @torch.no_grad()
    def _evaluate(self) -> EvaluationResult | None:
        """The task's evaluation of the model (its EMA when kept) on the validation batches; None without them."""
        if self.val_loader is None:
            return None
        model = self.eval_model
        was_training = model.training
        model.eval()
        evaluator = self.task.evaluator()
        for batch in self.val_loader:
            evaluator.update(model, batch)
        model.train(was_training)
        return evaluator.compute()

    def _epoch_pictures(self, epoch: int) -> None:
        if not self.context.is_main:
            return
        model = self.eval_model
        was_training = model.training
        model.eval()
        with torch.no_grad():
            self.task.epoch_pictures(model, self.run_dir.path, epoch)
        model.train(was_training)

    def _plot_curves(self) -> None:
        plots.plot_curves(
            self.rows, self.run_dir.path / "curves.png", self.task.curve_columns(), self.task.curves_title
        )

    def _keep_to_budget(self, epoch: int) -> None:
        """Refit the epochs when they turn out slower (or, early on, faster) than timed."""
        if not self.fit_budget or not self.fresh or epoch >= self.config.epochs:
            return
        per_epoch = self.printer.log.per_epoch() or 0.0
        elapsed = _now() - self.start
        epochs = refit(
            self.fit_budget, elapsed, epoch, self.config.epochs, per_epoch, self.final_seconds, self.most_epochs
        )
        epochs = self.context.gather(epochs)[0]
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
        names = self.task.train_columns
        # The loss summed over samples, the samples, then per column of the task its sum and the batches giving it.
        totals = torch.zeros(2 + 2 * len(names), dtype=torch.float64)
        started = time.perf_counter()
        batches = len(self.train_loader)
        bar = self.printer.bar(len(self.sampler), f"epoch {epoch}/{config.epochs}")
        for index, batch in enumerate(self.train_loader):
            stepping = (index + 1) % config.accum_steps == 0 or index + 1 == batches
            sync = stepping or not self.context.enabled
            with self.network.no_sync() if not sync else contextlib.nullcontext():
                output = self.task.training_step(self.network, batch)
                self._check_finite(output.loss, epoch, index)
                self.scaler.scale(output.loss / config.accum_steps).backward()
            if stepping:
                self._optimizer_step()
            count = output.count
            loss_value = output.loss.item()
            sums = [output.sums.get(name, 0.0) for name in names]
            given = [1.0 if name in output.sums else 0.0 for name in names]
            totals += torch.tensor([loss_value * count, count, *sums, *given], dtype=torch.float64)
            bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{self.optimizer.param_groups[-1]['lr']:.2e}", refresh=False)
            bar.update(count)
            self.printer.log.batch_done(epoch, config.epochs, index + 1, batches, loss_value)
        bar.close()
        seconds = time.perf_counter() - started
        totals = self.context.all_reduce_sum(totals.to(self.device)).cpu().tolist()
        loss_sum, samples = totals[:2]
        sums, given = totals[2 : 2 + len(names)], totals[2 + len(names) :]
        return {
            "epoch": epoch,
            "step": self.step,
            "train_loss": loss_sum / samples,
            **{f"train_{name}": total / samples if any_ else "" for name, total, any_ in zip(names, sums, given)},
            "lr": self.optimizer.param_groups[-1]["lr"],
            "img_per_s": samples / seconds,
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
        rng = self.context.gather(rng_state())
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
            "best_metric": self.best,
            "best_loss": self.best_loss,
            "rng": rng,
        }

        def export(folder: Path) -> None:
            if self.lora is not None:
                self.lora.save(folder, self.preprocessing, self.task.save_model)
            else:
                self.task.save_model(self.eval_model, folder, self.preprocessing)

        # Metrics first: a kill between the two leaves rows past the last checkpoint, which
        # resume drops, never a checkpoint without its row.
        self.run_dir.write_metrics(self.rows)
        self.run_dir.save_checkpoint(epoch, export, state, best)
        if _now() - self.plotted >= PLOT_INTERVAL:
            began = _now()
            self._plot_curves()
            self.plotted = _now()
            # What follows the last epoch draws the curves and the task's pictures: about twice this.
            self.final_seconds = max(FINAL_SECONDS, FINAL_PICTURES * (self.plotted - began))
            self.printer.log.final_seconds = self.final_seconds

    def _report(self, row: dict[str, Any], epochs: int) -> None:
        text = f"epoch {row['epoch']}/{epochs}  {self.task.epoch_text(row)}"
        text += f"  lr {row['lr']:.2e}  {row['img_per_s']:.0f} img/s  {row['seconds']:.1f}s"
        left = epochs - int(row["epoch"])
        text += f"  elapsed {format_duration(self.printer.log.elapsed())}"
        if left:
            remaining = self.printer.log.remaining(left)
            text += f", remaining ~{format_duration(remaining)}" if remaining is not None else ""
        self.printer.line(text)
