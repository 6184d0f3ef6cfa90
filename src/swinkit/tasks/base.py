"""The task interface: what a task supplies to ``swinkit train``, ``eval``, ``predict`` and ``serve``.

A task (classification, segmentation, detection, masked-image pre-training) is a subclass
of :class:`Task`, registered by name in :data:`swinkit.tasks.TASKS`. Training asks it for
the parts of :class:`~swinkit.train.task.TrainingTask` (the data and loaders, the model,
a step's loss, the evaluator with its primary metric and direction, the recipe from the
data, the pictures; see :mod:`swinkit.train.task` for the order of the calls); the
commands ask it for what :class:`Task` adds here: its own flags, evaluation of a trained
model on data, and predictions for files, each answered as a :class:`Report` that the
command line prints or writes. A command given a run folder asks the task the run
recorded (its ``config.json``); given a checkpoint, the task that :meth:`Task.recognises`
it, else classification.

To write a task::

    class SegmentTask(Task):
        name = "segment"
        description = "semantic segmentation: images and masks in, a class per pixel out"
        primary = Metric("miou", "max")
        val_columns = ("loss", "miou", "pixel_accuracy")
        def load_data(self, config): ...          # and the other abstract methods of TrainingTask

and add it to :data:`swinkit.tasks.TASKS`.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from swinkit.train.task import TrainingTask

#: The commands a task can add flags to (:meth:`Task.add_arguments`).
COMMANDS = ("train", "eval", "predict")
Command = Literal["train", "eval", "predict"]


@dataclasses.dataclass(frozen=True)
class CommandOptions:
    """The settings ``swinkit eval`` and ``swinkit predict`` share, and the task's own flags (``extra``, by dest).

    ``output`` is the folder for files the command writes (None: the command's default);
    ``patch_remainder`` (``"pad"``, ``"crop"`` or None for the checkpoint's) says whose answers the
    model gives at sizes it was not trained for, Hugging Face's or torchvision's
    (:attr:`swinkit.SwinConfig.patch_remainder`).
    """

    device: str | None = None
    precision: str = "fp32"
    patch_remainder: str | None = None
    batch_size: int = 32
    workers: int = 2
    skip_bad_images: bool = False
    output: Path | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Report:
    """A command's answer: JSON-ready ``data`` (``--json``), ``lines`` for people, the ``files`` written, exit code."""

    data: Any
    lines: list[str]
    files: list[Path] = dataclasses.field(default_factory=list)
    code: int = 0


class Task(TrainingTask):
    """A task as every command sees it: :class:`~swinkit.train.task.TrainingTask` plus the commands' parts.

    Set :attr:`description` (one line, shown by ``swinkit train --help``). The command
    methods have defaults that say the command does not support the task yet.
    """

    description: ClassVar[str]

    @classmethod
    def add_arguments(cls, command: Command, group: argparse._ArgumentGroup) -> None:
        """Add the flags only this task reads to ``command``'s parser (a group titled after the task).

        Their values reach the task by ``dest``: ``config.task_options`` for ``train`` (kept
        in the run's settings, so a resume reads them too), ``options.extra`` for ``eval``
        and ``predict``. Give each flag ``default=None`` (unset) and read the default in the
        task, so that a flag of another task is told apart. By default no flags.
        """

    @classmethod
    def recognises(cls, source: str) -> bool:
        """Whether ``source`` (a checkpoint file or folder, or a Hub id; not a run folder) holds this task's model."""
        return False

    def evaluate(self, source: str, data: str, options: CommandOptions) -> Report:
        """``swinkit eval``: the metrics of the model in ``source`` on labelled ``data`` (files: ``options.output``)."""
        raise ValueError(f"swinkit eval does not support task {self.name!r} yet")

    def predict(self, source: str, inputs: Sequence[str], options: CommandOptions) -> Report:
        """``swinkit predict``: the model's answer for each input image (files and folders, walked recursively).

        The report's ``code`` is 1 when some inputs could not be read (the rest are answered).
        """
        raise ValueError(f"swinkit predict does not support task {self.name!r} yet")
