"""The Swin Transformer (Liu et al., ICCV 2021) and Swin V2 (CVPR 2022): configuration and the full model."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TypeVar

import torch
from torch import nn

from swinkit.model.layers import PatchEmbed, SwinBlock, SwinStage


_Config = TypeVar("_Config")


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    pair = tuple(int(v) for v in value)
    if len(pair) != 2:
        raise ValueError(f"img_size must be an int or (height, width), got {value!r}")
    return pair  # type: ignore[return-value]


#: What the patch embedding may do with the pixels beyond whole patches (:attr:`SwinConfig.patch_remainder`).
PATCH_REMAINDERS = ("pad", "crop")


def replace_fields(config: _Config, changes: dict[str, object], kind: str) -> _Config:
    """A copy of a frozen config dataclass with ``changes``; unknown names raise ValueError naming the accepted ones."""
    fields = {f.name for f in dataclasses.fields(config)}  # type: ignore[arg-type]
    unknown = sorted(set(changes) - fields)
    if unknown:
        raise ValueError(f"unknown {kind} field(s) {unknown}; accepted: {sorted(fields)}")
    return dataclasses.replace(config, **changes)  # type: ignore[type-var]


@dataclasses.dataclass(frozen=True)
class SwinConfig:
    """Everything that defines a Swin model; the registry's variants are instances of this.

    ``img_size`` is the size the model is meant for (pretraining resolution, FLOPs); the
    model accepts any size of at least one patch at run time. ``labels`` optionally names
    the classes, one per class, so that they travel with the weights.

    ``version`` 2 builds Swin V2 (scaled cosine attention, continuous position bias,
    res-post-norm, q/v bias, merging with the norm after the reduction).
    ``pretrained_window_sizes`` (V2 only) gives, per stage, the window the model was
    pretrained with, by which the position coordinates are normalised; empty (or 0 for a
    stage) means the window in use.

    ``fixed_windows`` keeps every block's window and shift on maps smaller than the window,
    padding them to one window, as the dense-prediction references run Swin (mmsegmentation,
    transformers' ``SwinBackbone``), whatever ``patch_remainder`` says; otherwise
    ``patch_remainder`` decides the rule on such maps (:attr:`small_maps`). It changes no weight.

    ``patch_remainder`` picks between the two references' answers at sizes they were not
    trained for. ``"pad"`` (the official code, Hugging Face): the patch embedding zero-pads the
    bottom rows and right columns of an image whose side is not a multiple of ``patch_size``
    to a whole patch, and a stage map no larger than the window along a side shrinks the
    window to it (and drops the shift). ``"crop"`` (torchvision's Swin, V1 and V2): the patch
    embedding leaves those pixels out, and a stage map keeps the full window, zero-padded to
    whole windows, with the shift dropped only along a side that one window covers once padded
    (:attr:`small_maps` is ``"pad"``). Where every side is a multiple of the patch and every
    stage map exceeds the window along both sides, the two give the same result.
    """

    img_size: int | tuple[int, int] = 224
    patch_size: int = 4
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 7
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.1
    layer_norm_eps: float = 1e-5
    labels: tuple[str, ...] = ()
    version: int = 1
    pretrained_window_sizes: tuple[int, ...] = ()
    fixed_windows: bool = False
    patch_remainder: str = "pad"

    def __post_init__(self) -> None:
        object.__setattr__(self, "img_size", _pair(self.img_size))
        object.__setattr__(self, "labels", tuple(str(label) for label in self.labels))
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        object.__setattr__(self, "num_heads", tuple(int(h) for h in self.num_heads))
        windows = tuple(int(w) for w in self.pretrained_window_sizes)
        object.__setattr__(self, "pretrained_window_sizes", windows if any(windows) else ())
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first impossible setting and what is accepted."""
        for name in ("patch_size", "in_chans", "embed_dim", "window_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0 means no classifier head), got {self.num_classes}")
        if not self.depths or len(self.depths) != len(self.num_heads):
            raise ValueError(
                f"depths and num_heads need one entry per stage and the same length, got "
                f"depths={self.depths} and num_heads={self.num_heads}"
            )
        if any(d < 1 for d in self.depths) or any(h < 1 for h in self.num_heads):
            raise ValueError(f"depths and num_heads must be positive, got {self.depths} and {self.num_heads}")
        for stage, heads in enumerate(self.num_heads):
            width = self.stage_dims[stage]
            if width % heads:
                raise ValueError(
                    f"stage {stage} has width {width} (embed_dim {self.embed_dim} * 2^{stage}), which "
                    f"{heads} heads do not divide; choose num_heads[{stage}] among the divisors of {width}"
                )
        if min(self.img_size) < self.patch_size:
            raise ValueError(f"img_size {self.img_size} is smaller than one patch ({self.patch_size} pixels)")
        if self.labels and len(self.labels) != self.num_classes:
            raise ValueError(
                f"labels name {len(self.labels)} classes but num_classes is {self.num_classes}; "
                f"give one label per class, or none"
            )
        for name in ("drop_rate", "attn_drop_rate", "drop_path_rate"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.patch_remainder not in PATCH_REMAINDERS:
            raise ValueError(
                f"patch_remainder must be one of {', '.join(map(repr, PATCH_REMAINDERS))} (what the patch embedding "
                f"does with pixels beyond whole patches: zero-pad them, or crop them as torchvision does), "
                f"got {self.patch_remainder!r}"
            )
        if self.version not in (1, 2):
            raise ValueError(f"version must be 1 (Swin) or 2 (Swin V2), got {self.version!r}")
        if self.pretrained_window_sizes:
            if self.version != 2:
                raise ValueError(
                    f"pretrained_window_sizes {self.pretrained_window_sizes} apply to Swin V2 only (version=2); "
                    f"a version 1 model takes none"
                )
            if len(self.pretrained_window_sizes) != self.num_stages or min(self.pretrained_window_sizes) < 0:
                raise ValueError(
                    f"pretrained_window_sizes needs one non-negative window per stage ({self.num_stages} stages, "
                    f"0 = the window in use), got {self.pretrained_window_sizes}"
                )

    @property
    def small_maps(self) -> str:
        """The blocks' rule on maps no larger than the window (:func:`swinkit.model.ops.window_layout`).

        ``"fixed"`` with ``fixed_windows``, else ``"pad"`` when ``patch_remainder`` is
        ``"crop"`` (torchvision's rule), else ``"shrink"``.
        """
        if self.fixed_windows:
            return "fixed"
        return "pad" if self.patch_remainder == "crop" else "shrink"

    def pretrained_window(self, stage: int) -> int:
        """The pretrained window of ``stage`` that V2 normalises its coordinates by (0 = none)."""
        return self.pretrained_window_sizes[stage] if self.pretrained_window_sizes else 0

    @property
    def num_stages(self) -> int:
        return len(self.depths)

    @property
    def stage_dims(self) -> tuple[int, ...]:
        """Channels per stage: ``C, 2C, 4C, 8C``."""
        return tuple(self.embed_dim * 2**i for i in range(self.num_stages))

    @property
    def num_features(self) -> int:
        """Channels of the final feature map (``8C`` for four stages)."""
        return self.stage_dims[-1]

    def patch_grid(self, height: int, width: int) -> tuple[int, int]:
        """Rows and columns of patches the embedding makes of a ``height x width`` image.

        A partial patch counts as one when the remainder is padded, as none when it is cropped.
        """
        whole = math.ceil if self.patch_remainder == "pad" else math.floor
        return whole(height / self.patch_size), whole(width / self.patch_size)

    @property
    def stage_resolutions(self) -> tuple[tuple[int, int], ...]:
        """Token-map size of each stage at ``img_size`` (see :meth:`patch_grid`; merging pads odd maps)."""
        height, width = self.patch_grid(*self.img_size)
        sizes = []
        for stage in range(self.num_stages):
            if stage:
                height, width = math.ceil(height / 2), math.ceil(width / 2)
            sizes.append((height, width))
        return tuple(sizes)

    def replace(self, **changes: object) -> SwinConfig:
        """A copy with some fields changed; unknown field names raise ValueError."""
        return replace_fields(self, changes, "config")

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields."""
        data = dataclasses.asdict(self)
        for key in ("img_size", "depths", "num_heads", "labels", "pretrained_window_sizes"):
            data[key] = list(data[key])
        return data


@torch.fx.wrap
def check_pixels(pixels: torch.Tensor, in_chans: int, patch: int) -> torch.Tensor:
    """``pixels`` itself when it is a ``(B, in_chans, H, W)`` batch of at least one patch; else ValueError.

    A leaf function under FX tracing, so that a traced model still checks its input when it runs;
    torch.compile and torch.export see plain shape comparisons.
    """
    if not isinstance(pixels, torch.Tensor) or pixels.dim() != 4:
        shape = tuple(pixels.shape) if isinstance(pixels, torch.Tensor) else type(pixels).__name__
        raise ValueError(f"expected a 4D image batch (B, C, H, W), got {shape}")
    if pixels.shape[1] != in_chans:
        raise ValueError(
            f"expected {in_chans} input channels (in_chans), got {pixels.shape[1]} in "
            f"shape {tuple(pixels.shape)}; build the model with in_chans={pixels.shape[1]} for such images"
        )
    if pixels.shape[2] < patch or pixels.shape[3] < patch:
        raise ValueError(
            f"image {pixels.shape[2]}x{pixels.shape[3]} is smaller than one patch; "
            f"height and width must each be at least {patch} pixels"
        )
    return pixels


def replace_masked_tokens(
    tokens: torch.Tensor, mask: torch.Tensor | None, mask_token: torch.Tensor | None
) -> torch.Tensor:
    """SimMIM's masking of patch embeddings: ``mask_token`` wherever ``mask`` is true, ``tokens`` elsewhere.

    ``tokens`` ``(B, h, w, C)`` are the normalised patch embeddings, ``mask`` ``(B, h, w)``
    booleans on the same grid, ``mask_token`` any shape of ``C`` values (``(1, 1, C)`` as
    stored). Equal to the references' ``x * (1 - m) + token * m``, without arithmetic on
    the kept tokens. A mask of another shape, a non-boolean mask, or only one of the two,
    raises ValueError.
    """
    if mask is None or mask_token is None:
        raise ValueError("masking needs both a mask and a mask token; give both, or neither")
    if mask.dtype != torch.bool or tuple(mask.shape) != tuple(tokens.shape[:3]):
        raise ValueError(
            f"mask must be booleans of shape (batch, patch rows, patch columns) = {tuple(tokens.shape[:3])} for "
            f"this input, got {mask.dtype} of shape {tuple(mask.shape)}"
        )
    if mask_token.numel() != tokens.shape[-1]:
        raise ValueError(
            f"mask_token must hold {tokens.shape[-1]} values (the embedding width), got {mask_token.numel()}"
        )
    return torch.where(mask.unsqueeze(-1), mask_token.reshape(-1).to(tokens.dtype), tokens)


class SwinTransformer(nn.Module):
    """Swin Transformer: patch embedding, four stages of Swin blocks with patch merging, head.

    ``config.version`` picks Swin V1 or Swin V2 blocks, attention and merging; the rest is
    shared. ``forward``: ``(B, in_chans, H, W) -> (B, num_classes)`` logits (or pooled
    features when ``num_classes`` is 0). Any ``H, W`` of at least one patch is accepted.
    """

    def __init__(self, config: SwinConfig) -> None:
        super().__init__()
        self.config = config
        self.num_features = config.num_features
        total = sum(config.depths)
        rates = [config.drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        self.patch_embed = PatchEmbed(
            config.patch_size, config.in_chans, config.embed_dim, config.layer_norm_eps, config.patch_remainder
        )
        stages = []
        for index, (depth, heads) in enumerate(zip(config.depths, config.num_heads)):
            first = sum(config.depths[:index])
            stages.append(
                SwinStage(
                    in_dim=config.stage_dims[max(index - 1, 0)],
                    dim=config.stage_dims[index],
                    depth=depth,
                    num_heads=heads,
                    window_size=config.window_size,
                    downsample=index > 0,
                    mlp_ratio=config.mlp_ratio,
                    qkv_bias=config.qkv_bias,
                    drop=config.drop_rate,
                    attn_drop=config.attn_drop_rate,
                    drop_path=rates[first : first + depth],
                    eps=config.layer_norm_eps,
                    version=config.version,
                    pretrained_window=config.pretrained_window(index),
                    small_maps=config.small_maps,
                )
            )
        self.stages = nn.ModuleList(stages)
        self.norm = nn.LayerNorm(self.num_features, eps=config.layer_norm_eps)
        self.head_drop = nn.Dropout(config.drop_rate)
        self.head = self._make_head(config.num_classes)
        self.apply(self._init_weights)
        for module in self.modules():
            if hasattr(module, "relative_position_bias_table"):
                nn.init.trunc_normal_(module.relative_position_bias_table, std=0.02)
            if isinstance(module, SwinBlock) and module.post_norm:
                # As the official V2 code and timm: each residual branch starts at zero.
                for norm in (module.norm1, module.norm2):
                    nn.init.zeros_(norm.weight)
                    nn.init.zeros_(norm.bias)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    @property
    def num_classes(self) -> int:
        return self.head.out_features if isinstance(self.head, nn.Linear) else 0

    def _stage_maps(
        self, pixels: torch.Tensor, last: int, mask: torch.Tensor | None = None, mask_token: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        x = self.patch_embed(check_pixels(pixels, self.config.in_chans, self.config.patch_size))
        if mask is not None or mask_token is not None:
            x = replace_masked_tokens(x, mask, mask_token)
        maps = []
        for stage in self.stages[: last + 1]:
            x = stage(x)
            maps.append(x)
        return maps

    def forward_features(
        self, pixels: torch.Tensor, mask: torch.Tensor | None = None, mask_token: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Final normalised tokens as a map: ``(B, in_chans, H, W) -> (B, H/32, W/32, 8C)`` (NHWC).

        With ``mask`` (``(B, H/4, W/4)`` booleans over the patch grid) and ``mask_token`` (``C``
        values), the embeddings of the masked patches are replaced by the token before the
        stages, as SimMIM's encoder does (see :func:`replace_masked_tokens`); without them the
        output is unchanged.
        """
        return self.norm(self._stage_maps(pixels, len(self.stages) - 1, mask, mask_token)[-1])

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool of ``(B, h, w, 8C)`` features, dropout, then the linear head."""
        pooled = self.head_drop(features.mean(dim=(1, 2)))
        return pooled if pre_logits else self.head(pooled)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(pixels))

    def forward_intermediates(
        self, pixels: torch.Tensor, indices: Sequence[int] = (0, 1, 2, 3), norm: bool = False
    ) -> list[torch.Tensor]:
        """Stage outputs as NCHW maps, for use as a backbone (detection, segmentation).

        Stage ``i`` gives ``(B, C*2^i, H/(4*2^i), W/(4*2^i))`` (sizes round up). Negative
        indices count from the last stage. With ``norm=True`` the last stage's map goes
        through the final LayerNorm, as ``forward_features`` does.
        """
        count = len(self.stages)
        resolved = []
        for index in indices:
            if not -count <= index < count:
                raise ValueError(f"stage index {index} out of range; this model has stages 0..{count - 1}")
            resolved.append(index % count)
        maps = self._stage_maps(pixels, max(resolved))
        if norm and count - 1 in resolved:
            maps[-1] = self.norm(maps[-1])
        return [maps[index].permute(0, 3, 1, 2) for index in resolved]

    def reset_classifier(self, num_classes: int, labels: Sequence[str] = ()) -> None:
        """Replace the head with a freshly initialised one for ``num_classes`` (0 removes it).

        ``labels`` optionally names the new classes (one per class).
        """
        config = self.config.replace(num_classes=num_classes, labels=tuple(labels))
        reference = self.norm.weight
        self.head = self._make_head(num_classes).to(device=reference.device, dtype=reference.dtype)
        self.head.apply(self._init_weights)
        self.config = config

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass: same results, less memory."""
        for stage in self.stages:
            stage.grad_checkpointing = enable
