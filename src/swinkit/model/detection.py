"""Object detection and instance segmentation: a Swin with FPN inside torchvision's Faster / Mask R-CNN.

The backbone is the one of the official detection repository: the output of every stage
(before the next merging; strides ``4 * 2^i`` for patch 4) through a LayerNorm of its own
(``norm{i}`` there, :attr:`SwinFPN.stage_norms` here), as channels-first maps, into
torchvision's :class:`~torchvision.ops.FeaturePyramidNetwork` with the extra max-pooled
level (:class:`~torchvision.ops.feature_pyramid_network.LastLevelMaxPool`). The heads are
torchvision's own: :class:`~torchvision.models.detection.FasterRCNN` and
:class:`~torchvision.models.detection.MaskRCNN` with an
:class:`~torchvision.models.detection.anchor_utils.AnchorGenerator` of one size tuple per
level (the pooled one included) and :class:`~torchvision.ops.MultiScaleRoIAlign` over the
stage levels. Any swinkit Swin (V1, V2, the three-stage compact ladder) is a backbone: the
pyramid has as many levels as the Swin has stages, plus the pooled one.

Class counts follow torchvision: ``num_classes`` includes the background (label 0), and the
foreground labels ``1..num_classes-1`` are named by ``labels[0..]``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from swinkit.model.registry import COMPACT, get_config, register_task_model
from swinkit.model.swin import SwinConfig, SwinTransformer

__all__ = [
    "DETECTOR_NAMES",
    "DetectorConfig",
    "SwinFPN",
    "build_detector",
    "default_anchor_sizes",
    "detector_config",
]

#: ImageNet normalisation, which torchvision's detectors and the official recipe apply.
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
#: Width of the box head's two fully connected layers (torchvision's TwoMLPHead).
BOX_REPRESENTATION = 1024


def default_anchor_sizes(backbone: SwinConfig) -> tuple[tuple[int, ...], ...]:
    """One anchor size per pyramid level: 8 strides of the level (32 ... 512 for patch 4, as torchvision's)."""
    return tuple((8 * backbone.patch_size * 2**level,) for level in range(backbone.num_stages + 1))


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    """Everything that defines a Swin detector; stored as ``config.json`` beside its weights.

    ``backbone`` is the Swin (its classifier fields are ignored: the detector has no
    classifier head). ``num_classes`` counts the background as torchvision does, and
    ``labels`` names the foreground classes (``num_classes - 1`` names, or none);
    ``category_ids`` gives, per foreground class, the dataset's category id (COCO files need
    not number them contiguously; empty means ``1..num_classes-1``). ``anchor_sizes`` holds one
    tuple per pyramid level, the pooled one included (stages + 1 levels, the same count in
    each); ``aspect_ratios`` (height / width) apply at every level. ``min_size`` and
    ``max_size`` are the resize of torchvision's transform (shorter side, longer side cap);
    several ``min_size`` values make training multi-scale (torchvision picks one at random
    per image; evaluation uses the last), as the official recipe's 480..800.
    ``masks`` builds Mask R-CNN, else Faster R-CNN. ``stage_norms`` puts the official
    LayerNorm on each stage output; ``frozen_stages`` freezes -1: nothing, 0: the patch
    embedding, ``k``: the patch embedding and the first ``k`` stages. The ``rpn_*`` and
    ``box_*`` numbers are those of torchvision's heads (proposals kept per level before and in
    all after NMS; detections and score threshold per image; proposals sampled per image to
    train the box head). ``mask_head_channels`` is the width of Mask R-CNN's four mask convolutions.
    """

    backbone: SwinConfig
    num_classes: int = 91
    labels: tuple[str, ...] = ()
    category_ids: tuple[int, ...] = ()
    masks: bool = False
    anchor_sizes: tuple[tuple[int, ...], ...] = ()
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    min_size: int | tuple[int, ...] = 800
    max_size: int = 1333
    out_channels: int = 256
    stage_norms: bool = True
    frozen_stages: int = -1
    image_mean: tuple[float, ...] = _MEAN
    image_std: tuple[float, ...] = _STD
    rpn_proposals_train: int = 2000
    rpn_proposals_test: int = 1000
    box_detections_per_img: int = 100
    box_score_thresh: float = 0.05
    box_batch_size_per_image: int = 512
    mask_head_channels: int = 256

    def __post_init__(self) -> None:
        backbone = self.backbone
        if isinstance(backbone, Mapping):
            backbone = SwinConfig(**backbone)
        if not isinstance(backbone, SwinConfig):
            raise ValueError(f"backbone must be a SwinConfig or a dict of its fields, got {type(backbone).__name__}")
        object.__setattr__(self, "backbone", backbone.replace(num_classes=0, labels=()))
        object.__setattr__(self, "labels", tuple(str(label) for label in self.labels))
        object.__setattr__(self, "category_ids", tuple(int(i) for i in self.category_ids))
        sizes = tuple(tuple(int(s) for s in level) for level in self.anchor_sizes) or default_anchor_sizes(backbone)
        object.__setattr__(self, "anchor_sizes", sizes)
        object.__setattr__(self, "aspect_ratios", tuple(float(r) for r in self.aspect_ratios))
        object.__setattr__(self, "image_mean", tuple(float(v) for v in self.image_mean))
        object.__setattr__(self, "image_std", tuple(float(v) for v in self.image_std))
        if not isinstance(self.min_size, int):
            sizes = tuple(int(v) for v in self.min_size)
            object.__setattr__(self, "min_size", sizes[0] if len(sizes) == 1 else sizes)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first impossible setting and what is accepted."""
        foreground = self.num_classes - 1
        if self.num_classes < 2:
            raise ValueError(f"num_classes counts the background too and must be >= 2, got {self.num_classes}")
        for name in ("labels", "category_ids"):
            given = getattr(self, name)
            if given and len(given) != foreground:
                raise ValueError(
                    f"{name} has {len(given)} entries but num_classes {self.num_classes} means {foreground} "
                    f"foreground classes; give one per foreground class (the background has none), or none"
                )
        if len(set(self.category_ids)) != len(self.category_ids):
            raise ValueError(f"category_ids must be distinct, got {self.category_ids}")
        levels = self.backbone.num_stages + 1
        if len(self.anchor_sizes) != levels:
            raise ValueError(
                f"anchor_sizes needs one tuple per pyramid level: {levels} for a {self.backbone.num_stages}-stage "
                f"backbone (one per stage plus the pooled level), got {len(self.anchor_sizes)}"
            )
        if len({len(level) for level in self.anchor_sizes}) != 1 or min(map(min, self.anchor_sizes)) < 1:
            raise ValueError(
                f"every level needs the same number of positive anchor sizes (one RPN head serves all levels), "
                f"got {self.anchor_sizes}"
            )
        if not self.aspect_ratios or min(self.aspect_ratios) <= 0:
            raise ValueError(f"aspect_ratios must be positive height/width ratios, got {self.aspect_ratios}")
        if not self.min_sizes or not all(1 <= size <= self.max_size for size in self.min_sizes):
            raise ValueError(
                f"need 1 <= min_size <= max_size for every min_size, got min_size {self.min_size}, "
                f"max_size {self.max_size}"
            )
        if not -1 <= self.frozen_stages <= self.backbone.num_stages:
            raise ValueError(
                f"frozen_stages must be -1 (none), 0 (patch embedding) or up to {self.backbone.num_stages} "
                f"(the stages), got {self.frozen_stages}"
            )
        channels = self.backbone.in_chans
        if len(self.image_mean) != channels or len(self.image_std) != channels or min(self.image_std) <= 0:
            raise ValueError(
                f"image_mean and image_std need {channels} values (one per input channel, std > 0), got "
                f"{self.image_mean} and {self.image_std}"
            )
        positive = ("out_channels", "rpn_proposals_train", "rpn_proposals_test", "box_detections_per_img")
        for name in (*positive, "box_batch_size_per_image", "mask_head_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not 0.0 <= self.box_score_thresh < 1.0:
            raise ValueError(f"box_score_thresh must be in [0, 1), got {self.box_score_thresh}")

    @property
    def min_sizes(self) -> tuple[int, ...]:
        """The shorter sides training picks from; the last is the one of evaluation."""
        return (self.min_size,) if isinstance(self.min_size, int) else self.min_size

    @property
    def foreground_ids(self) -> tuple[int, ...]:
        """The dataset's category id of each foreground label ``1..num_classes-1``."""
        return self.category_ids or tuple(range(1, self.num_classes))

    def replace(self, **changes: object) -> DetectorConfig:
        """A copy with some fields changed; unknown field names raise ValueError."""
        fields = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - fields)
        if unknown:
            raise ValueError(f"unknown detector config field(s) {unknown}; accepted: {sorted(fields)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields, the backbone as its own dict."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["backbone"] = self.backbone.to_dict()
        data["anchor_sizes"] = [list(level) for level in self.anchor_sizes]
        data["min_size"] = self.min_size if isinstance(self.min_size, int) else list(self.min_size)
        for key in ("labels", "category_ids", "aspect_ratios", "image_mean", "image_std"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> DetectorConfig:
        """The config :meth:`to_dict` wrote; unknown keys raise ValueError listing the accepted ones."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown or "backbone" not in data:
            raise ValueError(
                f"not a detector config: unknown keys {unknown}, backbone given: {'backbone' in data}; "
                f"accepted keys: {sorted(fields)}"
            )
        return cls(**data)  # type: ignore[arg-type]


class SwinFPN(nn.Module):
    """A Swin's stage outputs, each LayerNorm'ed, through a feature pyramid with a max-pooled extra level.

    ``forward``: ``(B, in_chans, H, W) -> OrderedDict`` of ``(B, out_channels, h_i, w_i)`` maps
    keyed ``"0".."{n-1}"`` (stage ``i``, stride ``patch * 2^i``) and ``"pool"`` (stride of the last
    stage times 2), the interface torchvision's detectors take (``out_channels`` set). The
    Swin's classifier norm and head are not part of it. Frozen parts (``frozen_stages``) have
    no gradients and stay in evaluation mode (no drop path) when the model trains.
    """

    def __init__(
        self, config: SwinConfig, out_channels: int = 256, stage_norms: bool = True, frozen_stages: int = -1
    ) -> None:
        super().__init__()
        self.body = SwinTransformer(config.replace(num_classes=0, labels=()))
        # The classifier's final norm: the detector has one norm per stage instead (``stage_norms``).
        self.body.norm = nn.Identity()
        dims = self.body.config.stage_dims
        self.stage_norms = nn.ModuleList(
            nn.LayerNorm(dim, eps=config.layer_norm_eps) if stage_norms else nn.Identity() for dim in dims
        )
        self.fpn = FeaturePyramidNetwork(list(dims), out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels
        self.frozen_stages = frozen_stages
        for module in self.frozen_modules():
            module.requires_grad_(False)

    def frozen_modules(self) -> list[nn.Module]:
        """The patch embedding and the first ``frozen_stages`` stages (none for -1)."""
        if self.frozen_stages < 0:
            return []
        return [self.body.patch_embed, *self.body.stages[: self.frozen_stages]]

    def train(self, mode: bool = True) -> SwinFPN:
        """Set training mode, keeping the frozen parts in evaluation mode (as the official backbone does)."""
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()
        return self

    def forward(self, images: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        maps = self.body.forward_intermediates(images, indices=range(len(self.stage_norms)))
        features = OrderedDict(
            (str(index), norm(stage.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
            for index, (norm, stage) in enumerate(zip(self.stage_norms, maps))
        )
        return self.fpn(features)


def build_detector(config: DetectorConfig) -> FasterRCNN | MaskRCNN:
    """Faster R-CNN (or Mask R-CNN with ``config.masks``) from torchvision on a :class:`SwinFPN`.

    The model is torchvision's: in training ``model(images, targets)`` returns the losses, in
    evaluation ``model(images)`` returns per image ``boxes`` (XYXY, pixels of the input),
    ``labels``, ``scores`` (and ``masks``, ``(N, 1, H, W)`` probabilities). ``model.config``
    holds ``config``.
    """
    backbone = SwinFPN(config.backbone, config.out_channels, config.stage_norms, config.frozen_stages)
    levels = [str(index) for index in range(config.backbone.num_stages)]
    anchors = AnchorGenerator(config.anchor_sizes, (config.aspect_ratios,) * len(config.anchor_sizes))
    common = dict(
        min_size=config.min_sizes,
        max_size=config.max_size,
        image_mean=list(config.image_mean),
        image_std=list(config.image_std),
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=config.rpn_proposals_train,
        rpn_post_nms_top_n_train=config.rpn_proposals_train,
        rpn_pre_nms_top_n_test=config.rpn_proposals_test,
        rpn_post_nms_top_n_test=config.rpn_proposals_test,
        box_roi_pool=MultiScaleRoIAlign(levels, output_size=7, sampling_ratio=2),
        box_detections_per_img=config.box_detections_per_img,
        box_score_thresh=config.box_score_thresh,
        box_batch_size_per_image=config.box_batch_size_per_image,
    )
    if not config.masks:
        model = FasterRCNN(backbone, num_classes=config.num_classes, **common)
        model.config = config
        return model
    # With a mask predictor given torchvision takes no class count, so the box predictor is given too.
    width = config.mask_head_channels
    model = MaskRCNN(
        backbone,
        box_predictor=FastRCNNPredictor(BOX_REPRESENTATION, config.num_classes),
        mask_roi_pool=MultiScaleRoIAlign(levels, output_size=14, sampling_ratio=2),
        mask_head=MaskRCNNHeads(config.out_channels, (width,) * 4, dilation=1),
        mask_predictor=MaskRCNNPredictor(width, width, config.num_classes),
        **common,
    )
    model.config = config
    return model


def detector_config(
    name: str, backbone: SwinConfig | Mapping[str, object] | None = None, **fields: object
) -> DetectorConfig:
    """The config of a registered detector (``maskrcnn_swin_t``, ...) with fields changed.

    ``backbone`` is a SwinConfig, or overrides of the named variant's (``{"embed_dim": 32}``);
    ``fields`` are other :class:`DetectorConfig` fields. An unknown name raises ValueError
    listing the known ones.
    """
    if name not in DETECTOR_NAMES:
        raise ValueError(f"unknown detector {name!r}; known: {', '.join(DETECTOR_NAMES)}")
    head, variant = name.split("_", 1)
    swin = backbone if isinstance(backbone, SwinConfig) else get_config(variant, **dict(backbone or {}))
    return DetectorConfig(backbone=swin, masks=head == "maskrcnn", **fields)  # type: ignore[arg-type]


def _build_named(name: str, **fields: object) -> FasterRCNN | MaskRCNN:
    return build_detector(detector_config(name, **fields))


#: Backbones of the registered detectors: Swin and Swin V2 T/S/B at 224 / 256, and the compact ladder.
_DETECTOR_BACKBONES = ("swin_t", "swin_s", "swin_b", "swinv2_t", "swinv2_s", "swinv2_b", *COMPACT)
#: The registered detector names: ``fasterrcnn_<backbone>`` and ``maskrcnn_<backbone>``.
DETECTOR_NAMES: tuple[str, ...] = tuple(
    f"{head}_{variant}" for head in ("fasterrcnn", "maskrcnn") for variant in _DETECTOR_BACKBONES
)


def _register() -> None:
    for name in DETECTOR_NAMES:
        register_task_model(name, functools.partial(_build_named, name))


_register()
