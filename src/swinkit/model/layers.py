"""The modules of Swin: each holds its parameters and calls the functional core in ``ops``.

Token maps travel between modules as ``(B, H, W, C)`` tensors (channels last), so that
window partition, shift and merging are plain indexing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from torchvision.ops import StochasticDepth

from swinkit.model import ops


class PatchEmbed(nn.Module):
    """Patch partition and linear embedding (stage 1 of Sec. 3.1), then LayerNorm.

    Each ``patch x patch`` group of pixels (``patch*patch*in_chans`` values) is mapped
    linearly to ``dim`` channels; a strided convolution computes exactly that linear map.
    Images whose sides are not multiples of the patch are zero-padded on the bottom and
    right first. ``(B, in_chans, H, W) -> (B, ceil(H/patch), ceil(W/patch), dim)``.
    """

    def __init__(self, patch_size: int, in_chans: int, dim: int, eps: float) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        pad_h = (self.patch_size - pixels.shape[2] % self.patch_size) % self.patch_size
        pad_w = (self.patch_size - pixels.shape[3] % self.patch_size) % self.patch_size
        if pad_h or pad_w:
            pixels = F.pad(pixels, (0, pad_w, 0, pad_h))
        return self.norm(self.proj(pixels).permute(0, 2, 3, 1))


class Mlp(nn.Module):
    """The 2-layer MLP of a Swin block: Linear, GELU, dropout, Linear, dropout.

    Without dropout (the released models, and evaluation) it runs as
    :func:`swinkit.model.ops.mlp`: the same numbers, one ``4C``-wide activation less kept
    for the backward pass, and on CPUs, for narrow inputs, in slices of the hidden units.
    """

    def __init__(self, dim: int, hidden_dim: int, drop: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop.p == 0.0 or not self.training:
            chunks = ops.mlp_chunks(x, self.fc1.in_features, self.fc1.out_features)
            return ops.mlp(x, self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias, chunks)
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


@dataclasses.dataclass(frozen=True)
class WindowLayout:
    """How a block cuts an ``height x width`` map: window sides, shift, and the padded map's size."""

    height: int
    width: int
    window_h: int
    window_w: int
    shift: int
    padded_h: int
    padded_w: int


class WindowAttention(nn.Module):
    """W-MSA / SW-MSA parameters: fused qkv, output projection and the bias table of Eq. 4.

    ``relative_position_bias_table`` is ``B_hat``, of shape ``((2M-1)^2, heads)``.
    The math lives in :func:`swinkit.model.ops.window_attention`.
    """

    def __init__(
        self, dim: int, num_heads: int, window_size: int, qkv_bias: bool, attn_drop: float, proj_drop: float
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window_size = window_size
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop)
        self._additive_cache: dict[tuple, tuple] = {}

    def additive(self, layout: WindowLayout, device: torch.device) -> torch.Tensor:
        """``B`` of Eq. 4 plus the shift mask for ``layout``, folded into one tensor.

        While gradients are recorded it is rebuilt on every call, so that they reach the
        bias table. Otherwise (evaluation) it is cached per layout and kept while the table
        is unchanged: its in-place version counter and storage are part of the key, so a new
        weight load or an optimiser step invalidates it. The cache affects no result.
        """
        table = self.relative_position_bias_table
        use_cache = not (torch.is_grad_enabled() and table.requires_grad) and not ops.tracing()
        key = (layout.window_h, layout.window_w, layout.padded_h, layout.padded_w, layout.shift, device)
        if use_cache:
            stamp = (table._version, table.data_ptr(), table.dtype)
            hit = self._additive_cache.get(key)
            if hit is not None and hit[0] == stamp:
                return hit[1]
        bias = ops.relative_position_bias(table, layout.window_h, layout.window_w, 2 * self.window_size - 1)
        mask = None
        if layout.shift:
            mask = ops.cached(
                ops.shift_window_mask, layout.padded_h, layout.padded_w, layout.window_h, layout.shift, device
            )
        additive = ops.fold_attention_bias(bias, mask)
        if use_cache:
            if len(self._additive_cache) >= 8:
                self._additive_cache.clear()
            self._additive_cache[key] = (stamp, additive)
        return additive

    def forward(self, windows: torch.Tensor, layout: WindowLayout) -> torch.Tensor:
        """``(B*nW, N, C) -> (B*nW, N, C)`` for windows cut as ``layout`` says."""
        out = ops.window_attention(
            windows,
            self.qkv.weight,
            self.qkv.bias,
            self.proj.weight,
            self.proj.bias,
            self.num_heads,
            self.additive(layout, windows.device),
            attn_drop=self.attn_drop if self.training else 0.0,
        )
        return self.proj_drop(out)


class SwinBlock(nn.Module):
    """One Swin Transformer block (Eq. 3): ``z = x + (S)W-MSA(LN(x)); out = z + MLP(LN(z))``.

    ``shift_size`` 0 gives W-MSA, ``window_size // 2`` gives SW-MSA. The layout is decided
    per call from the map's size (see :func:`swinkit.model.ops.window_layout`): the map is zero-padded (after
    the norm) to a multiple of the window, cyclically shifted, partitioned, attended with
    the sub-window mask built on the padded map, and put back, as Hugging Face's model does.
    ``(B, H, W, C) -> (B, H, W, C)``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        shift_size: int,
        mlp_ratio: float,
        qkv_bias: bool,
        drop: float,
        attn_drop: float,
        drop_path: float,
        eps: float,
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = WindowAttention(dim, num_heads, window_size, qkv_bias, attn_drop, drop)
        self.drop_path = StochasticDepth(drop_path, "row")
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def layout(self, height: int, width: int) -> WindowLayout:
        """How this block cuts a ``height x width`` map into windows."""
        window_h, window_w, shift = ops.window_layout(height, width, self.window_size, self.shift_size)
        padded_h, padded_w = -(-height // window_h) * window_h, -(-width // window_w) * window_w
        return WindowLayout(height, width, window_h, window_w, shift, padded_h, padded_w)

    def _order(self, layout: WindowLayout, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        return ops.cached(
            ops.window_order, layout.height, layout.width, layout.window_h, layout.window_w, layout.shift, device
        )

    def _partition(self, x: torch.Tensor) -> tuple[torch.Tensor, WindowLayout]:
        """Pad, shift and partition a normalised map; returns the windows and the layout.

        ``(B, H, W, C) -> (B*nW, N, C)``: :func:`~swinkit.model.ops.pad_to_multiple`, then
        :func:`~swinkit.model.ops.cyclic_shift` and :func:`~swinkit.model.ops.window_partition`
        fused into one gather (:func:`~swinkit.model.ops.window_order`).
        """
        layout = self.layout(x.shape[1], x.shape[2])
        x = ops.pad_to_multiple(x, layout.window_h, layout.window_w)
        order, _ = self._order(layout, x.device)
        windows = x.flatten(1, 2).index_select(1, order)
        return windows.view(-1, layout.window_h * layout.window_w, x.shape[-1]), layout

    def shifted_window_attention(self, x: torch.Tensor) -> torch.Tensor:
        """(S)W-MSA on a normalised map: pad, shift, partition, attend, reverse, unshift, crop."""
        batch, channels = x.shape[0], x.shape[-1]
        windows, layout = self._partition(x)
        windows = self.attn(windows, layout)
        _, inverse = self._order(layout, x.device)
        # window_reverse, cyclic_shift(-shift) and the crop, as one gather.
        x = windows.view(batch, -1, channels).index_select(1, inverse)
        return x.view(batch, layout.height, layout.width, channels)

    def attention_probabilities(self, x: torch.Tensor) -> tuple[torch.Tensor, WindowLayout]:
        """The attention weights this block computes for its input ``x`` (before ``norm1``).

        Returns ``(B, nW, heads, N, N)`` rows of ``SoftMax(QK^T/sqrt(d) + B + mask)`` (Eq. 4),
        windows in row-major order over the padded, shifted map, and the layout to place them.
        """
        windows, layout = self._partition(self.norm1(x))
        bias = ops.relative_position_bias(self.attn.relative_position_bias_table, layout.window_h, layout.window_w)
        mask = None
        if layout.shift:
            mask = ops.shift_window_mask(layout.padded_h, layout.padded_w, layout.window_h, layout.shift, x.device)
        probs = ops.window_attention_probs(
            windows, self.attn.qkv.weight, self.attn.qkv.bias, self.attn.num_heads, bias, mask
        )
        return probs.view(x.shape[0], -1, *probs.shape[1:]), layout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.shifted_window_attention(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """Patch merging (Sec. 3.1): concatenate each 2x2 group, LayerNorm(4C), Linear(4C -> 2C).

    The group is concatenated in the reference order (0,0), (1,0), (0,1), (1,1) of
    (row, column) offsets. Odd maps are zero-padded on the bottom and right first.
    ``(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), 2C)``.
    """

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=eps)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = ops.pad_to_multiple(x, 2, 2)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """A stage: optional patch merging at its start, then ``depth`` blocks alternating W-MSA and SW-MSA.

    ``(B, H, W, C_in) -> (B, H', W', dim)`` with ``H' = ceil(H/2)`` when merging, else ``H``.
    """

    def __init__(
        self,
        in_dim: int,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        downsample: bool,
        mlp_ratio: float,
        qkv_bias: bool,
        drop: float,
        attn_drop: float,
        drop_path: Sequence[float],
        eps: float,
    ) -> None:
        super().__init__()
        self.downsample = PatchMerging(in_dim, eps) if downsample else nn.Identity()
        self.blocks = nn.ModuleList(
            SwinBlock(
                dim,
                num_heads,
                window_size,
                window_size // 2 if index % 2 == 1 else 0,
                mlp_ratio,
                qkv_bias,
                drop,
                attn_drop,
                drop_path[index],
                eps,
            )
            for index in range(depth)
        )
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        for block in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x
