"""The task-blind training loop, driven by a toy regression task written here against the task interface.

Nothing of classification runs: the loop trains any :class:`~swinkit.train.task.TrainingTask`,
resumes it exactly, keeps ``best`` by the task's primary metric in the task's direction,
and writes the task's metrics to the metrics file and the epoch lines.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset, TensorDataset

from swinkit.cli import build_parser
from swinkit.cli.arguments import task_options
from swinkit.cli.train import config_from_args
from swinkit.preprocessing import Preprocessing
from swinkit.tasks import TASKS, get_task, task_for
from swinkit.train import loop
from swinkit.train.config import TrainConfig
from swinkit.train.task import Evaluator, Loaders, Metric, Scores, StepOutput, TrainingTask

#: The "score" the toy evaluator reports after each epoch, whatever the model: it decides which epoch is best.
SCORES = (3.0, 1.0, 2.0)


class ToyEvaluator(Evaluator):
    def __init__(self, task: ToyTask) -> None:
        self.task = task
        self.squared = 0.0
        self.count = 0

    def update(self, model: nn.Module, batch: Any) -> None:
        inputs, targets = batch
        self.squared += float(((model(inputs) - targets) ** 2).sum())
        self.count += len(inputs)

    def compute(self) -> Scores:
        if self.count == 0:
            raise ValueError("nothing to evaluate")
        self.task.evaluations += 1
        score = SCORES[(self.task.evaluations - 1) % len(SCORES)]
        return Scores({"loss": self.squared / self.count, "score": score}, self.count)


class ToyTask(TrainingTask):
    """Regression of a noisy linear function of 4 numbers; the primary metric is a scripted score."""

    name: ClassVar[str] = "toy"
    val_columns: ClassVar[tuple[str, ...]] = ("loss", "score")
    train_columns: ClassVar[tuple[str, ...]] = ("abs_error",)

    def __init__(self, mode: str = "max") -> None:
        self.primary = Metric("score", mode)  # type: ignore[arg-type]
        self.evaluations = 0
        generator = torch.Generator().manual_seed(0)
        self.inputs = torch.randn(60, 4, generator=generator)
        self.targets = self.inputs @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1

    def load_data(self, config: TrainConfig) -> int:
        return 48

    def build_model(self, config: TrainConfig) -> nn.Module:
        return nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 1))

    def preprocessing(self, config: TrainConfig, model: nn.Module) -> Preprocessing:
        return Preprocessing.default((1, 4), 1)

    def run_record(self, model: nn.Module) -> dict[str, Any]:
        return {"model": {"layers": [4, 8, 1]}}

    def save_model(self, model: nn.Module, folder: Path, preprocessing: Preprocessing) -> None:
        torch.save(model.state_dict(), folder / "toy.pt")

    def build_loaders(
        self, config: TrainConfig, preprocessing: Preprocessing, sampler: DistributedSampler, generator: torch.Generator
    ) -> Loaders:
        data = TensorDataset(self.inputs, self.targets)
        train = DataLoader(Subset(data, range(48)), batch_size=config.batch_size, sampler=sampler, generator=generator)
        val = DataLoader(Subset(data, range(48, 60)), batch_size=6)
        return Loaders(train, val, 48, 12, 0, "data: 48 training and 12 validation rows")

    def timing_batch(self, size: int) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
        return lambda: (self.inputs[:size], self.targets[:size])

    def training_step(self, model: nn.Module, batch: Any) -> StepOutput:
        inputs, targets = batch
        # Noise from the global generator: an exact resume must restore it.
        outputs = model(inputs + 0.05 * torch.randn(inputs.shape))
        error = outputs - targets
        return StepOutput((error**2).mean(), len(inputs), {"abs_error": float(error.detach().abs().sum())})

    def evaluator(self) -> ToyEvaluator:
        return ToyEvaluator(self)


def toy_config(tmp_path: Path, name: str, **changes: Any) -> TrainConfig:
    settings = dict(task="toy", data="toy", output=str(tmp_path), name=name, epochs=3, batch_size=8, lr=1e-2,
                    warmup_epochs=0.0, quiet=True, seed=5) | changes  # fmt: skip
    return TrainConfig(**settings)


def read_metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize(("mode", "best_epoch", "best"), [("max", 1, 3.0), ("min", 2, 1.0)])
def test_best_follows_the_primary_metric_in_its_direction(tmp_path, mode, best_epoch, best):
    result = loop.train(toy_config(tmp_path, mode), task=ToyTask(mode))
    assert result.metric == "score" and result.best == best and result.epochs == 3
    assert (result.run_dir / "best").resolve().name == f"epoch-{best_epoch:04d}"
    assert (result.run_dir / "last").resolve().name == "epoch-0003"
    assert (result.run_dir / "best" / "toy.pt").is_file()


def test_the_metrics_file_and_epoch_lines_hold_the_task_metrics(tmp_path, capsys):
    result = loop.train(toy_config(tmp_path, "lines", quiet=False), task=ToyTask())
    rows = read_metrics(result.run_dir)
    assert list(rows[0]) == ["epoch", "step", "train_loss", "train_abs_error", "lr", "img_per_s", "seconds",
                             "val_loss", "val_score"]  # fmt: skip
    assert [float(row["val_score"]) for row in rows] == list(SCORES)
    assert [int(row["step"]) for row in rows] == [6, 12, 18]  # 48 rows in batches of 8
    losses = [float(row["val_loss"]) for row in rows]
    assert losses[-1] < losses[0]
    assert result.final.metrics["loss"] == pytest.approx(losses[-1])
    out = capsys.readouterr().out
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 3 and "val loss" in epoch_lines[0] and "score 3.0000" in epoch_lines[0]
    assert "  abs_error " in epoch_lines[0]
    assert "data: 48 training and 12 validation rows" in out and "validation: loss" in out
    assert (result.run_dir / "curves.png").stat().st_size > 0
    saved = json.loads((result.run_dir / "config.json").read_text())
    assert saved["train"]["task"] == "toy" and saved["model"] == {"layers": [4, 8, 1]}


def test_a_killed_run_resumes_exactly(tmp_path, monkeypatch):
    whole = loop.train(toy_config(tmp_path, "whole"), task=ToyTask())

    class Killed(Exception):
        pass

    def die(self, row, epochs):
        raise Killed

    monkeypatch.setattr(loop._Trainer, "_report", die)
    with pytest.raises(Killed):
        loop.train(toy_config(tmp_path, "cut"), task=ToyTask())
    monkeypatch.undo()
    assert (tmp_path / "cut" / "last").resolve().name == "epoch-0001"
    task = ToyTask()
    task.evaluations = 1  # the scripted scores go on from the first epoch
    resumed = loop.train(TrainConfig(task="toy", quiet=True), resume=tmp_path / "cut", task=task)

    expected = torch.load(whole.run_dir / "last" / "training_state.pt", weights_only=True)
    got = torch.load(resumed.run_dir / "last" / "training_state.pt", weights_only=True)
    for name, value in expected["model"].items():
        assert torch.equal(value, got["model"][name]), name
    for index, state in expected["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg"], got["optimizer"]["state"][index]["exp_avg"])
    assert got["step"] == expected["step"] == 18 and got["best_metric"] == expected["best_metric"] == 3.0
    def untimed(run: Path) -> list[dict[str, str]]:
        timed = ("img_per_s", "seconds")
        return [{key: value for key, value in row.items() if key not in timed} for row in read_metrics(run)]

    assert untimed(resumed.run_dir) == untimed(whole.run_dir) and len(untimed(whole.run_dir)) == 3


def test_the_loop_refuses_a_task_other_than_the_settings_name(tmp_path):
    with pytest.raises(ValueError, match="settings name task 'classify' but the task given is 'toy'"):
        loop.train(TrainConfig(data="toy", output=str(tmp_path)), task=ToyTask())


def test_tasks_are_found_by_name_and_by_run(tmp_path):
    assert list(TASKS)[0] == "classify" and get_task("classify").name == "classify"  # the default comes first
    assert get_task("pretrain").name == "pretrain"
    assert get_task("segment").name == "segment" and get_task("detect").name == "detect"
    with pytest.raises(ValueError, match="task 'segmant' is not one of classify"):
        get_task("segmant")
    run = tmp_path / "old-run"
    run.mkdir()
    (run / "config.json").write_text('{"train": {"data": "digits"}}')  # written before tasks had names
    assert task_for(run).name == "classify" and task_for("swin_t").name == "classify"


def test_train_takes_the_task_and_its_own_flags_only():
    args = build_parser().parse_args(["train", "--data", "photos"])
    config = config_from_args(args)
    assert config.task == "classify" and config.task_options == {}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--task", "segmant"])
    flags = {"classify": [], "segment": [("crop_size", "--crop-size")]}
    given = argparse.Namespace(task_flags=flags, crop_size=512)
    assert task_options(given, "segment") == {"crop_size": 512}
    with pytest.raises(ValueError, match="--crop-size is a flag of task segment, not of task classify"):
        task_options(given, "classify")


def test_metric_direction():
    assert Metric("miou", "max").better(0.5, 0.4) and not Metric("miou", "max").better(0.4, 0.4)
    assert Metric("loss", "min").better(0.3, 0.4) and Metric("loss", "min").better(9.0, None)
    with pytest.raises(ValueError, match="mode 'up' is not one of max, min"):
        Metric("loss", "up")  # type: ignore[arg-type]
