"""The modules of Swin: each holds its parameters and calls the functional core in ``ops``.

Token maps travel between modules as ``(B, H, W, C)`` tensors (channels last), so that
window partition, shift and merging are plain indexing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
# True for FX symbolic tracing alone (the older ``is_fx_tracing`` warns, and is true under torch.export too).
from torch.fx._symbolic_trace import is_fx_symbolic_tracing as is_fx_tracing
from torch.utils.checkpoint import checkpoint
from torchvision.ops import StochasticDepth

from swinkit.model import ops
from swinkit.model.ops import WindowLayout

#: Hidden width of Swin V2's continuous position bias MLP (official code).
CPB_HIDDEN = 512

__all__ = ["Mlp", "PatchEmbed", "PatchMerging", "SwinBlock", "SwinStage", "WindowAttention", "WindowLayout"]


def plain_linears(*layers: nn.Module) -> bool:
    """True when a fast path may use these layers' raw weights instead of calling them.

    That is only so for plain ``nn.Linear`` layers with no hooks of their own, no global
    module hooks, and no FX tracing. An adapted (PEFT LoRA), quantized, pruned or
    parametrized layer, or a hooked one, is called as a module, so that every tool applied
    to the model sees it.
    """
    if is_fx_tracing() or not torch.compiler.is_compiling() and _global_hooks():
        return False
    return all(
        type(layer) is nn.Linear
        and not (layer._forward_hooks or layer._forward_pre_hooks or layer._backward_hooks or layer._backward_pre_hooks)
        for layer in layers
    )


def _global_hooks() -> bool:
    from torch.nn.modules import module as torch_module

    return bool(
        torch_module._global_forward_hooks
        or torch_module._global_forward_pre_hooks
        or torch_module._global_backward_hooks
        or torch_module._global_backward_pre_hooks
    )


class PatchEmbed(nn.Module):
    """Patch partition and linear embedding (stage 1 of Sec. 3.1), then LayerNorm.

    Each ``patch x patch`` group of pixels (``patch*patch*in_chans`` values) is mapped
    linearly to ``dim`` channels; a strided convolution computes exactly that linear map.
    The pixels beyond whole patches on the bottom and right are zero-padded to a patch with
    ``remainder="pad"``, ``(B, in_chans, H, W) -> (B, ceil(H/patch), ceil(W/patch), dim)``, or
    left out with ``remainder="crop"`` (torchvision's Swin), ``-> (B, H//patch, W//patch, dim)``.
    """

    def __init__(self, patch_size: int, in_chans: int, dim: int, eps: float, remainder: str = "pad") -> None:
        super().__init__()
        self.patch_size = patch_size
        self.remainder = remainder
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        # Cropping needs no step of its own: the strided convolution stops at the last whole patch.
        if self.remainder == "pad":
            pixels = ops.pad_image(pixels, self.patch_size)
        return self.norm(self.proj(pixels).permute(0, 2, 3, 1))


class Mlp(nn.Module):
    """The 2-layer MLP of a Swin block: Linear, GELU, dropout, Linear, dropout.

    Without dropout (the released models, and evaluation), and when both layers are plain
    ``nn.Linear`` (see :func:`plain_linears`), it runs as :func:`swinkit.model.ops.mlp`: the
    same numbers, one ``4C``-wide activation less kept for the backward pass, and on CPUs,
    for narrow inputs, in slices of the hidden units. Otherwise it calls its layers.
    """

    def __init__(self, dim: int, hidden_dim: int, drop: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.drop.p == 0.0 or not self.training) and plain_linears(self.fc1, self.fc2):
            chunks = ops.mlp_chunks(x, self.fc1.in_features, self.fc1.out_features)
            return ops.mlp(x, self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias, chunks)
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class WindowAttention(nn.Module):
    """W-MSA / SW-MSA parameters: fused qkv, output projection and the position bias.

    Version 1 (Eq. 4): ``qkv`` with bias, and ``relative_position_bias_table``, the learned
    ``B_hat`` of shape ``((2M-1)^2, heads)``; the math is
    :func:`swinkit.model.ops.window_attention`.

    Version 2 (Swin V2): a bias-free ``qkv`` plus ``q_bias`` and ``v_bias`` (zero k bias,
    :func:`~swinkit.model.ops.qv_bias`); ``logit_scale`` ``(heads, 1, 1)``, the log of the
    inverse temperature of the scaled cosine attention
    (:func:`~swinkit.model.ops.scaled_cosine_attention`), initialised to ``log 10``; and
    ``cpb_mlp``, the continuous position bias MLP ``G`` (Linear(2, 512), ReLU,
    Linear(512, heads, no bias)), called on the log-spaced offsets of the window in use
    (:func:`~swinkit.model.ops.continuous_position_bias`). ``pretrained_window`` (0 = none)
    is the window the coordinates are normalised by.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        qkv_bias: bool,
        attn_drop: float,
        proj_drop: float,
        version: int = 1,
        pretrained_window: int = 0,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window_size = window_size
        self.version = version
        self.pretrained_window = pretrained_window
        if version == 1:
            self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
            self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        else:
            self.qkv = nn.Linear(dim, dim * 3, bias=False)
            self.q_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
            self.v_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
            self.logit_scale = nn.Parameter(torch.full((num_heads, 1, 1), math.log(10.0)))
            self.cpb_mlp = nn.Sequential(
                nn.Linear(2, CPB_HIDDEN), nn.ReLU(), nn.Linear(CPB_HIDDEN, num_heads, bias=False)
            )
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop)

    def additive(self, layout: WindowLayout) -> torch.Tensor:
        """The position bias plus the shift mask for ``layout``, folded: ``(1 or nW, heads, N, N)``.

        Version 1: ``B`` of Eq. 4 (:func:`~swinkit.model.ops.attention_bias`). Version 2: the
        ``cpb_mlp`` called on the window's coordinates, then
        :func:`~swinkit.model.ops.continuous_position_bias`; in evaluation, when the MLP's
        layers are plain and unhooked, the result is cached per layout until its weights change.
        """
        if self.version == 1:
            return ops.attention_bias(self.relative_position_bias_table, layout, 2 * self.window_size - 1)
        stamp = self._bias_stamp()
        if stamp is None:
            return self._continuous_bias(layout)
        key = (layout.window_h, layout.window_w, layout.padded_h, layout.padded_w, layout.shifts)
        hit = ops.cached_bias(self.cpb_mlp[0].weight, key, stamp)
        if hit is None:
            # A normal tensor even under inference_mode, so that a later pass recording gradients can use it.
            with torch.inference_mode(False), torch.no_grad():
                hit = self._continuous_bias(layout)
            ops.store_bias(self.cpb_mlp[0].weight, key, stamp, hit)
        return hit

    def _continuous_bias(self, layout: WindowLayout) -> torch.Tensor:
        """V2's bias: ``cpb_mlp`` on the window's log-spaced coordinates, 16 sigmoid, gathered, plus the mask."""
        coords = ops.position_coordinates(layout, self.pretrained_window, self.logit_scale)
        return ops.continuous_position_bias(self.cpb_mlp(coords), layout)

    def _bias_stamp(self) -> tuple | None:
        """The cache stamp of V2's bias MLP, or None when the bias must be computed on this call.

        It must while the model is traced or compiled, while gradients are recorded for the
        MLP, and when the MLP is anything but plain unhooked ``nn.Linear`` layers (adapted,
        quantized or hooked layers are called every time).
        """
        if ops.tracing() or self.cpb_mlp._forward_hooks or self.cpb_mlp._forward_pre_hooks:
            return None
        if not plain_linears(self.cpb_mlp[0], self.cpb_mlp[2]):
            return None
        parameters = [self.cpb_mlp[0].weight, self.cpb_mlp[0].bias, self.cpb_mlp[2].weight]
        if torch.is_grad_enabled() and any(p.requires_grad for p in parameters):
            return None
        return ops.parameter_stamp(*parameters) + (self.logit_scale.dtype,)

    def heads(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v of the windows, each ``(B*nW, heads, N, d)``: the ``qkv`` layer (plus V2's q/v bias), split."""
        qkv = self.qkv(windows)
        if self.version == 2 and self.q_bias is not None:
            qkv = qkv + ops.qv_bias(self.q_bias, self.v_bias)
        return ops.split_heads(qkv, self.num_heads)

    def forward(self, windows: torch.Tensor, layout: WindowLayout) -> torch.Tensor:
        """``(B*nW, N, C) -> (B*nW, N, C)`` for windows cut as ``layout`` says."""
        q, k, v = self.heads(windows)
        drop = self.attn_drop if self.training else 0.0
        if self.version == 1:
            out = ops.window_attention(q, k, v, self.additive(layout), drop)
        else:
            out = ops.scaled_cosine_attention(q, k, v, self.logit_scale, self.additive(layout), drop)
        return self.proj_drop(self.proj(out))

    def probabilities(self, windows: torch.Tensor, layout: WindowLayout) -> torch.Tensor:
        """The attention weights for these windows, ``(B*nW, heads, N, N)`` (Eq. 4, or V2's cosine attention)."""
        q, k, _ = self.heads(windows)
        if self.version == 1:
            return ops.window_attention_probs(q, k, self.additive(layout))
        return ops.scaled_cosine_attention_probs(q, k, self.logit_scale, self.additive(layout))


class SwinBlock(nn.Module):
    """One Swin Transformer block: window attention, then the MLP, each with a residual.

    Version 1 (Eq. 3, pre-norm): ``z = x + (S)W-MSA(LN(x)); out = z + MLP(LN(z))``.
    Version 2 (res-post-norm, Sec. 3.2 of Swin V2): ``z = x + LN((S)W-MSA(x));
    out = z + LN(MLP(z))``; ``norm1`` and ``norm2`` are then the post-norms.

    ``shift_size`` 0 gives W-MSA, ``window_size // 2`` gives SW-MSA. The layout is decided
    per call from the map's size (see :func:`swinkit.model.ops.window_layout`): the map is zero-padded (after
    V1's pre-norm) to a multiple of the window, cyclically shifted, partitioned, attended with
    the sub-window mask built on the padded map, and put back, as Hugging Face's model does.
    ``small_maps`` is the rule on maps no larger than the window: ``"shrink"`` the window to
    them, keep the window and shift (``"fixed"``, the dense-prediction references), or keep
    the window and drop the shift only along a side that one window covers (``"pad"``, torchvision);
    see :func:`~swinkit.model.ops.window_layout`. ``(B, H, W, C) -> (B, H, W, C)``.
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
        version: int = 1,
        pretrained_window: int = 0,
        small_maps: str = "shrink",
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = shift_size
        self.small_maps = small_maps
        self.post_norm = version == 2
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = WindowAttention(dim, num_heads, window_size, qkv_bias, attn_drop, drop, version, pretrained_window)
        self.drop_path = StochasticDepth(drop_path, "row")
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def layout(self, height: int, width: int) -> WindowLayout:
        """How this block cuts an ``height x width`` map into windows."""
        return ops.layout_of(torch.empty(0, height, width, 0), self.window_size, self.shift_size, self.small_maps)

    def shifted_window_attention(self, x: torch.Tensor) -> torch.Tensor:
        """(S)W-MSA on a map: pad, shift, partition, attend, reverse, unshift, crop.

        ``(B, H, W, C) -> (B, H, W, C)``; the pad, shift and partition are one gather, and so
        is their reverse (:func:`~swinkit.model.ops.partition_windows`,
        :func:`~swinkit.model.ops.reverse_windows`).
        """
        layout = ops.layout_of(x, self.window_size, self.shift_size, self.small_maps)
        windows = self.attn(ops.partition_windows(x, layout), layout)
        return ops.reverse_windows(windows, layout)

    def attention_probabilities(self, x: torch.Tensor) -> tuple[torch.Tensor, WindowLayout]:
        """The attention weights this block computes for its input ``x`` (the block's input).

        Returns ``(B, nW, heads, N, N)`` rows of ``SoftMax(QK^T/sqrt(d) + B + mask)`` (Eq. 4;
        for V2 the scaled cosine attention on ``x`` itself, which V2 does not normalise
        first), windows in row-major order over the padded, shifted map, and the layout to
        place them.
        """
        attended = x if self.post_norm else self.norm1(x)
        layout = ops.layout_of(attended, self.window_size, self.shift_size, self.small_maps)
        probs = self.attn.probabilities(ops.partition_windows(attended, layout), layout)
        return probs.view(x.shape[0], -1, *probs.shape[1:]), layout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.post_norm:
            x = x + self.drop_path(self.norm1(self.shifted_window_attention(x)))
            return x + self.drop_path(self.norm2(self.mlp(x)))
        x = x + self.drop_path(self.shifted_window_attention(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """Patch merging (Sec. 3.1): concatenate each 2x2 group, then reduce 4C -> 2C.

    The group is concatenated in the reference order (0,0), (1,0), (0,1), (1,1) of
    (row, column) offsets. Odd maps are zero-padded on the bottom and right first.
    Version 1: LayerNorm(4C), then Linear(4C -> 2C, no bias). Version 2 (the official V2
    code's order, which the post-norm design asks for): Linear(4C -> 2C, no bias), then
    LayerNorm(2C). ``(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), 2C)``.
    """

    def __init__(self, dim: int, eps: float, version: int = 1) -> None:
        super().__init__()
        self.norm_first = version == 1
        self.norm = nn.LayerNorm(4 * dim if self.norm_first else 2 * dim, eps=eps)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = ops.pad_to_multiple(x, 2, 2)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        if self.norm_first:
            return self.reduction(self.norm(x))
        return self.norm(self.reduction(x))


class SwinStage(nn.Module):
    """A stage: optional patch merging at its start, then ``depth`` blocks alternating W-MSA and SW-MSA.

    ``version`` picks Swin V1 or V2 parts; ``pretrained_window`` (V2, 0 = none) is the window
    the stage's position coordinates are normalised by; ``small_maps`` is the blocks' rule on
    maps no larger than the window (see :class:`SwinBlock`).
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
        version: int = 1,
        pretrained_window: int = 0,
        small_maps: str = "shrink",
    ) -> None:
        super().__init__()
        self.downsample = PatchMerging(in_dim, eps, version) if downsample else nn.Identity()
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
                version,
                pretrained_window,
                small_maps,
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
