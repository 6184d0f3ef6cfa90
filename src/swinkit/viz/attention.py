"""Attention maps: where one query position looks, block by block, in a real model.

The weights are the model's own: a forward pre-hook records each chosen
:class:`~swinkit.model.layers.SwinBlock`'s input, and the block's
:meth:`~swinkit.model.layers.SwinBlock.attention_probabilities` gives the rows of
``SoftMax(QK^T/sqrt(d) + B + mask)`` (Eq. 4) per window. The query's row is put back on the
token grid with the model's own :func:`~swinkit.model.ops.window_reverse` and reverse
:func:`~swinkit.model.ops.cyclic_shift`, so a shifted block's map lies across the regular
window borders exactly where SW-MSA lets information cross them.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib import colormaps, patheffects
from matplotlib.figure import Figure
from PIL import Image

from swinkit.checkpoints import create_model
from swinkit.data import build_transforms
from swinkit.data.images import BadImage, DataError, try_decode
from swinkit.model import SwinTransformer
from swinkit.model import ops
from swinkit.model.layers import WindowLayout
from swinkit.preprocessing import Preprocessing
from swinkit.viz.figure import new_figure

#: Weights below this fraction of a map's maximum are drawn clear (masked pairs get about e^-100).
VISIBLE = 1e-6
#: Heads drawn per block unless asked otherwise (Swin-T's last stage has 24).
DEFAULT_MAX_HEADS = 6


@dataclasses.dataclass(frozen=True)
class BlockAttention:
    """Where the query token attends in one block: its weights over the stage's token grid.

    ``heads`` ``(heads, H, W)``: for each head, the attention weight from the query token
    (``query``, in this stage's token coordinates; ``pixel``, the position asked for in
    input pixels) to every token of the unpadded,
    unshifted ``H x W`` map; zero outside the query's window (and, in a shifted block,
    numerically zero outside its sub-window). ``padding_mass`` ``(heads,)``: the weight on
    padding tokens, which the model adds to fill the last windows (0 when the map is a
    multiple of the window); each head's map plus its padding mass sums to 1. ``stride``:
    input pixels per token side at this stage. ``window``: the query's window among the
    block's windows (row-major over the padded, shifted map). ``block_shift``: the shift the
    block is built with (``M // 2`` for odd blocks); ``layout.shift`` is the one it applied,
    0 when the map is no larger than the window (``layout.shift_h`` and ``layout.shift_w``
    per side, which differ under torchvision's rule, ``SwinConfig.small_maps == "pad"``).
    """

    stage: int
    block: int
    block_shift: int
    layout: WindowLayout
    stride: int
    pixel: tuple[int, int]
    query: tuple[int, int]
    window: int
    heads: np.ndarray
    padding_mass: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        """The map averaged over heads, ``(H, W)``."""
        return self.heads.mean(axis=0)

    @property
    def num_heads(self) -> int:
        return int(self.heads.shape[0])

    @property
    def shifted(self) -> bool:
        """Whether this block ran SW-MSA (a shifted partition) on this map."""
        return self.layout.shift > 0


def select_blocks(model: SwinTransformer, stage: int | None = None, block: int | None = None) -> list[tuple[int, int]]:
    """The ``(stage, block)`` pairs to draw: by default blocks 0 and 1 of every stage.

    Indices count from 0 (``stage`` 0 is the paper's stage 1), as in ``model.stages``.
    Block 0 of a stage uses the regular partition (W-MSA) and block 1 the shifted one
    (SW-MSA), so the default shows both kinds. ``stage`` keeps one stage, ``block`` one
    block index in each kept stage. Raises ValueError for an index the model does not have.
    """
    depths = model.config.depths
    if stage is not None and not 0 <= stage < len(depths):
        raise ValueError(
            f"stage index {stage} does not exist; this model has stage indices 0..{len(depths) - 1} "
            f"(stages 1..{len(depths)} in the paper's numbering)"
        )
    stages = [stage] if stage is not None else list(range(len(depths)))
    pairs = []
    for index in stages:
        if block is not None:
            if not 0 <= block < depths[index]:
                raise ValueError(
                    f"block {block} does not exist in stage {index}, which has blocks 0..{depths[index] - 1}"
                )
            pairs.append((index, block))
        else:
            pairs += [(index, b) for b in range(min(2, depths[index]))]
    return pairs


def _capture(
    store: dict[tuple[int, int], torch.Tensor], key: tuple[int, int], module: torch.nn.Module, args: tuple
) -> None:
    """Forward pre-hook: keep the block's input ``(B, H, W, C)``."""
    store[key] = args[0].detach()


def _query_row(probs: torch.Tensor, layout: WindowLayout, query: tuple[int, int]) -> tuple[int, torch.Tensor]:
    """The query token's window, and its rows ``(heads, padded_h, padded_w)`` placed on the unshifted grid.

    The window holding the query is found by partitioning a map of token indices exactly as
    the block partitions its input; the row goes back with the block's reverse steps.
    """
    _, num_windows, heads, n, _ = probs.shape
    tokens = torch.arange(layout.padded_h * layout.padded_w).view(1, layout.padded_h, layout.padded_w, 1)
    holders = ops.window_partition(ops.cyclic_shift(tokens, layout.shifts), layout.window_h, layout.window_w)
    flat = query[0] * layout.padded_w + query[1]
    window, position = (holders.view(num_windows, n) == flat).nonzero()[0].tolist()
    windows = torch.zeros(num_windows, n, heads, dtype=probs.dtype)
    windows[window] = probs[0, window, :, position, :].transpose(0, 1)
    grid = ops.window_reverse(windows, layout.window_h, layout.window_w, layout.padded_h, layout.padded_w)
    return window, ops.cyclic_shift(grid, (-layout.shift_h, -layout.shift_w))[0].permute(2, 0, 1)


def attention_maps(
    model: SwinTransformer,
    pixels: torch.Tensor,
    query: tuple[int, int] | None = None,
    blocks: Sequence[tuple[int, int]] | None = None,
) -> list[BlockAttention]:
    """The attention of one query position in each chosen block of ``model`` for one image.

    ``pixels``: the model's input, ``(C, H, W)`` or ``(1, C, H, W)`` (preprocessed, e.g.
    by :func:`preprocess_image`). ``query``: ``(row, col)`` in pixels of that input
    (default: its centre); at stage ``s`` it is the token ``(row // stride, col // stride)``
    with ``stride = patch_size * 2**s``. ``blocks``: ``(stage, block)`` pairs (default:
    every block). The model runs once in eval mode without gradients, up to the last chosen
    stage; its training mode is restored afterwards. Returns one :class:`BlockAttention`
    per chosen block, in the order given.
    """
    one_image = isinstance(pixels, torch.Tensor) and (pixels.dim() == 3 or (pixels.dim() == 4 and pixels.shape[0] == 1))
    if not one_image:
        shape = tuple(pixels.shape) if isinstance(pixels, torch.Tensor) else type(pixels).__name__
        raise ValueError(f"pixels must be one image, (C, H, W) or (1, C, H, W), got {shape}")
    batch = pixels if pixels.dim() == 4 else pixels.unsqueeze(0)
    image_h, image_w = batch.shape[2], batch.shape[3]
    row, col = (image_h // 2, image_w // 2) if query is None else (int(query[0]), int(query[1]))
    if not (0 <= row < image_h and 0 <= col < image_w):
        raise ValueError(
            f"query {(row, col)} lies outside the {image_h}x{image_w} input; "
            f"give 0 <= row < {image_h} and 0 <= col < {image_w} (pixels of the preprocessed input)"
        )
    depths = model.config.depths
    if blocks is None:
        chosen = [(s, b) for s in range(len(depths)) for b in range(depths[s])]
    else:
        chosen = [(int(s), int(b)) for s, b in blocks]
    for stage, block in chosen:
        if not (0 <= stage < len(depths) and 0 <= block < depths[stage]):
            raise ValueError(f"block {(stage, block)} does not exist; this model's stages have depths {depths}")
    if not chosen:
        raise ValueError("blocks is empty; give at least one (stage, block) pair, or None for every block")

    captured: dict[tuple[int, int], torch.Tensor] = {}
    handles = [
        model.stages[s].blocks[b].register_forward_pre_hook(functools.partial(_capture, captured, (s, b)))
        for s, b in set(chosen)
    ]
    was_training = model.training
    device = next(model.parameters()).device
    try:
        model.eval()
        with torch.no_grad():
            model.forward_intermediates(batch.to(device), indices=(max(stage for stage, _ in chosen),))
            results = []
            for stage, block in chosen:
                module = model.stages[stage].blocks[block]
                probs, layout = module.attention_probabilities(captured[(stage, block)])
                stride = model.config.patch_size * 2**stage
                token = (row // stride, col // stride)
                window, grid = _query_row(probs.float().cpu(), layout, token)
                heads = grid[:, : layout.height, : layout.width]
                padding_mass = grid.sum(dim=(1, 2)) - heads.sum(dim=(1, 2))
                results.append(
                    BlockAttention(
                        stage=stage,
                        block=block,
                        block_shift=module.shift_size,
                        layout=layout,
                        stride=stride,
                        pixel=(row, col),
                        query=token,
                        window=window,
                        heads=heads.numpy(),
                        padding_mass=padding_mass.numpy(),
                    )
                )
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return results


def load_model(source: str | os.PathLike[str], device: str | None = None) -> tuple[SwinTransformer, Preprocessing]:
    """Load any checkpoint swinkit reads (run, export, file, folder, Hub id) with its preprocessing.

    The preprocessing is the one stored with the weights, else swinkit's default for the
    model's input size and channels. The model is returned in eval mode on ``device``
    (default CPU).
    """
    model = create_model(pretrained=str(source))
    model.to(device or "cpu").eval()
    stored = getattr(model, "pretrained_cfg", None)
    if stored:
        return model, Preprocessing.from_dict(stored)
    return model, Preprocessing.default(model.config.img_size, model.config.in_chans)


def preprocess_image(image: Image.Image | str | os.PathLike[str], preprocessing: Preprocessing) -> torch.Tensor:
    """An image (PIL or a file) as the model sees it: the evaluation transform, ``(C, H, W)``.

    Resize, centre crop and normalise as :func:`swinkit.data.build_transforms` does for
    evaluation. Raises FileNotFoundError for a missing file and ValueError for one Pillow
    cannot decode.
    """
    if not isinstance(image, Image.Image):
        if not os.path.isfile(image):
            raise FileNotFoundError(f"image {os.fspath(image)!r} does not exist")
        decoded = try_decode(image, os.fspath(image))
        if isinstance(decoded, BadImage):
            raise DataError(f"cannot read the image {decoded}")
        image = decoded
    return build_transforms(False, preprocessing)(image)


def denormalize(pixels: torch.Tensor, preprocessing: Preprocessing) -> np.ndarray:
    """Undo the normalisation of ``(C, H, W)`` or ``(1, C, H, W)`` pixels: ``(H, W, C)`` in ``[0, 1]``."""
    image = pixels[0] if pixels.dim() == 4 else pixels
    mean = torch.tensor(preprocessing.mean).view(-1, 1, 1)
    std = torch.tensor(preprocessing.std).view(-1, 1, 1)
    return (image.detach().cpu().float() * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()


def upsample(tokens: np.ndarray, stride: int, height: int, width: int) -> np.ndarray:
    """A token-grid map repeated to pixels (nearest), cropped to the ``height x width`` input."""
    return np.repeat(np.repeat(tokens, stride, axis=-2), stride, axis=-1)[..., :height, :width]


def _overlay(weights: np.ndarray) -> np.ndarray:
    """RGBA colours of a map scaled to its maximum, opaque where the weight is high, clear where it is ~0."""
    scaled = weights / max(float(weights.max()), 1e-12)
    rgba = colormaps["plasma"](scaled)
    rgba[..., 3] = np.where(scaled > VISIBLE, 0.35 + 0.55 * scaled, 0.0)
    return rgba


def _borders(axes, start: int, period: int, stride: int, limit: int, vertical: bool, **style) -> None:
    for token in range(start, -(-limit // stride) + 1, period):
        position = token * stride - 0.5
        if 0 < position < limit - 0.5:
            (axes.axvline if vertical else axes.axhline)(position, **style)


def _draw_partition(axes, item: BlockAttention, height: int, width: int) -> None:
    """The block's window borders in pixels: the regular grid, and the displaced one of a shifted block."""
    layout = item.layout
    outline = [patheffects.withStroke(linewidth=2.4, foreground="black")]
    dashes = (0, (3, 3)) if item.shifted else "-"
    regular = {"color": "white", "linewidth": 1.0, "linestyle": dashes, "path_effects": outline}
    _borders(axes, layout.window_w, layout.window_w, item.stride, width, True, **regular)
    _borders(axes, layout.window_h, layout.window_h, item.stride, height, False, **regular)
    if item.shifted:
        shifted = {"color": "cyan", "linewidth": 1.3, "path_effects": outline}
        _borders(axes, layout.shift_w, layout.window_w, item.stride, width, True, **shifted)
        _borders(axes, layout.shift_h, layout.window_h, item.stride, height, False, **shifted)


def draw_attention(
    image: np.ndarray,
    maps: Sequence[BlockAttention],
    head: int | None = None,
    max_heads: int = DEFAULT_MAX_HEADS,
) -> Figure:
    """Overlay each block's attention map on the image: one row per block, mean over heads then per head.

    ``image``: the model's input as ``(H, W, C)`` in ``[0, 1]`` (:func:`denormalize`);
    ``maps``: from :func:`attention_maps` (the query, marked with a green cross, is
    theirs). Each map (the Eq. 4 weights of the query's row) is upsampled to pixels and
    shown over the greyed image, scaled to its own maximum, clear where the weight is
    (numerically) 0. White lines are the block's regular window borders (dashed in a
    shifted block), cyan lines the shifted partition's borders (the windows SW-MSA attends
    in, Fig. 2 right), which the map crosses. ``head`` draws only that head next to the
    mean; otherwise the first ``max_heads`` heads are drawn.
    """
    if not maps:
        raise ValueError("maps is empty; pass the list attention_maps returns")
    if max_heads < 0:
        raise ValueError(f"max_heads must be >= 0, got {max_heads}")
    if head is not None:
        fewest = min(item.num_heads for item in maps)
        if not 0 <= head < fewest:
            raise ValueError(
                f"head {head} does not exist in every drawn block; heads go from 0 to {fewest - 1} there "
                f"(draw only the blocks of a later stage to reach its other heads)"
            )
    if image.ndim != 3:
        raise ValueError(f"image must be an (H, W, C) array (see denormalize), got shape {image.shape}")
    height, width = image.shape[:2]
    query = maps[0].pixel
    per_row = [[head] if head is not None else list(range(min(item.num_heads, max_heads))) for item in maps]
    columns = 1 + max(len(heads) for heads in per_row)
    aspect = height / width
    panel, left, top = 2.0, 0.75, 0.95
    figure_width = max(columns * panel + left + 0.1, 6.0)
    figure_height = len(maps) * (panel * aspect + 0.45) + top
    figure = new_figure(figure_width, figure_height)
    grey = image.mean(axis=2)
    for row, (item, heads) in enumerate(zip(maps, per_row)):
        panels = [(f"mean of {item.num_heads} heads", item.mean)] + [(f"head {h}", item.heads[h]) for h in heads]
        for column, (title, tokens) in enumerate(panels):
            axes = figure.add_subplot(len(maps), columns, row * columns + column + 1)
            axes.imshow(grey, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            axes.imshow(_overlay(upsample(tokens, item.stride, height, width)), interpolation="nearest")
            _draw_partition(axes, item, height, width)
            axes.plot(query[1], query[0], marker="+", color="lime", markersize=9, markeredgewidth=2)
            axes.set_xlim(-0.5, width - 0.5)
            axes.set_ylim(height - 0.5, -0.5)
            axes.set_xticks([])
            axes.set_yticks([])
            axes.set_title(title, fontsize=8)
            if column == 0:
                kind = f"SW-MSA, shift {item.layout.shift}" if item.shifted else "W-MSA"
                if item.block_shift and not item.shifted:
                    kind += "\n(map <= window: no shift)"
                size = f"{item.layout.height}x{item.layout.width} tokens"
                axes.set_ylabel(f"stage {item.stage + 1} block {item.block}\n{size}, {kind}", fontsize=8)
    figure.suptitle(
        f"attention of the query at pixel ({query[0]}, {query[1]}) (green +)\n"
        "white: the block's windows (dashed when shifted), cyan: the shifted windows",
        fontsize=9,
        y=1 - 0.08 / figure_height,
        va="top",
    )
    figure.subplots_adjust(
        left=left / figure_width,
        right=min(1.0, (left + columns * panel) / figure_width),
        top=1 - top / figure_height,
        bottom=0.01,
        wspace=0.05,
        hspace=0.3,
    )
    return figure
