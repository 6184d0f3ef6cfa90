"""Pictures of what the model does, computed from its own code and tensors.

- :mod:`swinkit.viz.windows`: the regular and shifted window partitions, the cyclic shift
  with its sub-windows and the SW-MSA masks (Sec. 3.2, Fig. 2 and 4).
- :mod:`swinkit.viz.attention`: where a query position attends in each block of a model,
  mean over heads and per head (Eq. 4).
- :mod:`swinkit.viz.flops`: the cost of window attention (Eq. 2) against global attention
  (Eq. 1), per stage and over image sizes, optionally with measured times.

Figures are :class:`matplotlib.figure.Figure` objects on their own Agg canvas (no pyplot,
no change to the selected backend); :func:`save_figure` writes them.
"""

from swinkit.viz.attention import (
    BlockAttention,
    attention_maps,
    denormalize,
    draw_attention,
    load_model,
    preprocess_image,
    select_blocks,
)
from swinkit.viz.figure import new_figure, save_figure
from swinkit.viz.flops import (
    CostCurve,
    FlopsTable,
    StageCost,
    cost_curve,
    describe_device,
    draw_flops,
    flops_table,
    format_flops_table,
    measure_forward_seconds,
)
from swinkit.viz.windows import WindowFigureData, draw_windows, window_figure_data

__all__ = [
    "BlockAttention",
    "CostCurve",
    "FlopsTable",
    "StageCost",
    "WindowFigureData",
    "attention_maps",
    "cost_curve",
    "describe_device",
    "denormalize",
    "draw_attention",
    "draw_flops",
    "draw_windows",
    "flops_table",
    "format_flops_table",
    "load_model",
    "measure_forward_seconds",
    "new_figure",
    "preprocess_image",
    "save_figure",
    "select_blocks",
    "window_figure_data",
]
