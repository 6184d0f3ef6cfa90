"""Semantic segmentation with a Swin backbone and UperNet (Xiao et al., ECCV 2018), as the Swin paper's Sec. 4.3.

The backbone's stage outputs (strides 4, 8, 16, 32 for the four-stage variants), each through
its own LayerNorm for Swin V1 (as mmsegmentation's ``norm{i}`` and transformers'
``SwinBackbone``; transformers' ``Swinv2Backbone`` has none), feed the UperNet head: pyramid
pooling on the last map, a feature pyramid over all of them, a fused 3x3 bottleneck and a 1x1
classifier; an auxiliary FCN head on the second to last stage adds 0.4 of its cross-entropy
to the loss during training. Logits come out at the input's resolution, for any input size.

Every parametrised layer is a module the forward calls (convolution, BatchNorm, ReLU), so
hooks, LoRA adapters, quantization and FX feature extraction see them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from swinkit.model.registry import COMPACT, VARIANTS, get_config, register_task_model
from swinkit.model.swin import SwinConfig, SwinTransformer, replace_fields

#: Pyramid pooling output sizes of PSPNet and UperNet.
POOL_SCALES = (1, 2, 3, 6)
#: Labels the loss skips (ADE20K's convention; mmsegmentation's and transformers' default).
IGNORE_INDEX = 255
#: Training crop of the official ADE20K setups, the default input size of the four-stage segmenters.
SEGMENTATION_SIZE = 512
#: Backbone drop-path rates of the official Swin UperNet configs, where they differ from classification's.
_DROP_PATH = {"swin_t": 0.3, "swin_s": 0.3, "swin_b": 0.3}
#: Prefix of the registered segmenters' names: ``upernet_`` + a backbone variant's name.
PREFIX = "upernet_"


def resize(x: torch.Tensor, size: Sequence[int] | torch.Size) -> torch.Tensor:
    """Bilinear resize of a ``(B, C, h, w)`` map to ``(B, C, *size)`` (``align_corners=False``, as the references)."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


@dataclasses.dataclass(frozen=True)
class SegmenterConfig:
    """A Swin UperNet segmenter: the backbone's :class:`SwinConfig` and the heads' settings.

    ``backbone`` is a Swin config whose classifier is dropped (its ``num_classes`` is set to 0).
    ``channels`` is the width of the UperNet head (512 in the references), ``pool_scales``
    the pyramid pooling sizes. ``aux_channels`` (0: no auxiliary head) is the width of the
    auxiliary FCN head, which reads stage ``aux_stage`` (negative counts from the last: -2
    is stage 3 of four, stage 2 of the three-stage compact variants) through ``aux_convs``
    3x3 conv-BN-ReLU layers; its loss counts ``aux_weight`` times. ``dropout`` is applied
    before both classifiers in training (mmsegmentation's 0.1; transformers has none).
    ``stage_norms`` puts a LayerNorm on each stage output (default: for Swin V1, not V2, as
    the references). ``ignore_index`` is the label the loss skips.
    """

    backbone: SwinConfig
    num_classes: int = 150
    labels: tuple[str, ...] = ()
    channels: int = 512
    pool_scales: tuple[int, ...] = POOL_SCALES
    aux_channels: int = 256
    aux_stage: int = -2
    aux_convs: int = 1
    aux_weight: float = 0.4
    dropout: float = 0.1
    stage_norms: bool | None = None
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self) -> None:
        backbone = self.backbone
        if isinstance(backbone, Mapping):
            backbone = SwinConfig(**backbone)
        if not isinstance(backbone, SwinConfig):
            raise ValueError(f"backbone must be a SwinConfig (or its dict), got {type(backbone).__name__}")
        if backbone.num_classes or backbone.labels:
            backbone = backbone.replace(num_classes=0, labels=())
        object.__setattr__(self, "backbone", backbone)
        object.__setattr__(self, "labels", tuple(str(label) for label in self.labels))
        object.__setattr__(self, "pool_scales", tuple(int(scale) for scale in self.pool_scales))
        if self.stage_norms is None:
            object.__setattr__(self, "stage_norms", backbone.version == 1)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first impossible setting and what is accepted."""
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {self.num_classes}")
        if self.labels and len(self.labels) != self.num_classes:
            raise ValueError(
                f"labels name {len(self.labels)} classes but num_classes is {self.num_classes}; "
                f"give one label per class, or none"
            )
        if self.channels < 1 or self.aux_channels < 0:
            raise ValueError(
                f"channels must be positive and aux_channels >= 0 (0: no auxiliary head), got "
                f"{self.channels} and {self.aux_channels}"
            )
        if not self.pool_scales or min(self.pool_scales) < 1:
            raise ValueError(f"pool_scales must be positive output sizes, got {self.pool_scales}")
        stages = self.backbone.num_stages
        if self.aux_channels and not -stages <= self.aux_stage < stages:
            raise ValueError(f"aux_stage {self.aux_stage} is not a stage of a {stages}-stage backbone")
        if self.aux_convs < 1:
            raise ValueError(f"aux_convs must be at least 1, got {self.aux_convs}")
        if self.aux_weight < 0:
            raise ValueError(f"aux_weight must be >= 0, got {self.aux_weight}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def img_size(self) -> tuple[int, int]:
        """The input size the segmenter is meant for (its backbone's; the sliding window's default crop)."""
        return self.backbone.img_size  # type: ignore[return-value]

    @property
    def in_chans(self) -> int:
        """Channels of the input images."""
        return self.backbone.in_chans

    @property
    def has_aux(self) -> bool:
        """Whether the segmenter has an auxiliary head."""
        return self.aux_channels > 0

    def replace(self, **changes: object) -> SegmenterConfig:
        """A copy with some fields changed; unknown field names raise ValueError."""
        return replace_fields(self, changes, "segmenter config")

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields, the backbone's as a nested dict."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["backbone"] = self.backbone.to_dict()
        data["labels"] = list(self.labels)
        data["pool_scales"] = list(self.pool_scales)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> SegmenterConfig:
        """The config of :meth:`to_dict`'s output; unknown keys raise ValueError naming them."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown or "backbone" not in data:
            raise ValueError(
                f"a segmenter config needs 'backbone' and takes only {sorted(fields)}; got unknown keys {unknown}"
            )
        backbone_fields = {f.name for f in dataclasses.fields(SwinConfig)}
        backbone = dict(data["backbone"])  # type: ignore[call-overload]
        strange = sorted(set(backbone) - backbone_fields)
        if strange:
            raise ValueError(f"unknown backbone config field(s) {strange}; accepted: {sorted(backbone_fields)}")
        return cls(**{**data, "backbone": SwinConfig(**backbone)})  # type: ignore[arg-type]


class ConvNormAct(nn.Module):
    """Convolution (no bias), BatchNorm, ReLU: the head's building block. ``(B, C_in, h, w) -> (B, C_out, h, w)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


def pooling_matrix(length: int | torch.Tensor, size: int, like: torch.Tensor) -> torch.Tensor:
    """The ``(size, length)`` averaging matrix of adaptive average pooling along one axis.

    Bin ``i`` averages positions ``floor(i L / size)`` to ``ceil((i + 1) L / size) - 1``, the
    bins of ``nn.AdaptiveAvgPool2d``. Written with tensor arithmetic on ``length`` so that an
    ONNX export keeps it a function of the input size.
    """
    bins = torch.arange(size, device=like.device)
    start = torch.div(bins * length, size, rounding_mode="floor")
    end = torch.div((bins + 1) * length + size - 1, size, rounding_mode="floor")
    positions = torch.arange(length, device=like.device)
    inside = (positions[None, :] >= start[:, None]) & (positions[None, :] < end[:, None])
    weights = inside.to(like.dtype)
    return weights / weights.sum(dim=1, keepdim=True)


class AdaptiveAvgPool(nn.Module):
    """Adaptive average pooling to ``size x size``: ``(B, C, h, w) -> (B, C, size, size)``.

    The bins of ``nn.AdaptiveAvgPool2d``, computed as two averaging matrices
    (:func:`pooling_matrix`), which ONNX exports for any input size (the exporter's own
    adaptive pooling fixes the traced size).
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = pooling_matrix(x.shape[2], self.size, x)
        cols = pooling_matrix(x.shape[3], self.size, x)
        return torch.einsum("ih,bchw,jw->bcij", rows, x, cols)


class PoolingBranch(nn.Module):
    """One pyramid pooling branch: average to ``scale x scale``, 1x1 conv-BN-ReLU, back to the map's size."""

    def __init__(self, scale: int, in_channels: int, channels: int) -> None:
        super().__init__()
        self.pool = AdaptiveAvgPool(scale)
        self.conv = ConvNormAct(in_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resize(self.conv(self.pool(x)), x.shape[2:])


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling on the last map: the map and its pooled branches, concatenated, 3x3 bottleneck.

    ``(B, C_in, h, w) -> (B, channels, h, w)``.
    """

    def __init__(self, in_channels: int, channels: int, scales: Sequence[int]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(PoolingBranch(scale, in_channels, channels) for scale in scales)
        self.bottleneck = ConvNormAct(in_channels + len(scales) * channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(torch.cat([x, *(branch(x) for branch in self.branches)], dim=1))


class UperNetHead(nn.Module):
    """UperNet's decoder: pyramid pooling on the last map and a feature pyramid over all maps.

    Each map but the last gets a 1x1 lateral conv; the last gets :class:`PyramidPooling`.
    Top-down, each level adds the bilinearly upsampled level above; each level but the top
    then gets a 3x3 conv, all are upsampled to the first map's size, concatenated, fused by
    a 3x3 conv, and classified by a 1x1 conv (after dropout in training).
    ``[(B, C_i, h_i, w_i)] -> (B, num_classes, h_0, w_0)``.
    """

    def __init__(
        self, in_channels: Sequence[int], channels: int, num_classes: int, pool_scales: Sequence[int], dropout: float
    ) -> None:
        super().__init__()
        self.ppm = PyramidPooling(in_channels[-1], channels, pool_scales)
        self.laterals = nn.ModuleList(ConvNormAct(width, channels, 1) for width in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvNormAct(channels, channels, 3) for _ in in_channels[:-1])
        self.fuse = ConvNormAct(len(in_channels) * channels, channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        levels = [lateral(x) for lateral, x in zip(self.laterals, maps)] + [self.ppm(maps[-1])]
        for index in range(len(levels) - 1, 0, -1):
            levels[index - 1] = levels[index - 1] + resize(levels[index], levels[index - 1].shape[2:])
        outputs = [conv(level) for conv, level in zip(self.fpn_convs, levels)] + [levels[-1]]
        size = outputs[0].shape[2:]
        fused = self.fuse(torch.cat([outputs[0], *(resize(x, size) for x in outputs[1:])], dim=1))
        return self.classifier(self.dropout(fused))


class FCNHead(nn.Module):
    """The auxiliary head: ``num_convs`` 3x3 conv-BN-ReLU layers and a 1x1 classifier (dropout before it in training).

    ``(B, C_in, h, w) -> (B, num_classes, h, w)``.
    """

    def __init__(self, in_channels: int, channels: int, num_classes: int, num_convs: int, dropout: float) -> None:
        super().__init__()
        widths = [in_channels] + [channels] * num_convs
        self.convs = nn.Sequential(*(ConvNormAct(widths[i], channels, 3) for i in range(num_convs)))
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.convs(x)))


def segmentation_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    aux_logits: torch.Tensor | None = None,
    aux_weight: float = 0.4,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Cross-entropy over the labelled pixels, plus ``aux_weight`` times the auxiliary head's.

    ``logits`` and ``aux_logits``: ``(B, K, H, W)``; ``labels``: ``(B, H, W)`` class indices,
    ``ignore_index`` where unlabelled. Each term is the mean over the pixels not ignored, as
    transformers' ``UperNetForSemanticSegmentation`` and mmsegmentation compute it. Raises
    ValueError for labels of another size or not integers.
    """
    if labels.dim() != 3 or labels.shape[0] != logits.shape[0] or labels.shape[1:] != logits.shape[2:]:
        raise ValueError(
            f"labels must be (B, H, W) = {(logits.shape[0], *logits.shape[2:])} to match logits "
            f"{tuple(logits.shape)}, got {tuple(labels.shape)}"
        )
    if labels.is_floating_point():
        raise ValueError(f"labels must hold integer class indices, got dtype {labels.dtype}")
    labels = labels.long()
    loss = F.cross_entropy(logits, labels, ignore_index=ignore_index)
    if aux_logits is not None:
        loss = loss + aux_weight * F.cross_entropy(aux_logits, labels, ignore_index=ignore_index)
    return loss


class SwinUperNet(nn.Module):
    """Semantic segmentation: a Swin backbone, per-stage LayerNorms (V1), a UperNet head and an auxiliary FCN head.

    ``forward``: ``(B, in_chans, H, W) -> (B, num_classes, H, W)`` logits at the input's
    resolution, any ``H, W`` (of at least one patch); in training mode, when there is an
    auxiliary head, the pair ``(logits, aux_logits)``, which :meth:`loss` takes as it is
    (:meth:`forward_with_aux` gives the pair in any mode). Modules:
    ``backbone`` (a :class:`SwinTransformer` without classifier; its final norm is unused
    and removed), ``stage_norms``, ``head`` (:class:`UperNetHead`), ``aux_head`` (:class:`FCNHead` or None).
    """

    def __init__(self, config: SegmenterConfig) -> None:
        super().__init__()
        self.config = config
        backbone = config.backbone
        self.backbone = SwinTransformer(backbone)
        self.backbone.norm = nn.Identity()
        widths = backbone.stage_dims
        eps = backbone.layer_norm_eps
        self.stage_norms = nn.ModuleList(nn.LayerNorm(width, eps=eps) for width in widths) if config.stage_norms else None
        self.head = UperNetHead(widths, config.channels, config.num_classes, config.pool_scales, config.dropout)
        self.aux_head = (
            FCNHead(widths[config.aux_stage], config.aux_channels, config.num_classes, config.aux_convs, config.dropout)
            if config.has_aux
            else None
        )
        self._init_heads()

    def _init_heads(self) -> None:
        """mmsegmentation's initialisation of the heads: Kaiming-normal convs, classifiers normal(0, 0.01)."""
        heads = [self.head, self.aux_head] if self.aux_head is not None else [self.head]
        for head in heads:
            for module in head.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(module, nn.BatchNorm2d):
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)
            nn.init.normal_(head.classifier.weight, std=0.01)
            nn.init.zeros_(head.classifier.bias)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def forward_features(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        """The normalised stage outputs: ``(B, C*2^i, ceil(H/(p*2^i)), ceil(W/(p*2^i)))`` for each stage ``i``."""
        maps = self.backbone.forward_intermediates(pixels, indices=range(self.config.backbone.num_stages))
        if self.stage_norms is None:
            return maps
        return [norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) for norm, x in zip(self.stage_norms, maps)]

    def forward(self, pixels: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, num_classes, H, W)``; in training, with an auxiliary head, ``(logits, aux_logits)``."""
        logits, aux = self._outputs(pixels, with_aux=self.training)
        return logits if aux is None else (logits, aux)

    def forward_with_aux(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logits, aux_logits)`` in any mode, both ``(B, num_classes, H, W)`` (``aux_logits`` None without the head)."""
        return self._outputs(pixels, with_aux=True)

    def _outputs(self, pixels: torch.Tensor, with_aux: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        maps = self.forward_features(pixels)
        size = pixels.shape[2:]
        logits = resize(self.head(maps), size)
        if not with_aux or self.aux_head is None:
            return logits, None
        return logits, resize(self.aux_head(maps[self.config.aux_stage]), size)

    def loss(self, outputs: torch.Tensor | tuple[torch.Tensor, torch.Tensor | None], labels: torch.Tensor) -> torch.Tensor:
        """:func:`segmentation_loss` of what :meth:`forward` (or :meth:`forward_with_aux`) returned, with this
        model's auxiliary weight and ignore index: ``labels`` ``(B, H, W)``, 255 where unlabelled."""
        logits, aux = outputs if isinstance(outputs, tuple) else (outputs, None)
        return segmentation_loss(logits, labels, aux, self.config.aux_weight, self.config.ignore_index)

    def reset_classifier(self, num_classes: int, labels: Sequence[str] = ()) -> None:
        """Replace both classifiers with fresh ones for ``num_classes`` classes (optionally named)."""
        self.config = self.config.replace(num_classes=num_classes, labels=tuple(labels))
        for head in (self.head, self.aux_head):
            if head is None:
                continue
            old = head.classifier
            head.classifier = nn.Conv2d(old.in_channels, num_classes, 1).to(old.weight.device, old.weight.dtype)
            nn.init.normal_(head.classifier.weight, std=0.01)
            nn.init.zeros_(head.classifier.bias)

    def sliding_window(
        self, pixels: torch.Tensor, crop: int | tuple[int, int] | None = None, stride: int | tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Logits of a large image from overlapping crops (:func:`sliding_window_logits` with this model).

        ``crop`` defaults to the backbone's ``img_size`` and ``stride`` to two thirds of the
        crop (mmsegmentation's 512 crop, 341 stride). ``(B, C, H, W) -> (B, K, H, W)``.
        """
        crop_hw = _pair(crop, "crop") if crop is not None else self.config.img_size
        stride_hw = _pair(stride, "stride") if stride is not None else tuple(max(1, 2 * c // 3) for c in crop_hw)
        return sliding_window_logits(self, pixels, crop_hw, stride_hw, self.num_classes)  # type: ignore[arg-type]

    @torch.no_grad()
    def predict(
        self, pixels: torch.Tensor, crop: int | tuple[int, int] | None = None, stride: int | tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Class index per pixel, ``(B, C, H, W) -> (B, H, W)`` int64, in evaluation mode.

        With ``crop`` (and optionally ``stride``) the logits come from :meth:`sliding_window`,
        else from one pass over the whole image. The model's mode is restored afterwards.
        """
        was_training = self.training
        self.eval()
        try:
            logits = self(pixels) if crop is None else self.sliding_window(pixels, crop, stride)
        finally:
            self.train(was_training)
        return logits.argmax(dim=1)


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(int(v) for v in value)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"{name} must be a positive int or (height, width), got {value!r}")
    return pair  # type: ignore[return-value]


def window_starts(length: int, crop: int, stride: int) -> list[int]:
    """Where the crops of a sliding window start along one axis of ``length`` pixels.

    Every ``stride`` pixels, with the last crop moved back to end at the border (mmsegmentation's
    'slide' mode); one crop at 0 when ``length <= crop`` (the crop is then the whole axis).
    """
    if length <= crop:
        return [0]
    steps = math.ceil((length - crop) / stride)
    return [min(step * stride, length - crop) for step in range(steps + 1)]


def sliding_window_logits(
    model: Callable[[torch.Tensor], torch.Tensor],
    pixels: torch.Tensor,
    crop: tuple[int, int],
    stride: tuple[int, int],
    num_classes: int,
) -> torch.Tensor:
    """Logits of ``pixels`` from ``model`` run on overlapping crops, averaged where they overlap.

    Crops of ``crop = (h, w)`` pixels (clipped to the image) start every ``stride`` pixels
    along each axis (:func:`window_starts`); each pixel's logits are the mean over the crops
    that hold it. ``(B, C, H, W) -> (B, num_classes, H, W)``. ValueError when the stride
    exceeds the crop (pixels would be left out).
    """
    if stride[0] > crop[0] or stride[1] > crop[1]:
        raise ValueError(f"stride {stride} must not exceed crop {crop}: pixels between crops would get no logits")
    batch, _, height, width = pixels.shape
    total = pixels.new_zeros(batch, num_classes, height, width)
    count = pixels.new_zeros(1, 1, height, width)
    crop_h, crop_w = min(crop[0], height), min(crop[1], width)
    for top in window_starts(height, crop_h, stride[0]):
        for left in window_starts(width, crop_w, stride[1]):
            window = pixels[:, :, top : top + crop_h, left : left + crop_w]
            total[:, :, top : top + crop_h, left : left + crop_w] += model(window)
            count[:, :, top : top + crop_h, left : left + crop_w] += 1
    return total / count


def segmenter_config(backbone: str | SwinConfig, **overrides: object) -> SegmenterConfig:
    """The config of a segmenter on a registered backbone variant (or a :class:`SwinConfig`), with overrides.

    The backbone runs with fixed windows (``fixed_windows``, as the references run it for dense
    prediction); a four-stage variant gets the official 512-pixel input size and drop-path
    rate. ``overrides`` name :class:`SegmenterConfig` fields (``num_classes``, ``channels``,
    ``aux_channels``, ...) or backbone :class:`SwinConfig` fields (``img_size``,
    ``window_size``, ``drop_path_rate``, ...); any other name raises ValueError listing both.
    """
    if isinstance(backbone, SwinConfig):
        base = backbone
    else:
        base = get_config(backbone)
        if backbone not in COMPACT:
            base = base.replace(img_size=SEGMENTATION_SIZE, drop_path_rate=_DROP_PATH.get(backbone, base.drop_path_rate))
    own = {f.name for f in dataclasses.fields(SegmenterConfig)} - {"backbone"}
    backbone_fields = {f.name for f in dataclasses.fields(SwinConfig)} - own
    unknown = sorted(set(overrides) - own - backbone_fields)
    if unknown:
        raise ValueError(
            f"unknown segmenter setting(s) {unknown}; accepted: {sorted(own)} and the backbone's {sorted(backbone_fields)}"
        )
    base = base.replace(fixed_windows=True, **{k: v for k, v in overrides.items() if k in backbone_fields})
    return SegmenterConfig(backbone=base, **{k: v for k, v in overrides.items() if k in own})  # type: ignore[arg-type]


def create_segmenter(backbone: str | SwinConfig, **overrides: object) -> SwinUperNet:
    """A fresh :class:`SwinUperNet` of :func:`segmenter_config`, e.g. ``create_segmenter("swin_t", num_classes=150)``."""
    return SwinUperNet(segmenter_config(backbone, **overrides))


def _register() -> None:
    for variant in VARIANTS:
        register_task_model(PREFIX + variant, lambda variant=variant, **overrides: create_segmenter(variant, **overrides))


_register()
