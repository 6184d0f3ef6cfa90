"""The window pictures of Sec. 3.2 (Fig. 2 and Fig. 4), computed with the model's own code.

Every array here comes from the functions a :class:`~swinkit.model.layers.SwinBlock` calls:
:func:`~swinkit.model.ops.window_layout` decides the window and shift,
:func:`~swinkit.model.ops.window_partition` cuts maps of token indices,
:func:`~swinkit.model.ops.cyclic_shift` rolls them, and
:func:`~swinkit.model.ops.shifted_window_regions` and
:func:`~swinkit.model.ops.shift_window_mask` give the sub-window labels and the SW-MSA mask.
Nothing is re-derived from the paper's description, so the pictures show what the model does.
"""

from __future__ import annotations

import dataclasses
import string

import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from swinkit.model import ops
from swinkit.viz.figure import new_figure

#: One colour per sub-window label of the cyclically shifted map (labels 0..8).
REGION_COLORS = (
    "#fbb4ae",
    "#b3cde3",
    "#ccebc5",
    "#decbe4",
    "#fed9a6",
    "#ffffcc",
    "#e5d8bd",
    "#fddaec",
    "#c7c7c7",
)
#: Four colours for the regular windows, alternated like a checkerboard so that neighbours differ.
WINDOW_COLORS = ("#a6cee3", "#b2df8a", "#fdbf6f", "#cab2d6")
#: Cells drawn with text in them at most (beyond, the map is drawn without per-token labels).
MAX_LABELLED_CELLS = 400
#: Distinct window masks drawn at most.
MAX_MASKS = 16


@dataclasses.dataclass(frozen=True)
class WindowFigureData:
    """The regular and shifted window partitions of one token map, as the model computes them.

    Maps are over the padded map (``padded_height x padded_width``, the model pads the
    bottom and right to whole windows; ``padding`` marks the added tokens). Token indices
    are flat row-major indices into the padded, unshifted map.

    - ``regular_windows`` ``(Hp, Wp)``: the W-MSA window of each token (Fig. 2, left), in
      the order :func:`~swinkit.model.ops.window_partition` yields windows.
    - ``naive_windows`` ``(Hp, Wp)``: the window of each token when the partition is
      displaced by ``shift`` without the cyclic shift (Fig. 2, right; ``num_naive_windows``
      of them, some smaller than ``M x M``), numbered row-major by their first token.
    - ``shifted_source`` ``(Hp, Wp, 2)``: after the cyclic shift (Fig. 4), the original
      ``(row, col)`` of the token at each position.
    - ``regions`` ``(Hp, Wp)``: the sub-window label of each position of the shifted map.
    - ``window_tokens`` and ``window_regions`` ``(nW, M*M)``: for each window of the shifted
      map, the tokens it holds and their labels, in the order attention sees them.
    - ``masks`` ``(nW, M*M, M*M)``: the additive mask of each window, 0 inside a sub-window
      and :data:`~swinkit.model.ops.MASK_VALUE` across sub-windows.
    """

    height: int
    width: int
    window: int
    shift: int
    padded_height: int
    padded_width: int
    padding: np.ndarray
    regular_windows: np.ndarray
    naive_windows: np.ndarray
    num_naive_windows: int
    shifted_source: np.ndarray
    regions: np.ndarray
    window_tokens: np.ndarray
    window_regions: np.ndarray
    masks: np.ndarray

    @property
    def num_windows(self) -> int:
        """Windows of ``M x M`` tokens, the same before and after the cyclic shift."""
        return int(self.masks.shape[0])


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def window_figure_data(height: int = 8, width: int = 8, window: int = 4, shift: int | None = None) -> WindowFigureData:
    """Compute the partitions, cyclic shift, sub-window labels and masks of Sec. 3.2 for one map.

    ``height x width`` tokens, window side ``window`` (M) and ``shift`` (default ``M // 2``,
    the paper's ``floor(M/2)``). The defaults are the slides' example: an 8x8 map with M = 4,
    whose 4 windows become 9 when the partition is displaced, and stay 4 with the cyclic
    shift. Raises ValueError when the model would not shift such a map (a side no larger
    than the window) or when ``shift`` is not in ``1..M-1``.
    """
    height, width = _positive_int("height", height), _positive_int("width", width)
    window = _positive_int("window", window)
    shift = window // 2 if shift is None else shift
    if isinstance(shift, bool) or not isinstance(shift, (int, np.integer)) or not 0 < shift < window:
        raise ValueError(f"shift must be an integer from 1 to window - 1 = {window - 1}, got {shift!r}")
    _, _, effective_shift, _ = ops.window_layout(height, width, window, int(shift))
    if effective_shift == 0:
        raise ValueError(
            f"a {height}x{width} map with window {window} is attended as one window without a shift (its "
            f"shorter side is no larger than the window); choose a map whose sides both exceed the window"
        )
    padded_h, padded_w = -(-height // window) * window, -(-width // window) * window
    tokens = padded_h * padded_w
    n = window * window

    index_map = torch.arange(tokens).view(1, padded_h, padded_w, 1)
    regular = ops.window_partition(index_map, window, window).view(-1, n)
    regular_windows = np.empty(tokens, dtype=np.int64)
    regular_windows[regular.numpy()] = np.arange(regular.shape[0])[:, None]

    shifted_map = ops.cyclic_shift(index_map, effective_shift)
    window_tokens = ops.window_partition(shifted_map, window, window).view(-1, n).numpy()
    regions = ops.shifted_window_regions(padded_h, padded_w, window, effective_shift)
    window_regions = ops.window_partition(regions.view(1, padded_h, padded_w, 1), window, window).view(-1, n).numpy()
    masks = ops.shift_window_mask(padded_h, padded_w, window, effective_shift).numpy().copy()

    # A window of the naive displaced partition is what one sub-window of the shifted map
    # holds: the tokens sharing a shifted window and a region label.
    piece = np.empty(tokens, dtype=np.int64)
    piece[window_tokens.reshape(-1)] = (
        np.arange(window_tokens.shape[0])[:, None] * (int(window_regions.max()) + 1) + window_regions
    ).reshape(-1)
    _, first, inverse = np.unique(piece, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    naive_windows = rank[inverse]

    source = shifted_map.view(padded_h, padded_w).numpy()
    padding = np.zeros((padded_h, padded_w), dtype=bool)
    padding[height:, :] = True
    padding[:, width:] = True
    return WindowFigureData(
        height=height,
        width=width,
        window=window,
        shift=effective_shift,
        padded_height=padded_h,
        padded_width=padded_w,
        padding=padding,
        regular_windows=regular_windows.reshape(padded_h, padded_w),
        naive_windows=naive_windows.reshape(padded_h, padded_w),
        num_naive_windows=len(first),
        shifted_source=np.stack(np.divmod(source, padded_w), axis=-1),
        regions=regions.numpy(),
        window_tokens=window_tokens,
        window_regions=window_regions,
        masks=masks,
    )


def _window_label(index: int, count: int) -> str:
    """Letters for the naive windows when they fit in the alphabet, numbers otherwise."""
    return string.ascii_uppercase[index] if count <= len(string.ascii_uppercase) else str(index)


def _draw_borders(axes, labels: np.ndarray, linewidth: float = 2.2) -> None:
    """Thick lines between cells whose labels differ (the window borders)."""
    rows, cols = labels.shape
    for r in range(rows):
        for c in range(cols):
            if c + 1 < cols and labels[r, c] != labels[r, c + 1]:
                axes.plot([c + 0.5, c + 0.5], [r - 0.5, r + 0.5], color="black", linewidth=linewidth)
            if r + 1 < rows and labels[r, c] != labels[r + 1, c]:
                axes.plot([c - 0.5, c + 0.5], [r + 0.5, r + 0.5], color="black", linewidth=linewidth)
    axes.add_patch(Rectangle((-0.5, -0.5), cols, rows, fill=False, edgecolor="black", linewidth=linewidth))


def _token_grid(axes, colors: np.ndarray, data: WindowFigureData, title: str) -> None:
    """Draw a map of per-token colour indices with thin token lines and hatched padding."""
    rows, cols = colors.shape[:2]
    axes.imshow(colors, interpolation="nearest")
    axes.set_xticks(np.arange(-0.5, cols, 1), minor=True)
    axes.set_yticks(np.arange(-0.5, rows, 1), minor=True)
    if rows * cols <= MAX_LABELLED_CELLS:
        axes.grid(which="minor", color="white", linewidth=0.6)
    axes.tick_params(which="both", length=0, labelsize=7)
    step = max(1, cols // 8)
    axes.set_xticks(range(0, cols, step))
    axes.set_yticks(range(0, rows, max(1, rows // 8)))
    axes.set_title(title, fontsize=9)
    for r, c in zip(*np.nonzero(data.padding)):
        axes.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, hatch="///", edgecolor="#777777", linewidth=0))


def _rgb(palette: tuple[str, ...], indices: np.ndarray) -> np.ndarray:
    colormap = ListedColormap(palette)
    return colormap(indices % len(palette))[..., :3]


def _mask_groups(data: WindowFigureData) -> list[list[int]]:
    """One group per window when they are few, else windows grouped by identical mask (first-window order)."""
    if data.num_windows <= MAX_MASKS:
        return [[index] for index in range(data.num_windows)]
    groups: dict[bytes, list[int]] = {}
    for index in range(data.num_windows):
        groups.setdefault(data.masks[index].tobytes(), []).append(index)
    return list(groups.values())[:MAX_MASKS]


def _windows_title(windows: list[int]) -> str:
    if len(windows) == 1:
        return f"window {windows[0]}"
    shown = ", ".join(str(w) for w in windows[:4])
    return f"{len(windows)} windows: {shown}{', ...' if len(windows) > 4 else ''}"


def draw_windows(data: WindowFigureData) -> Figure:
    """Draw the four pictures of Sec. 3.2 for ``data`` (from :func:`window_figure_data`).

    Top row: (a) the regular W-MSA partition (Fig. 2, left); (b) the partition displaced by
    ``(shift, shift)`` without the cyclic shift, with its larger number of windows (Fig. 2,
    right), each lettered and coloured by the sub-window label its tokens get; (c) the map
    after the cyclic shift toward the top-left (Fig. 4), every token lettered with the
    naive window it came from and coloured by its region label. Bottom row: the additive
    mask of each window, an ``(M*M) x (M*M)`` matrix (white 0, dark ``-100``) with the
    region colour of each query (left strip) and key (top strip). Windows with identical
    masks are drawn once when there are more than :data:`MAX_MASKS` windows.
    """
    groups = _mask_groups(data)
    mask_columns = min(len(groups), 8)
    mask_rows = -(-len(groups) // mask_columns)
    columns = max(3, mask_columns)
    map_side = 3.4
    figure = new_figure(max(3 * map_side + 0.6, 1.55 * columns + 0.4), map_side + 0.9 + 2.3 * mask_rows)
    grid = figure.add_gridspec(1 + mask_rows, 1, height_ratios=[map_side + 0.6] + [2.3] * mask_rows, hspace=0.35)
    top = grid[0].subgridspec(1, 3, wspace=0.25)
    labelled = data.padded_height * data.padded_width <= MAX_LABELLED_CELLS
    m, s = data.window, data.shift

    rows, cols = data.regular_windows.shape
    window_rows, window_cols = np.divmod(np.arange(rows * cols).reshape(rows, cols), cols)
    checker = (window_rows // m) % 2 * 2 + (window_cols // m) % 2
    regular = figure.add_subplot(top[0])
    _token_grid(regular, _rgb(WINDOW_COLORS, checker), data, f"(a) W-MSA: {data.num_windows} windows of {m}x{m}")
    _draw_borders(regular, data.regular_windows)
    for index in range(data.num_windows):
        r, c = np.argwhere(data.regular_windows == index).mean(axis=0)
        regular.text(c, r, str(index), ha="center", va="center", fontsize=11 if labelled else 7, weight="bold")

    region_of_token = np.empty(rows * cols, dtype=np.int64)
    region_of_token[data.window_tokens.reshape(-1)] = data.window_regions.reshape(-1)
    region_of_token = region_of_token.reshape(rows, cols)
    naive = figure.add_subplot(top[1])
    _token_grid(
        naive,
        _rgb(REGION_COLORS, region_of_token),
        data,
        f"(b) displaced by ({s}, {s}): {data.num_naive_windows} windows",
    )
    _draw_borders(naive, data.naive_windows)
    for index in range(data.num_naive_windows):
        r, c = np.argwhere(data.naive_windows == index).mean(axis=0)
        naive.text(
            c,
            r,
            _window_label(index, data.num_naive_windows),
            ha="center",
            va="center",
            fontsize=11 if labelled else 6,
            weight="bold",
        )

    shifted = figure.add_subplot(top[2])
    _token_grid(
        shifted,
        _rgb(REGION_COLORS, data.regions),
        dataclasses.replace(data, padding=data.padding[data.shifted_source[..., 0], data.shifted_source[..., 1]]),
        f"(c) cyclic shift by {s}: {data.num_windows} windows, masked",
    )
    _draw_borders(shifted, data.regular_windows)
    if labelled:
        for r in range(rows):
            for c in range(cols):
                source_r, source_c = data.shifted_source[r, c]
                letter = _window_label(int(data.naive_windows[source_r, source_c]), data.num_naive_windows)
                shifted.text(c, r, letter, ha="center", va="center", fontsize=7)
    used = sorted(set(data.regions.reshape(-1).tolist()))
    shifted.legend(
        handles=[Patch(facecolor=REGION_COLORS[label], edgecolor="grey", label=str(label)) for label in used],
        title="region",
        fontsize=7,
        title_fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
    )

    n = m * m
    masks = grid[1:].subgridspec(mask_rows, columns, wspace=0.35, hspace=0.5)
    region_rgb = _rgb(REGION_COLORS, data.window_regions)
    for position, windows in enumerate(groups):
        axes = figure.add_subplot(masks[position // columns, position % columns])
        index = windows[0]
        axes.imshow(
            data.masks[index],
            cmap="Greys_r",
            vmin=ops.MASK_VALUE * 1.4,
            vmax=0,
            extent=(0, n, n, 0),
            interpolation="nearest",
        )
        strip = max(1.0, n / 12)
        axes.imshow(region_rgb[index][None], extent=(0, n, -0.2, -0.2 - strip), interpolation="nearest")
        axes.imshow(region_rgb[index][:, None], extent=(-0.2 - strip, -0.2, n, 0), interpolation="nearest")
        axes.add_patch(Rectangle((0, 0), n, n, fill=False, edgecolor="black", linewidth=0.8))
        axes.set_xlim(-0.2 - strip, n + 0.4)
        axes.set_ylim(n + 0.4, -0.2 - strip)
        axes.set_xticks([])
        axes.set_yticks([])
        for spine in axes.spines.values():
            spine.set_visible(False)
        axes.set_title(f"mask, {_windows_title(windows)}", fontsize=8)
    figure.text(
        0.5,
        (2.3 * mask_rows + 0.2) / (map_side + 0.9 + 2.3 * mask_rows),
        f"additive masks ({n}x{n}: query rows, key columns; white 0, dark {ops.MASK_VALUE:g}; "
        "strips: region of each token)",
        ha="center",
        fontsize=8,
    )
    figure.suptitle(
        f"Swin windows on a {data.height}x{data.width} token map, M = {m}, shift {s}"
        + (f" (padded to {data.padded_height}x{data.padded_width}, hatched)" if data.padding.any() else ""),
        fontsize=11,
    )
    figure.subplots_adjust(left=0.04, right=0.93, top=0.9, bottom=0.03)
    return figure
