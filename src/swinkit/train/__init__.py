"""Training: recipes, the optimiser and schedule, the loop, run directories and metrics.

Entry point: :func:`swinkit.train.loop.train` with a :class:`swinkit.train.config.TrainConfig`.
"""
