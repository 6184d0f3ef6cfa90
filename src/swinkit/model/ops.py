"""The functional core of Swin: pure functions of tensors, one per idea of the paper.

Every function here is stateless. Modules in :mod:`swinkit.model.layers` hold the
parameters and call these. Shapes use ``B`` batch, ``H, W`` token-map height and width,
``C`` channels, ``M`` window side, ``nW`` windows per image, ``N = M*M`` tokens per window.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import weakref

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

#: Value the reference code adds to attention logits between tokens of different
#: sub-windows (it is -100, not -inf, so a fully masked row cannot produce NaN).
MASK_VALUE = -100.0

#: The fused attention kernels ``scaled_dot_product_attention`` may pick on CUDA for Swin's
#: additive bias and mask: all but cuDNN's. PyTorch's tracker reports silent wrong results of
#: the cuDNN kernel with an attention mask, the default kernel on H100/H200 in recent releases:
#: a mask of another dtype than the queries read as the queries' dtype (pytorch/pytorch#191612),
#: NaN query gradients when the sequence length is 64 modulo 128 (#196678, Swin V2's window 8
#: has 64 tokens), wrong outputs with masks at some lengths (#162588). The memory-efficient
#: kernel and the plain math take the same mask correctly; flash attention declines masks.
#: Read at every call, so that a diagnostic (``benchmarks/gpu_check.py``) may force one kernel.
MASKED_CUDA_BACKENDS = (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH)


def window_layout(
    height: int, width: int, window: int, shift: int, small_maps: str = "shrink"
) -> tuple[int, int, int, int]:
    """The window height and width, and the shift along H and W, a block uses on a ``height x width`` map.

    ``small_maps`` says what happens along a side no larger than the window:

    - ``"shrink"`` (the official classification code, Hugging Face, timm): the window shrinks
      to that side, and a map whose shorter side is no larger than the window gets no shift
      on either side, so a map smaller than the window is attended as one window of its size.
    - ``"fixed"`` (the dense-prediction references: mmseg, transformers' ``SwinBackbone``):
      the window and shift are kept whatever the map; a small map is padded to one window.
    - ``"pad"`` (torchvision): the window is kept and the map padded to whole windows, and
      the shift is dropped along each side that one window covers once padded, the other
      side keeping it.
    """
    if small_maps == "fixed":
        return window, window, shift, shift
    if small_maps == "pad":
        shift_h, shift_w = (shift if padded_size(side, window) > window else 0 for side in (height, width))
        return window, window, shift_h, shift_w
    effective_shift = shift if min(height, width) > window else 0
    return min(window, height), min(window, width), effective_shift, effective_shift


def padded_size(length: int, multiple: int) -> int:
    """``length`` rounded up to a multiple of ``multiple``, in non-negative integer arithmetic.

    Written without negative floor division: the TorchScript exporter turns ``//`` into ONNX's
    truncating division, which rounds negative quotients the other way.
    """
    return (length + multiple - 1) // multiple * multiple


@torch.fx.wrap
def pad_to_multiple(x: torch.Tensor, multiple_h: int, multiple_w: int) -> torch.Tensor:
    """Zero-pad a ``(B, H, W, C)`` map on the bottom and right to multiples of the given sides.

    ``(B, H, W, C) -> (B, ceil(H/mh)*mh, ceil(W/mw)*mw, C)``; returns ``x`` itself when no
    padding is needed.
    """
    _, height, width, _ = x.shape
    pad_h = (multiple_h - height % multiple_h) % multiple_h
    pad_w = (multiple_w - width % multiple_w) % multiple_w
    if pad_h == 0 and pad_w == 0 and not torch.jit.is_tracing():  # a traced graph pads by what each size asks
        return x
    return F.pad(x, (0, 0, 0, pad_w, 0, pad_h))


@torch.fx.wrap
def pad_image(pixels: torch.Tensor, patch: int) -> torch.Tensor:
    """Zero-pad a ``(B, C, H, W)`` image batch on the bottom and right to multiples of ``patch``.

    Returns ``pixels`` itself when no padding is needed.
    """
    pad_h = (patch - pixels.shape[2] % patch) % patch
    pad_w = (patch - pixels.shape[3] % patch) % patch
    if pad_h or pad_w or torch.jit.is_tracing():  # a traced graph pads by what each size asks
        return F.pad(pixels, (0, pad_w, 0, pad_h))
    return pixels


def window_partition(x: torch.Tensor, window_h: int, window_w: int) -> torch.Tensor:
    """Cut a map into non-overlapping windows (the W-MSA partition of Sec. 3.2).

    ``(B, H, W, C) -> (B*nW, window_h*window_w, C)`` with windows in row-major order;
    ``H`` and ``W`` must be multiples of the window sides (see :func:`pad_to_multiple`).
    """
    batch, height, width, channels = x.shape
    x = x.view(batch, height // window_h, window_h, width // window_w, window_w, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_h * window_w, channels)


def window_reverse(windows: torch.Tensor, window_h: int, window_w: int, height: int, width: int) -> torch.Tensor:
    """Put windows back into a map: the inverse of :func:`window_partition`.

    ``(B*nW, window_h*window_w, C) -> (B, H, W, C)``.
    """
    channels = windows.shape[-1]
    x = windows.view(-1, height // window_h, width // window_w, window_h, window_w, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, channels)


def shift_pair(shift: int | tuple[int, int]) -> tuple[int, int]:
    """A shift as ``(along H, along W)``; a single number shifts both sides alike."""
    return (shift, shift) if isinstance(shift, int) else (int(shift[0]), int(shift[1]))


def cyclic_shift(x: torch.Tensor, shift: int | tuple[int, int]) -> torch.Tensor:
    """Roll a ``(B, H, W, C)`` map by ``shift`` tokens along H and W (Sec. 3.2, Fig. 4).

    ``shift`` is one number for both sides or ``(along H, along W)``. A positive shift moves
    content toward the top-left, as the paper does before SW-MSA; the negated shift undoes it.
    """
    shift_h, shift_w = shift_pair(shift)
    if shift_h == 0 and shift_w == 0:
        return x
    return torch.roll(x, shifts=(-shift_h, -shift_w), dims=(1, 2))


def shifted_window_regions(
    height: int, width: int, window: int, shift: int | tuple[int, int], device: torch.device | None = None
) -> torch.Tensor:
    """Label each token of a cyclically shifted ``height x width`` map with its sub-window.

    After the shift, the last ``window`` rows (and columns) hold tokens from two places of
    the original map: ``[-window, -shift)`` and the ``shift`` rows that wrapped around.
    Crossing the row bands with the column bands gives up to nine regions (the slides'
    example: an 8x8 map with M = 4 and shift 2), labelled row-major from 0. ``shift`` is one
    number for both sides or ``(along H, along W)``; a side not shifted is a single band.
    Returns an ``(H, W)`` int64 tensor on ``device``.
    """
    bands = [
        (slice(0, -window), slice(-window, -side_shift), slice(-side_shift, None)) if side_shift else (slice(None),)
        for side_shift in shift_pair(shift)
    ]
    regions = torch.zeros(height, width, dtype=torch.int64, device=device)
    label = 0
    for rows in bands[0]:
        for cols in bands[1]:
            regions[rows, cols] = label
            label += 1
    return regions


@functools.lru_cache(maxsize=128)
def shift_window_mask(
    height: int, width: int, window: int, shift: int | tuple[int, int], device: torch.device = torch.device("cpu")
) -> torch.Tensor:
    """The additive SW-MSA mask that keeps attention inside each sub-window (Sec. 3.2).

    For a padded map of ``height x width`` tokens (multiples of ``window``) shifted by
    ``shift`` (one number, or ``(along H, along W)``), returns ``(nW, M*M, M*M)`` float32
    with 0 where query and key lie in the same sub-window and :data:`MASK_VALUE` where they
    do not. Cached per size and device: the same call returns the same tensor, so treat it
    as read-only.
    """
    # Cached tensors are built as normal tensors even under inference_mode, so that a later
    # training step can use them.
    with torch.inference_mode(False):
        regions = shifted_window_regions(height, width, window, shift, device)
        windows = window_partition(regions.view(1, height, width, 1), window, window).squeeze(-1)
        different = windows.unsqueeze(1) != windows.unsqueeze(2)
        return torch.zeros(different.shape, device=device).masked_fill_(different, MASK_VALUE)


@functools.lru_cache(maxsize=128)
def relative_position_index(
    window_h: int, window_w: int, table_side: int, device: torch.device = torch.device("cpu")
) -> torch.Tensor:
    """Index into a ``(2M-1) x (2M-1)`` bias table for every pair of tokens in a window (Eq. 4).

    ``table_side`` is ``2M-1`` of the table; the window may be smaller than ``M``
    (a stage whose map is smaller than the window). Returns ``(N, N)`` int64 with
    ``N = window_h*window_w``: for tokens at ``(i1, j1)`` and ``(i2, j2)`` the entry is
    ``(i1-i2 + M-1) * (2M-1) + (j1-j2 + M-1)``. Cached per size and device (read-only).
    """
    offset = (table_side - 1) // 2
    with torch.inference_mode(False):
        rows, cols = torch.arange(window_h, device=device), torch.arange(window_w, device=device)
        coords = torch.stack(torch.meshgrid(rows, cols, indexing="ij")).flatten(1)
        relative = coords[:, :, None] - coords[:, None, :] + offset
        return relative[0] * table_side + relative[1]


def relative_position_bias(
    table: torch.Tensor, window_h: int, window_w: int, table_side: int | None = None
) -> torch.Tensor:
    """The bias ``B`` of Eq. 4 gathered from its learned table ``B_hat``.

    ``table``: ``((2M-1)^2, heads)``, ``table_side`` its ``2M-1`` (worked out when not
    given); returns ``(heads, N, N)``.
    """
    side = table_side if table_side is not None else math.isqrt(int(table.shape[0]))
    index = cached(relative_position_index, window_h, window_w, side, table.device)
    n = window_h * window_w
    return table[index.view(-1)].view(n, n, -1).permute(2, 0, 1)


@functools.lru_cache(maxsize=256)
def window_order(
    height: int,
    width: int,
    window_h: int,
    window_w: int,
    shift: int | tuple[int, int],
    device: torch.device = torch.device("cpu"),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad, cyclic shift and window partition as one gather, and their reverse as another.

    For an ``height x width`` map padded to whole windows (``Hp x Wp``), returns
    ``order``, ``(nW*N,)``: the row-major position in the padded map of each token in
    window order (``window_partition(cyclic_shift(map, shift))`` of the position map), and
    ``inverse``, ``(H*W,)``: the slot in window order of each original token. So
    ``x.flatten(1, 2)[:, order]`` partitions and ``windows.flatten(0, 1)[:, inverse]``
    (per image) puts back, unshifts and crops in one step. Cached (read-only).
    """
    padded_h, padded_w = padded_size(height, window_h), padded_size(width, window_w)
    with torch.inference_mode(False):
        positions = torch.arange(padded_h * padded_w, device=device).view(1, padded_h, padded_w, 1)
        order = window_partition(cyclic_shift(positions, shift), window_h, window_w).flatten()
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(order.numel(), device=device)
        inverse = inverse.view(padded_h, padded_w)[:height, :width].flatten()
        return order, inverse


def tracing() -> bool:
    """True while torch.compile, torch.export or the TorchScript tracer records the model.

    Caches are bypassed then: the traced graph computes what the cache would have held.
    """
    return torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing()


def cached(function, *args):  # type: ignore[no-untyped-def]
    """Call an ``lru_cache``-wrapped helper, or its plain body while the model is traced."""
    if tracing():
        return function.__wrapped__(*args)
    return function(*args)


@dataclasses.dataclass(frozen=True)
class WindowLayout:
    """How a block cuts an ``height x width`` map: window sides, shift along each side, and the padded map's size."""

    height: int
    width: int
    window_h: int
    window_w: int
    shift_h: int
    shift_w: int
    padded_h: int
    padded_w: int

    @property
    def tokens(self) -> int:
        """Tokens per window, ``N``."""
        return self.window_h * self.window_w

    @property
    def shifts(self) -> tuple[int, int]:
        """The cyclic shift as ``(along H, along W)``."""
        return self.shift_h, self.shift_w

    @property
    def shift(self) -> int:
        """The shift the block applied, along one side or both; 0 when the windows are not shifted."""
        return max(self.shift_h, self.shift_w)


@torch.fx.wrap
def layout_of(x: torch.Tensor, window: int, shift: int, small_maps: str = "shrink") -> WindowLayout:
    """The :class:`WindowLayout` a block of window ``window`` and shift ``shift`` uses on map ``x``.

    ``x``: ``(B, H, W, C)``; the rules, ``small_maps`` among them, are :func:`window_layout`'s.
    """
    height, width = x.shape[1], x.shape[2]
    window_h, window_w, shift_h, shift_w = window_layout(height, width, window, shift, small_maps)
    padded_h, padded_w = padded_size(height, window_h), padded_size(width, window_w)
    return WindowLayout(height, width, window_h, window_w, shift_h, shift_w, padded_h, padded_w)


@torch.fx.wrap
def partition_windows(x: torch.Tensor, layout: WindowLayout) -> torch.Tensor:
    """Pad, cyclic shift and window partition of a map, as one gather (:func:`window_order`).

    ``(B, H, W, C) -> (B*nW, N, C)``: the same as :func:`window_partition` of
    :func:`cyclic_shift` of :func:`pad_to_multiple`.
    """
    x = pad_to_multiple(x, layout.window_h, layout.window_w)
    order, _ = cached(
        window_order, layout.height, layout.width, layout.window_h, layout.window_w, layout.shifts, x.device
    )
    return x.flatten(1, 2).index_select(1, order).view(-1, layout.tokens, x.shape[-1])


@torch.fx.wrap
def reverse_windows(windows: torch.Tensor, layout: WindowLayout) -> torch.Tensor:
    """Window reverse, reverse cyclic shift and crop, as one gather: the inverse of :func:`partition_windows`.

    ``(B*nW, N, C) -> (B, H, W, C)``.
    """
    channels = windows.shape[-1]
    _, inverse = cached(
        window_order, layout.height, layout.width, layout.window_h, layout.window_w, layout.shifts, windows.device
    )
    x = windows.view(-1, layout.padded_h * layout.padded_w, channels).index_select(1, inverse)
    return x.view(-1, layout.height, layout.width, channels)


#: Evaluation-time cache of the folded attention bias (:func:`attention_bias`, and V2's
#: continuous position bias): ``id(parameter) -> (weak reference, {key: (stamp, bias)})``.
_BIAS_CACHE: dict[int, tuple[weakref.ref, dict[tuple, tuple]]] = {}


def _bias_entries(owner: torch.Tensor) -> dict[tuple, tuple]:
    """The cache entries kept for one parameter tensor; they are dropped when it is freed."""
    held = _BIAS_CACHE.get(id(owner))
    if held is None or held[0]() is not owner:
        key = id(owner)

        def forget(ref: weakref.ref) -> None:
            if _BIAS_CACHE.get(key, (None,))[0] is ref:
                del _BIAS_CACHE[key]

        held = (weakref.ref(owner, forget), {})
        _BIAS_CACHE[key] = held
    return held[1]


def parameter_stamp(*parameters: torch.Tensor) -> tuple:
    """What identifies the values of these tensors for a cache: version counter, storage, dtype, device.

    An in-place change (optimiser step, ``load_state_dict``, ``copy_``) bumps the version; a
    ``.to()`` changes the storage or dtype.
    """
    return tuple((p._version, p.data_ptr(), p.dtype, p.device) for p in parameters)


def cached_bias(owner: torch.Tensor, key: tuple, stamp: tuple) -> torch.Tensor | None:
    """The additive attention bias stored for ``owner`` under ``key`` if its ``stamp`` still holds, else None."""
    hit = _bias_entries(owner).get(key)
    return hit[1] if hit is not None and hit[0] == stamp else None


def store_bias(owner: torch.Tensor, key: tuple, stamp: tuple, bias: torch.Tensor) -> None:
    """Keep ``bias`` for ``owner`` under ``key`` with its ``stamp`` (at most 8 layouts per owner)."""
    entries = _bias_entries(owner)
    if len(entries) >= 8:
        entries.clear()
    entries[key] = (stamp, bias)


@torch.fx.wrap
def attention_bias(table: torch.Tensor, layout: WindowLayout, table_side: int) -> torch.Tensor:
    """``B`` of Eq. 4 from the table ``B_hat``, plus the shift mask for ``layout``, as one tensor.

    ``table``: ``((2M-1)^2, heads)`` with ``table_side = 2M-1``. Returns what
    :func:`fold_attention_bias` returns: ``(1 or nW, heads, N, N)``. While gradients are
    recorded for the table it is computed on every call, so that they reach the table.
    Otherwise (evaluation) it is cached per table and layout, and kept while the table is
    unchanged: its in-place version counter and storage are part of the key, so a weight
    load or an optimiser step invalidates it. The cache affects no result.
    """
    use_cache = not (torch.is_grad_enabled() and table.requires_grad) and not tracing()
    key = (layout.window_h, layout.window_w, layout.padded_h, layout.padded_w, layout.shifts, table_side)
    if use_cache:
        stamp = parameter_stamp(table)
        hit = cached_bias(table, key, stamp)
        if hit is not None:
            return hit
        # A normal tensor even under inference_mode, so that a later pass recording gradients can use it.
        with torch.inference_mode(False), torch.no_grad():
            additive = _table_bias(table, layout, table_side)
        store_bias(table, key, stamp, additive)
        return additive
    return _table_bias(table, layout, table_side)


def _table_bias(table: torch.Tensor, layout: WindowLayout, table_side: int) -> torch.Tensor:
    """:func:`attention_bias` without the cache."""
    bias = relative_position_bias(table, layout.window_h, layout.window_w, table_side)
    mask = None
    if layout.shift:
        mask = cached(shift_window_mask, layout.padded_h, layout.padded_w, layout.window_h, layout.shifts, table.device)
    return fold_attention_bias(bias, mask)


@torch.fx.wrap
def split_heads(qkv: torch.Tensor, num_heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fused q, k, v projection of the windows split into heads.

    ``qkv``: ``(B*nW, N, 3C)``, the output of the block's ``qkv`` layer, q then k then v;
    returns three ``(B*nW, heads, N, C/heads)`` views.
    """
    batch_windows, n, width = qkv.shape
    qkv = qkv.view(batch_windows, n, 3, num_heads, width // (3 * num_heads))
    return qkv.permute(2, 0, 3, 1, 4).unbind(0)


def _logits(q: torch.Tensor, k: torch.Tensor, additive: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """``Q K^T / sqrt(d) + B [+ mask]`` of Eq. 4 with ``additive`` from :func:`fold_attention_bias`.

    ``scale`` replaces ``1/sqrt(d)`` when given (1.0 for V2's cosine attention, whose
    queries carry their own scale).
    """
    if scale is None:
        scale = q.shape[-1] ** -0.5
    logits = (q if scale == 1.0 else q * scale) @ k.transpose(-2, -1)
    return (logits.view(-1, *additive.shape) + additive.to(logits.dtype)).view(logits.shape)


def window_attention_probs(
    q: torch.Tensor, k: torch.Tensor, additive: torch.Tensor, scale: float | None = None
) -> torch.Tensor:
    """The attention weights of Eq. 4, ``SoftMax(Q K^T / sqrt(d) + B [+ mask])``, for inspection.

    ``q``, ``k``: ``(B*nW, heads, N, d)``; ``additive`` and ``scale`` as for
    :func:`window_attention`. Returns ``(B*nW, heads, N, N)`` whose rows sum to 1.
    """
    return _logits(q, k, additive, scale).softmax(dim=-1)


def fold_attention_bias(bias: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The relative position bias and the shift mask as one additive tensor (Eq. 4's ``B`` + mask).

    ``bias``: ``(heads, N, N)``; ``mask``: ``(nW, N, N)`` or None. Returns ``(1, heads, N, N)``
    without a mask, ``(nW, heads, N, N)`` with one.
    """
    bias = bias.unsqueeze(0)
    # Contiguous either way: the gathered bias is a permuted view, and fused kernels read the
    # mask by its strides (a dense layout is the one every kernel handles alike).
    return bias.contiguous() if mask is None else bias + mask.unsqueeze(1)


@torch.fx.wrap
def window_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    additive: torch.Tensor,
    attn_drop: float = 0.0,
    scale: float | None = None,
) -> torch.Tensor:
    """Multi-head self-attention inside each window with relative position bias (Eq. 4).

    ``Attention(Q, K, V) = SoftMax(Q K^T / sqrt(d) + B [+ mask]) V`` with
    ``scaled_dot_product_attention``, heads merged back. ``q, k, v``: ``(B*nW, heads, N, d)``
    (windows of one image consecutive); ``additive``: ``B [+ mask]`` from
    :func:`fold_attention_bias`, ``(1 or nW, heads, N, N)``; ``scale`` replaces ``1/sqrt(d)``
    when given. Returns ``(B*nW, N, heads*d)``, the input of the block's output projection.
    """
    batch_windows, heads, n, head_dim = q.shape
    low_precision = q.dtype in (torch.bfloat16, torch.float16)
    if q.device.type == "cpu" and (low_precision or torch.is_grad_enabled()) and attn_drop == 0.0:
        # On CPUs, batched matmuls and softmax beat the fused kernel with a mask in 16-bit, and
        # in training, where the bias's gradient keeps the kernel on its unfused path anyway:
        # that path copies the masks once per image and adds passes for fully masked rows.
        logits = _logits(q, k, additive, scale)
        # Softmax in the 16-bit type itself (the CPU kernel accumulates in fp32): autocast
        # would otherwise cast the logits to fp32 and the weights back, two copies each.
        with torch.autocast(q.device.type, enabled=False):
            weights = logits.softmax(dim=-1)
        out = weights @ v
    else:
        if additive.shape[0] > 1:
            # One copy of the masks per image: the fused CPU kernel takes 4-D masks only.
            additive = additive.repeat(batch_windows // additive.shape[0], 1, 1, 1)
        # The mask in the queries' dtype and dense (see MASKED_CUDA_BACKENDS for why both matter).
        mask = additive.to(q.dtype).contiguous()
        kernels = sdpa_kernel(list(MASKED_CUDA_BACKENDS)) if q.device.type == "cuda" else contextlib.nullcontext()
        with kernels:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=attn_drop, scale=scale)
    # contiguous() is free after the fused kernel (its output already is) and keeps the ONNX
    # exporter's decomposition from viewing a strided tensor.
    return out.transpose(1, 2).contiguous().view(batch_windows, n, heads * head_dim)


# Swin V2 (Liu et al., "Swin Transformer V2: Scaling Up Capacity and Resolution", CVPR 2022).
# The window mechanics above are shared; these are the parts V2 swaps in.

#: Upper clamp of V2's learned per-head logit scale: ``exp(scale) <= 100``, i.e. the
#: temperature ``tau`` of Sec. 3.2 stays above 0.01.
LOGIT_SCALE_MAX = math.log(100.0)
#: V2's continuous position bias is ``16 * sigmoid(G(dx, dy))`` (official code), so it lies in (0, 16).
POSITION_BIAS_RANGE = 16.0
#: The log-spaced coordinates map a normalised offset in [-1, 1] to [-8, 8] before the log (official code).
COORDINATE_RANGE = 8.0


def qv_bias(q_bias: torch.Tensor, v_bias: torch.Tensor) -> torch.Tensor:
    """V2's bias of the fused qkv projection: learned for q and v, zero for k (official code).

    ``(C,), (C,) -> (3C,)``, added to the output of the bias-free ``qkv`` layer.
    """
    return torch.cat((q_bias, torch.zeros_like(v_bias), v_bias))


@functools.lru_cache(maxsize=128)
def log_spaced_coordinates(
    window_h: int, window_w: int, pretrained_window: int = 0, device: torch.device = torch.device("cpu")
) -> torch.Tensor:
    """The log-spaced relative coordinates of V2's continuous position bias (Sec. 3.3).

    Every offset ``(dy, dx)`` of two tokens in a ``window_h x window_w`` window, row-major
    over ``dy in [-(window_h-1), window_h-1]`` and ``dx in [-(window_w-1), window_w-1]``, is
    divided by ``pretrained_window - 1`` when a pretrained window is given (so a larger window
    reuses the pretrained bias function and extrapolates beyond it), else by ``window - 1``
    per side, scaled to [-8, 8], then mapped to ``sign(x) * log2(1 + |x|) / log2(8)`` (the
    paper's ``sign(x) log(1 + |x|)``, normalised). Returns ``((2*window_h-1)*(2*window_w-1), 2)``
    float32, (dy, dx) per row. Cached per size and device (read-only).
    """
    with torch.inference_mode(False):
        grid = []
        for side in (window_h, window_w):
            norm = pretrained_window - 1 if pretrained_window > 0 else side - 1
            grid.append(torch.arange(-(side - 1), side, dtype=torch.float32, device=device) / max(norm, 1))
        coords = torch.stack(torch.meshgrid(*grid, indexing="ij"), dim=-1).view(-1, 2) * COORDINATE_RANGE
        return torch.sign(coords) * torch.log2(coords.abs() + 1.0) / math.log2(COORDINATE_RANGE)


@functools.lru_cache(maxsize=128)
def relative_offset_index(window_h: int, window_w: int, device: torch.device = torch.device("cpu")) -> torch.Tensor:
    """Index of every token pair of a window into the offset grid of :func:`log_spaced_coordinates`.

    Returns ``(N, N)`` int64, ``N = window_h*window_w``: for tokens at ``(i1, j1)`` and
    ``(i2, j2)`` the entry is ``(i1-i2 + window_h-1) * (2*window_w-1) + (j1-j2 + window_w-1)``.
    Cached per size and device (read-only).
    """
    with torch.inference_mode(False):
        rows, cols = torch.arange(window_h, device=device), torch.arange(window_w, device=device)
        coords = torch.stack(torch.meshgrid(rows, cols, indexing="ij")).flatten(1)
        relative = coords[:, :, None] - coords[:, None, :]
        return (relative[0] + window_h - 1) * (2 * window_w - 1) + relative[1] + window_w - 1


@torch.fx.wrap
def position_coordinates(layout: WindowLayout, pretrained_window: int, like: torch.Tensor) -> torch.Tensor:
    """:func:`log_spaced_coordinates` for the window ``layout`` uses, in ``like``'s dtype and device.

    The input of the bias MLP: ``((2*window_h-1)*(2*window_w-1), 2)``.
    """
    coords = cached(log_spaced_coordinates, layout.window_h, layout.window_w, pretrained_window, like.device)
    return coords.to(like.dtype)


@torch.fx.wrap
def continuous_position_bias(table: torch.Tensor, layout: WindowLayout) -> torch.Tensor:
    """V2's continuous relative position bias (Sec. 3.3) for ``layout``, plus the shift mask, as one tensor.

    ``table``: ``((2*window_h-1)*(2*window_w-1), heads)``, the bias MLP ``G`` evaluated on
    :func:`position_coordinates`. The bias is ``16 * sigmoid(G(dx, dy))`` gathered per token
    pair; returns what :func:`fold_attention_bias` returns, ``(1 or nW, heads, N, N)``.
    """
    bias = POSITION_BIAS_RANGE * torch.sigmoid(table)
    index = cached(relative_offset_index, layout.window_h, layout.window_w, table.device)
    n = layout.tokens
    bias = bias[index.view(-1)].view(n, n, -1).permute(2, 0, 1)
    mask = None
    if layout.shift:
        mask = cached(shift_window_mask, layout.padded_h, layout.padded_w, layout.window_h, layout.shifts, table.device)
    return fold_attention_bias(bias, mask)


def cosine_queries_keys(
    q: torch.Tensor, k: torch.Tensor, logit_scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries and keys whose dot product is V2's scaled cosine similarity (Sec. 3.2).

    ``Sim(q, k) = cos(q, k) / tau``: q and k are L2-normalised over the head dimension and
    q is multiplied by ``1/tau = exp(min(logit_scale, log 100))`` of its head, so that
    ``q' k'^T`` is the similarity. ``q, k``: ``(B*nW, heads, N, d)``; ``logit_scale``:
    ``(heads, 1, 1)``. Returns the two tensors in the same shapes.
    """
    scale = torch.clamp(logit_scale, max=LOGIT_SCALE_MAX).exp()
    return F.normalize(q, dim=-1) * scale.to(q.dtype), F.normalize(k, dim=-1)


@torch.fx.wrap
def scaled_cosine_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    logit_scale: torch.Tensor,
    additive: torch.Tensor,
    attn_drop: float = 0.0,
) -> torch.Tensor:
    """V2's window attention: ``SoftMax(cos(Q, K) / tau + B [+ mask]) V`` (Sec. 3.2, Eq. 2).

    Replaces Eq. 4's ``Q K^T / sqrt(d)`` by the scaled cosine similarity of
    :func:`cosine_queries_keys`; ``B [+ mask]`` is ``additive`` from
    :func:`continuous_position_bias`. Same shapes and kernel as :func:`window_attention`:
    ``(B*nW, heads, N, d) -> (B*nW, N, heads*d)``.
    """
    q, k = cosine_queries_keys(q, k, logit_scale)
    return window_attention(q, k, v, additive, attn_drop, scale=1.0)


def scaled_cosine_attention_probs(
    q: torch.Tensor, k: torch.Tensor, logit_scale: torch.Tensor, additive: torch.Tensor
) -> torch.Tensor:
    """The attention weights of :func:`scaled_cosine_attention`, ``(B*nW, heads, N, N)``, for inspection."""
    q, k = cosine_queries_keys(q, k, logit_scale)
    return window_attention_probs(q, k, additive, scale=1.0)


class _GeluLinear(torch.autograd.Function):
    """``linear(gelu(hidden))`` that saves ``hidden`` alone and recomputes the GELU in backward."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(hidden, weight)
        ctx.has_bias = bias is not None
        return F.linear(F.gelu(hidden), weight, bias)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        hidden, weight = ctx.saved_tensors
        # Under autocast the forward ran in the low precision: do the backward in grad_out's dtype.
        dtype = grad_out.dtype
        activated = F.gelu(hidden).to(dtype)
        flat_grad = grad_out.reshape(-1, grad_out.shape[-1])
        grad_weight = (flat_grad.t() @ activated.reshape(-1, activated.shape[-1])).to(weight.dtype)
        grad_bias = flat_grad.sum(0).to(weight.dtype) if ctx.has_bias else None
        grad_activated = grad_out @ weight.to(dtype)
        grad_hidden = torch.ops.aten.gelu_backward(grad_activated.to(hidden.dtype), hidden)
        return grad_hidden, grad_weight, grad_bias


def gelu_linear(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The second half of the block's MLP, ``Linear(GELU(hidden))``, with less memory in training.

    Numerically the plain ``F.linear(F.gelu(hidden), weight, bias)``; when gradients are
    recorded it keeps only ``hidden`` (not also its GELU, each ``4C`` wide) for the
    backward pass, which recomputes the GELU. ``(..., hidden) -> (..., out)``.
    """
    if not torch.is_grad_enabled() or not (hidden.requires_grad or weight.requires_grad):
        return F.linear(F.gelu(hidden), weight, bias)
    return _GeluLinear.apply(hidden, weight, bias)


#: On CPUs, a matrix product with few input features (K <= 96) and more than about 320
#: outputs runs at half the machine's rate in PyTorch's CPU GEMM (measured: Swin-T's
#: stage-1 ``fc1``, 25088x96 @ 96x384, takes 2.8x the time of 96x288); 256 outputs at a time do not.
CPU_MLP_SLICE = 256
CPU_NARROW_INPUT = 128


def mlp_chunks(x: torch.Tensor, in_features: int, hidden_features: int) -> int:
    """How many slices of the hidden units :func:`mlp` should use for ``x`` (1 = none)."""
    if x.device.type != "cpu" or in_features >= CPU_NARROW_INPUT or hidden_features <= CPU_MLP_SLICE:
        return 1
    return math.ceil(hidden_features / CPU_MLP_SLICE)


def mlp(
    x: torch.Tensor,
    fc1_weight: torch.Tensor,
    fc1_bias: torch.Tensor | None,
    fc2_weight: torch.Tensor,
    fc2_bias: torch.Tensor | None,
    chunks: int = 1,
) -> torch.Tensor:
    """The block's MLP, ``fc2(GELU(fc1(x)))``, optionally as a sum over slices of the hidden units.

    ``fc2(GELU(fc1(x))) = sum_s fc2[:, s](GELU(fc1[s](x)))``: the hidden units are
    independent, so ``chunks`` slices give the same result up to the order of the sum.
    Each slice goes through :func:`gelu_linear`. ``(..., C) -> (..., C)``.
    """
    hidden = fc1_weight.shape[0]
    size = math.ceil(hidden / chunks)
    out = None
    for start in range(0, hidden, size):
        part = slice(start, start + size)
        inner = F.linear(x, fc1_weight[part], None if fc1_bias is None else fc1_bias[part])
        piece = gelu_linear(inner, fc2_weight[:, part], fc2_bias if start == 0 else None)
        out = piece if out is None else out + piece
    return out
