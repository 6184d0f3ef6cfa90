"""The cost of attention, stage by stage: Eq. 2 (window MSA) against Eq. 1 (global MSA).

For a stage with an ``h x w`` map of ``C`` channels and window ``M``, each block's
attention costs ``4hwC^2 + 2M^2hwC`` with windows (Eq. 2) and ``4hwC^2 + 2(hw)^2C`` with
global self-attention (Eq. 1). The first term (the qkv and output projections) is the same;
the second is linear in ``hw`` with windows and quadratic without. The table here computes
both from the stage sizes (using the model's own :func:`~swinkit.model.ops.window_layout`
for the window and padding a block really uses) and adds the rest of the model (MLP, patch
merging, norms, embedding, head) from :func:`~swinkit.model.flops.count_flops`, so its
W-MSA total is the model's FLOP count.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from collections.abc import Sequence

import torch
from matplotlib.figure import Figure

from swinkit.checkpoints import create_model, read_checkpoint
from swinkit.model import SwinConfig, SwinTransformer, get_config, list_models
from swinkit.model import ops
from swinkit.model.flops import attention_flops, count_flops
from swinkit.viz.figure import new_figure

#: Image sides of the cost plot unless others are given.
DEFAULT_SIZES = (224, 320, 384, 448, 512, 640, 768, 896, 1024)
#: What the functions here accept as a model: a model, a config, a variant name or a checkpoint source.
ModelSource = SwinTransformer | SwinConfig | str | os.PathLike


@dataclasses.dataclass(frozen=True)
class StageCost:
    """One row of the cost table: a stage (or the embedding, or the head) at one image size.

    ``height x width`` tokens of ``dim`` channels, attended in ``window_h x window_w``
    windows by ``blocks`` blocks. Summed over the blocks: ``projections`` is Eq. 1/2's
    ``4hwC^2``, ``window_attention`` Eq. 2's ``2M^2hwC`` (on the map padded to whole
    windows, as the model pads it), ``global_attention`` Eq. 1's ``2(hw)^2C``. ``other`` is
    everything else the model computes there (MLP, patch merging, LayerNorms, embedding,
    head, and Swin V2's position bias MLP), taken from :func:`~swinkit.model.flops.count_flops`.
    """

    name: str
    height: int
    width: int
    dim: int
    window_h: int
    window_w: int
    blocks: int
    projections: int
    window_attention: int
    global_attention: int
    other: int

    @property
    def window_msa(self) -> int:
        """Eq. 2 summed over the stage's blocks: ``4hwC^2 + 2M^2hwC`` per block."""
        return self.projections + self.window_attention

    @property
    def global_msa(self) -> int:
        """Eq. 1 summed over the stage's blocks: ``4hwC^2 + 2(hw)^2C`` per block."""
        return self.projections + self.global_attention

    @property
    def total(self) -> int:
        """All FLOPs of this part of the model as it is (with W-MSA)."""
        return self.window_msa + self.other

    @property
    def global_total(self) -> int:
        """All FLOPs of this part if every block used global MSA instead."""
        return self.global_msa + self.other


@dataclasses.dataclass(frozen=True)
class FlopsTable:
    """The cost table of one model at one image size: ``rows`` are the embedding, each stage and the head."""

    img_size: tuple[int, int]
    rows: tuple[StageCost, ...]

    @property
    def total(self) -> int:
        """FLOPs of one forward pass; equals ``count_flops(model, img_size).total``."""
        return sum(row.total for row in self.rows)

    @property
    def global_total(self) -> int:
        """FLOPs of the same model with global MSA (Eq. 1) in every block."""
        return sum(row.global_total for row in self.rows)

    @property
    def window_attention(self) -> int:
        """Eq. 2's attention term ``2M^2hwC`` summed over all blocks."""
        return sum(row.window_attention for row in self.rows)

    @property
    def global_attention(self) -> int:
        """Eq. 1's attention term ``2(hw)^2C`` summed over all blocks."""
        return sum(row.global_attention for row in self.rows)


def _is_variant(name: str) -> bool:
    """A registered name, or a bare word naming no file (get_config then suggests close names)."""
    return name in list_models(include_aliases=True) or not (os.path.exists(name) or "/" in name)


def resolve_config(model: ModelSource) -> SwinConfig:
    """The config of a model, a config, a registered variant name, or any checkpoint swinkit reads.

    A string is a variant name when it is registered (or names no file and has no ``/``, in
    which case the error lists close names), else a checkpoint source (a path or a Hub id).
    """
    if isinstance(model, SwinTransformer):
        return model.config
    if isinstance(model, SwinConfig):
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise ValueError(
            f"model must be a SwinTransformer, a SwinConfig, a variant name or a checkpoint path, "
            f"got {type(model).__name__}"
        )
    name = os.fspath(model)
    return get_config(name) if _is_variant(name) else read_checkpoint(name).config()


def _size(img_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(img_size, int) and not isinstance(img_size, bool):
        pair = (img_size, img_size)
    elif isinstance(img_size, Sequence) and len(img_size) == 2 and all(isinstance(v, int) for v in img_size):
        pair = (int(img_size[0]), int(img_size[1]))
    else:
        raise ValueError(f"img_size must be an int or (height, width) of ints, got {img_size!r}")
    if min(pair) < 1:
        raise ValueError(f"img_size must be positive, got {pair}")
    return pair


def _outside_stages(name: str, height: int, width: int, dim: int, terms: dict[str, int]) -> StageCost:
    """A row without attention (the embedding or the head): all its FLOPs are ``other``."""
    return StageCost(name, height, width, dim, 0, 0, 0, 0, 0, 0, other=sum(terms.values()))


def flops_table(model: ModelSource, img_size: int | Sequence[int] | None = None) -> FlopsTable:
    """The per-stage terms of Eq. 2 (W-MSA) and Eq. 1 (global MSA) of ``model`` on one image.

    ``model``: a model, a config, a variant name (``"swin_t"``) or a checkpoint;
    ``img_size``: an int or ``(height, width)``, default the config's. The window and
    padding of each stage are those :func:`~swinkit.model.ops.window_layout` gives the
    model's blocks (by default a stage whose map is no larger than the window attends it as
    one window; torchvision's rule, ``SwinConfig.small_maps == "pad"``, pads it to the
    window). The table's ``total`` equals :func:`~swinkit.model.flops.count_flops`'s.
    """
    config = resolve_config(model)
    size = _size(img_size) if img_size is not None else config.img_size
    count = count_flops(config, size)
    sized = config.replace(img_size=size)
    rows = [_outside_stages("embedding", *sized.stage_resolutions[0], config.embed_dim, count.by_stage["embedding"])]
    stages = zip(sized.stage_resolutions, sized.stage_dims, config.depths)
    for index, ((height, width), dim, depth) in enumerate(stages):
        window_h, window_w, _, _ = ops.window_layout(height, width, config.window_size, 0, config.small_maps)
        terms = count.by_stage[f"stage{index + 1}"]
        rows.append(
            StageCost(
                name=f"stage{index + 1}",
                height=height,
                width=width,
                dim=dim,
                window_h=window_h,
                window_w=window_w,
                blocks=depth,
                projections=depth * 4 * height * width * dim**2,
                window_attention=depth * attention_flops(height, width, dim, config.window_size, config.small_maps),
                global_attention=depth * attention_flops(height, width, dim, None),
                other=sum(value for term, value in terms.items() if term not in ("projections", "attention")),
            )
        )
    rows.append(_outside_stages("head", *sized.stage_resolutions[-1], sized.num_features, count.by_stage["head"]))
    return FlopsTable(size, tuple(rows))


#: Columns of :func:`format_flops_table`: heading, the equation it comes from, width.
_COLUMNS = (
    ("part", "", 10),
    ("tokens", "h x w", 9),
    ("C", "", 5),
    ("M", "", 5),
    ("blocks", "", 6),
    ("4hwC^2", "Eq.1,2", 9),
    ("2M^2hwC", "Eq.2", 9),
    ("W-MSA", "Eq.2", 9),
    ("2(hw)^2C", "Eq.1", 10),
    ("MSA", "Eq.1", 10),
    ("other", "", 8),
    ("total", "", 8),
    ("w/ MSA", "", 8),
)


def _line(cells: Sequence[str]) -> str:
    return " ".join(
        f"{cell:<{width}}" if index == 0 else f"{cell:>{width}}"
        for index, (cell, (_, _, width)) in enumerate(zip(cells, _COLUMNS))
    ).rstrip()


def _giga(value: int) -> str:
    return f"{value / 1e9:.3f}"


def format_flops_table(table: FlopsTable) -> str:
    """The table as text: one line per part in GFLOPs (per stage, summed over its blocks), then the totals in FLOPs.

    Columns: the projections ``4hwC^2`` shared by Eq. 1 and 2, Eq. 2's window attention
    ``2M^2hwC`` and their sum (W-MSA), Eq. 1's global attention ``2(hw)^2C`` and its sum
    (MSA), the rest of the model (``other``: MLP, merging, norms, embedding, head), and
    the part's total with W-MSA (the model) and with global MSA.
    """
    lines = [_line([title for title, _, _ in _COLUMNS]), _line([source for _, source, _ in _COLUMNS])]
    lines.append("-" * len(lines[0]))
    for row in table.rows:
        attended = row.blocks > 0
        window = str(row.window_h) if row.window_h == row.window_w else f"{row.window_h}x{row.window_w}"
        terms = (row.projections, row.window_attention, row.window_msa, row.global_attention, row.global_msa)
        lines.append(
            _line(
                [
                    row.name,
                    f"{row.height}x{row.width}",
                    str(row.dim),
                    window if attended else "",
                    str(row.blocks) if attended else "",
                ]
                + [_giga(term) if attended else "" for term in terms]
                + [_giga(row.other), _giga(row.total), _giga(row.global_total)]
            )
        )
    lines.append("-" * len(lines[0]))
    projections = sum(row.projections for row in table.rows)
    other = sum(row.other for row in table.rows)
    totals = (
        projections,
        table.window_attention,
        projections + table.window_attention,
        table.global_attention,
        projections + table.global_attention,
        other,
        table.total,
        table.global_total,
    )
    lines.append(_line(["total", "", "", "", ""] + [_giga(value) for value in totals]))
    lines += [
        "",
        f"GFLOPs of one {table.img_size[0]}x{table.img_size[1]} image (one multiply-add counted as one).",
        f"with W-MSA, as the model runs:   {table.total:,} FLOPs (= count_flops)",
        f"with global MSA in every block: {table.global_total:,} FLOPs ({table.global_total / table.total:.2f}x; "
        f"the attention term alone {table.global_attention / max(table.window_attention, 1):.1f}x)",
    ]
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class CostCurve:
    """FLOPs of one model over square image sizes, with W-MSA (the model) and with global MSA.

    ``window_total``/``global_total``: whole-model FLOPs per size; ``window_attention`` /
    ``global_attention``: the attention terms alone (Eq. 2's ``2M^2hwC`` and Eq. 1's
    ``2(hw)^2C``, summed over blocks). ``seconds``: measured forward time per size, when
    measured (:func:`measure_forward_seconds`), on the device ``timed_on`` describes.
    """

    sizes: tuple[int, ...]
    window_total: tuple[int, ...]
    global_total: tuple[int, ...]
    window_attention: tuple[int, ...]
    global_attention: tuple[int, ...]
    seconds: tuple[float, ...] | None = None
    timed_on: str = ""


def cost_curve(
    model: ModelSource,
    sizes: Sequence[int] = DEFAULT_SIZES,
    seconds: Sequence[float] | None = None,
    timed_on: str = "",
) -> CostCurve:
    """Eq. 1 against Eq. 2 for whole models over square image ``sizes`` (sides in pixels).

    ``seconds`` attaches measured times, one per size, taken on ``timed_on`` (see
    :func:`describe_device`). Raises ValueError for no sizes, a
    size that is not a positive int, or a count of times that does not match.
    """
    if not sizes:
        raise ValueError("sizes is empty; give at least one image side in pixels")
    tables = [flops_table(model, size) for size in sizes]
    if seconds is not None and len(seconds) != len(sizes):
        raise ValueError(f"seconds needs one time per size: {len(sizes)} sizes but {len(seconds)} times")
    return CostCurve(
        sizes=tuple(int(s) for s in sizes),
        window_total=tuple(t.total for t in tables),
        global_total=tuple(t.global_total for t in tables),
        window_attention=tuple(t.window_attention for t in tables),
        global_attention=tuple(t.global_attention for t in tables),
        seconds=tuple(float(s) for s in seconds) if seconds is not None else None,
        timed_on=timed_on,
    )


def resolve_model(model: ModelSource) -> SwinTransformer:
    """A model to time: itself, a fresh variant of a name or config (random weights), or a loaded checkpoint."""
    if isinstance(model, SwinTransformer):
        return model
    if isinstance(model, SwinConfig):
        return SwinTransformer(model)
    name = os.fspath(model)
    return create_model(name) if _is_variant(name) else create_model(pretrained=name)


def measure_forward_seconds(
    model: SwinTransformer, sizes: Sequence[int], repeats: int = 3, device: str | None = None
) -> list[float]:
    """Measured time of one forward pass of one square image per size (median of ``repeats``).

    Random pixels, eval mode, :func:`torch.inference_mode`; one untimed warm-up pass per
    size. The model's training mode is restored afterwards. On a GPU each timing waits for
    the device to finish.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    target = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.to(target).eval()
    times = []
    try:
        with torch.inference_mode():
            for size in sizes:
                pixels = torch.randn(1, model.config.in_chans, int(size), int(size), device=target)
                model(pixels)
                runs = []
                for _ in range(repeats):
                    if target.type == "cuda":
                        torch.cuda.synchronize(target)
                    start = time.perf_counter()
                    model(pixels)
                    if target.type == "cuda":
                        torch.cuda.synchronize(target)
                    runs.append(time.perf_counter() - start)
                times.append(statistics.median(runs))
    finally:
        model.train(was_training)
    return times


def describe_device(device: str | None = None) -> str:
    """A short description of where :func:`measure_forward_seconds` runs: the GPU's name, or CPU threads."""
    target = torch.device(device or "cpu")
    if target.type == "cuda":
        return torch.cuda.get_device_name(target)
    return f"CPU, {torch.get_num_threads()} threads"


def draw_flops(curve: CostCurve, title: str = "") -> Figure:
    """Plot Eq. 2 (W-MSA, the model) against Eq. 1 (global MSA) over image size, log scale.

    Solid lines: whole-model GFLOPs; dashed: the attention term alone (``2M^2hwC``, linear
    in the number of tokens, against ``2(hw)^2C``, quadratic). With measured times a
    second panel shows the forward time of the model against image size.
    """
    measured = curve.seconds is not None
    figure = new_figure(10.5 if measured else 6.2, 4.2)
    axes = figure.add_subplot(1, 2 if measured else 1, 1)
    sizes = curve.sizes
    lines = (
        (curve.window_total, "o-", "tab:blue", "model, W-MSA (Eq. 2)"),
        (curve.global_total, "o-", "tab:red", "model with global MSA (Eq. 1)"),
        (curve.window_attention, "--", "tab:blue", "attention term 2M²hwC"),
        (curve.global_attention, "--", "tab:red", "attention term 2(hw)²C"),
    )
    for values, style, color, label in lines:
        axes.plot(sizes, [v / 1e9 for v in values], style, color=color, label=label)
    axes.set_yscale("log")
    axes.set_ylim(top=max(curve.global_total) / 1e9 * 30)
    axes.set_xlabel("image side (pixels)")
    axes.set_ylabel("GFLOPs per image")
    axes.set_title("FLOPs: window vs global self-attention", fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    if measured:
        timing = figure.add_subplot(1, 2, 2)
        timing.plot(sizes, curve.seconds, "o-", color="tab:green", label="measured forward time")
        timing.set_xlabel("image side (pixels)")
        timing.set_ylabel("seconds per image")
        where = f" ({curve.timed_on})" if curve.timed_on else ""
        timing.set_title(f"swinkit forward pass, measured{where}", fontsize=10)
        timing.set_ylim(bottom=0)
        timing.grid(True, alpha=0.3)
        flops_axes = timing.twinx()
        flops_axes.plot(sizes, [v / 1e9 for v in curve.window_total], ":", color="tab:blue", label="W-MSA GFLOPs")
        flops_axes.set_ylabel("GFLOPs (W-MSA)", color="tab:blue")
        flops_axes.set_ylim(bottom=0)
        handles = timing.get_legend_handles_labels()[0] + flops_axes.get_legend_handles_labels()[0]
        timing.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="upper left")
    if title:
        figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    return figure
