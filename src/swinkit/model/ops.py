"""The functional core of Swin: pure functions of tensors, one per idea of the paper.

Every function here is stateless. Modules in :mod:`swinkit.model.layers` hold the
parameters and call these. Shapes use ``B`` batch, ``H, W`` token-map height and width,
``C`` channels, ``M`` window side, ``nW`` windows per image, ``N = M*M`` tokens per window.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

#: Value the reference code adds to attention logits between tokens of different
#: sub-windows (it is -100, not -inf, so a fully masked row cannot produce NaN).
MASK_VALUE = -100.0


def window_layout(height: int, width: int, window: int, shift: int) -> tuple[int, int, int]:
    """The window height, width and shift a block of window ``window`` uses on a ``height x width`` map.

    A map whose shorter side is no larger than the window gets no shift (the reference
    rule), and along a side shorter than the window the window shrinks to that side, so a
    map smaller than the window is attended as one window of its own size.
    """
    effective_shift = shift if min(height, width) > window else 0
    return min(window, height), min(window, width), effective_shift


def pad_to_multiple(x: torch.Tensor, multiple_h: int, multiple_w: int) -> torch.Tensor:
    """Zero-pad a ``(B, H, W, C)`` map on the bottom and right to multiples of the given sides.

    ``(B, H, W, C) -> (B, ceil(H/mh)*mh, ceil(W/mw)*mw, C)``; returns ``x`` itself when no
    padding is needed.
    """
    _, height, width, _ = x.shape
    pad_h = (multiple_h - height % multiple_h) % multiple_h
    pad_w = (multiple_w - width % multiple_w) % multiple_w
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, 0, 0, pad_w, 0, pad_h))


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


def cyclic_shift(x: torch.Tensor, shift: int) -> torch.Tensor:
    """Roll a ``(B, H, W, C)`` map by ``shift`` tokens along H and W (Sec. 3.2, Fig. 4).

    A positive ``shift`` moves content toward the top-left, as the paper does before
    SW-MSA; ``cyclic_shift(x, -shift)`` undoes it.
    """
    if shift == 0:
        return x
    return torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))


def shifted_window_regions(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    """Label each token of a cyclically shifted ``height x width`` map with its sub-window.

    After the shift, the last ``window`` rows (and columns) hold tokens from two places of
    the original map: ``[-window, -shift)`` and the ``shift`` rows that wrapped around.
    Crossing the row bands with the column bands gives up to nine regions (the slides'
    example: an 8x8 map with M = 4 and shift 2), labelled ``0..8`` row-major.
    Returns an ``(H, W)`` int64 tensor.
    """
    bands = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    regions = torch.zeros(height, width, dtype=torch.int64)
    label = 0
    for rows in bands:
        for cols in bands:
            regions[rows, cols] = label
            label += 1
    return regions


@functools.lru_cache(maxsize=128)
def shift_window_mask(
    height: int, width: int, window: int, shift: int, device: torch.device = torch.device("cpu")
) -> torch.Tensor:
    """The additive SW-MSA mask that keeps attention inside each sub-window (Sec. 3.2).

    For a padded map of ``height x width`` tokens (multiples of ``window``) shifted by
    ``shift``, returns ``(nW, M*M, M*M)`` float32 with 0 where query and key lie in the
    same sub-window and :data:`MASK_VALUE` where they do not. Cached per size and device:
    the same call returns the same tensor, so treat it as read-only.
    """
    # Cached tensors are built as normal tensors even under inference_mode, so that a later
    # training step can use them.
    with torch.inference_mode(False):
        regions = shifted_window_regions(height, width, window, shift)
        windows = window_partition(regions.view(1, height, width, 1), window, window).squeeze(-1)
        different = windows.unsqueeze(1) != windows.unsqueeze(2)
        return torch.zeros(different.shape).masked_fill_(different, MASK_VALUE).to(device)


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
        coords = torch.stack(torch.meshgrid(torch.arange(window_h), torch.arange(window_w), indexing="ij")).flatten(1)
        relative = coords[:, :, None] - coords[:, None, :] + offset
        return (relative[0] * table_side + relative[1]).to(device)


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
    height: int, width: int, window_h: int, window_w: int, shift: int, device: torch.device = torch.device("cpu")
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad, cyclic shift and window partition as one gather, and their reverse as another.

    For an ``height x width`` map padded to whole windows (``Hp x Wp``), returns
    ``order``, ``(nW*N,)``: the row-major position in the padded map of each token in
    window order (``window_partition(cyclic_shift(map, shift))`` of the position map), and
    ``inverse``, ``(H*W,)``: the slot in window order of each original token. So
    ``x.flatten(1, 2)[:, order]`` partitions and ``windows.flatten(0, 1)[:, inverse]``
    (per image) puts back, unshifts and crops in one step. Cached (read-only).
    """
    padded_h, padded_w = -(-height // window_h) * window_h, -(-width // window_w) * window_w
    with torch.inference_mode(False):
        positions = torch.arange(padded_h * padded_w).view(1, padded_h, padded_w, 1)
        order = window_partition(cyclic_shift(positions, shift), window_h, window_w).flatten()
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(order.numel())
        inverse = inverse.view(padded_h, padded_w)[:height, :width].flatten()
        return order.to(device), inverse.to(device)


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


def _heads(
    windows: torch.Tensor, qkv_weight: torch.Tensor, qkv_bias: torch.Tensor | None, num_heads: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fused qkv projection split into heads: three ``(B*nW, heads, N, d)`` views."""
    batch_windows, n, channels = windows.shape
    qkv = F.linear(windows, qkv_weight, qkv_bias).view(batch_windows, n, 3, num_heads, channels // num_heads)
    return qkv.permute(2, 0, 3, 1, 4).unbind(0)


def _logits(q: torch.Tensor, k: torch.Tensor, additive: torch.Tensor) -> torch.Tensor:
    """``Q K^T / sqrt(d) + B [+ mask]`` of Eq. 4 with ``additive`` from :func:`fold_attention_bias`."""
    logits = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    return (logits.view(-1, *additive.shape) + additive.to(logits.dtype)).view(logits.shape)


def window_attention_probs(
    windows: torch.Tensor,
    qkv_weight: torch.Tensor,
    qkv_bias: torch.Tensor | None,
    num_heads: int,
    bias: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The attention weights of Eq. 4, ``SoftMax(Q K^T / sqrt(d) + B [+ mask])``, for inspection.

    Same inputs as :func:`window_attention`; returns ``(B*nW, heads, N, N)`` whose rows sum to 1.
    """
    q, k, _ = _heads(windows, qkv_weight, qkv_bias, num_heads)
    return _logits(q, k, fold_attention_bias(bias, mask)).softmax(dim=-1)


def fold_attention_bias(bias: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The relative position bias and the shift mask as one additive tensor (Eq. 4's ``B`` + mask).

    ``bias``: ``(heads, N, N)``; ``mask``: ``(nW, N, N)`` or None. Returns ``(1, heads, N, N)``
    without a mask, ``(nW, heads, N, N)`` with one.
    """
    bias = bias.unsqueeze(0)
    return bias if mask is None else bias + mask.unsqueeze(1)


def window_attention(
    windows: torch.Tensor,
    qkv_weight: torch.Tensor,
    qkv_bias: torch.Tensor | None,
    proj_weight: torch.Tensor,
    proj_bias: torch.Tensor | None,
    num_heads: int,
    additive: torch.Tensor,
    attn_drop: float = 0.0,
) -> torch.Tensor:
    """Multi-head self-attention inside each window with relative position bias (Eq. 4).

    ``Attention(Q, K, V) = SoftMax(Q K^T / sqrt(d) + B [+ mask]) V``, then the output
    projection, with ``scaled_dot_product_attention``. ``windows``: ``(B*nW, N, C)``
    (windows of one image consecutive); ``additive``: ``B [+ mask]`` from
    :func:`fold_attention_bias`, ``(1 or nW, heads, N, N)``. Returns ``(B*nW, N, C)``.
    """
    batch_windows, n, channels = windows.shape
    q, k, v = _heads(windows, qkv_weight, qkv_bias, num_heads)
    low_precision = q.dtype in (torch.bfloat16, torch.float16)
    if q.device.type == "cpu" and (low_precision or torch.is_grad_enabled()) and attn_drop == 0.0:
        # On CPUs, batched matmuls and softmax beat the fused kernel with a mask in 16-bit, and
        # in training, where the bias's gradient keeps the kernel on its unfused path anyway:
        # that path copies the masks once per image and adds passes for fully masked rows.
        logits = _logits(q, k, additive)
        # Softmax in the 16-bit type itself (the CPU kernel accumulates in fp32): autocast
        # would otherwise cast the logits to fp32 and the weights back, two copies each.
        with torch.autocast(q.device.type, enabled=False):
            weights = logits.softmax(dim=-1)
        out = weights @ v
    else:
        if additive.shape[0] > 1:
            # One copy of the masks per image: the fused CPU kernel takes 4-D masks only.
            additive = additive.repeat(batch_windows // additive.shape[0], 1, 1, 1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=additive.to(q.dtype), dropout_p=attn_drop)
    # contiguous() is free after the fused kernel (its output already is) and keeps the ONNX
    # exporter's decomposition from viewing a strided tensor.
    out = out.transpose(1, 2).contiguous().view(batch_windows, n, channels)
    return F.linear(out, proj_weight, proj_bias)


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
