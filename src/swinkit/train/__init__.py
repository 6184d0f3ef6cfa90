"""Training, for any task: the loop, recipes, the optimiser and schedule, run directories and metrics.

The loop (:func:`swinkit.train.loop.train`) trains a :class:`swinkit.train.task.TrainingTask`
from a :class:`swinkit.train.config.TrainConfig`; :func:`swinkit.tasks.train` picks the
task the settings name.
"""
