"""Tasks: what differs between classification, segmentation, detection and pre-training.

:data:`TASKS` names every task (``swinkit train --task NAME``); :func:`get_task` gives a
fresh one by name, :func:`task_for` the one that a run folder or checkpoint belongs to,
and :func:`train` trains the task a :class:`~swinkit.train.config.TrainConfig` names with
the task-blind loop (:func:`swinkit.train.loop.train`). The interface is
:class:`~swinkit.tasks.base.Task`.
"""

from __future__ import annotations

import json
from pathlib import Path
from collections.abc import Mapping
from types import MappingProxyType

from swinkit.tasks.base import CommandOptions, Report, Task
from swinkit.tasks.classify import ClassifyTask
from swinkit.tasks.detect import DetectTask
from swinkit.tasks.pretrain import PretrainTask
from swinkit.tasks.segment import SegmentTask
from swinkit.train.config import TrainConfig
from swinkit.train.loop import TrainResult
from swinkit.train.loop import train as train_task
from swinkit.train.rundir import CONFIG_FILE

#: The tasks by name; the first is the default.
TASKS: Mapping[str, type[Task]] = MappingProxyType(
    {"classify": ClassifyTask, "segment": SegmentTask, "detect": DetectTask, "pretrain": PretrainTask}
)
#: The task of runs and checkpoints that name none.
DEFAULT_TASK = "classify"


def get_task(name: str) -> Task:
    """A fresh task of ``name``; ValueError naming the accepted tasks for any other name."""
    if name not in TASKS:
        raise ValueError(f"task {name!r} is not one of {', '.join(TASKS)}")
    return TASKS[name]()


def recorded_task(run: str | Path) -> str | None:
    """The task a run folder recorded (``classify`` for runs from before tasks), or None for anything else."""
    config = Path(run) / CONFIG_FILE
    if not config.is_file():
        return None
    return json.loads(config.read_text()).get("train", {}).get("task", DEFAULT_TASK)


def task_for(source: str | Path) -> Task:
    """The task of a run folder (as it recorded) or of a checkpoint (the task that recognises it, else classify)."""
    recorded = recorded_task(source)
    if recorded is not None:
        return get_task(recorded)
    for name, task in TASKS.items():
        if name != DEFAULT_TASK and task.recognises(str(source)):
            return task()
    return get_task(DEFAULT_TASK)


def train(config: TrainConfig, resume: str | Path | None = None, *, spent: float = 0.0) -> TrainResult:
    """Train the task ``config.task`` names (on resume, the one the run recorded): :func:`swinkit.train.loop.train`."""
    name = recorded_task(resume) if resume is not None else config.task
    if resume is not None and name is None:
        raise FileNotFoundError(f"{resume} is not a swinkit run: it has no {CONFIG_FILE}")
    return train_task(config, resume, task=get_task(name or DEFAULT_TASK), spent=spent)


__all__ = ["DEFAULT_TASK", "TASKS", "CommandOptions", "Report", "Task", "get_task", "task_for", "train"]
