"""Figures drawn without pyplot: an Agg canvas per figure, so importing swinkit never changes a notebook's backend."""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Resolution of the PNGs the ``swinkit show`` and ``swinkit flops`` commands write.
DEFAULT_DPI = 90


def new_figure(width: float, height: float) -> Figure:
    """A ``width x height``-inch figure attached to its own non-interactive Agg canvas.

    No global matplotlib state is touched: the figure works the same under any backend a
    caller has selected, and is freed like any other object once unreferenced.
    """
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: str | os.PathLike[str], dpi: int = DEFAULT_DPI) -> Path:
    """Write ``figure`` as a PNG (or whatever format the suffix names) and return the path.

    The parent folder is created when missing.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=dpi)
    return target
