"""Reading a checkpoint of any understood format and loading it into a swinkit model.

Loading adapts a checkpoint the way fine-tuning needs: a head of another size is dropped
(and re-initialised), bias tables of another window are resized by bicubic interpolation
(Sec. 3.2, as the official ``load_pretrained`` does), and another input size needs nothing.
Swin V2 weights need no resize for another window: the model keeps the checkpoint's windows
as its pretrained windows (V2 Sec. 3.3), as the fine-tuned releases do.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import warnings
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from swinkit.checkpoints import io
from swinkit.checkpoints.errors import CheckpointError
from swinkit.checkpoints.formats import FORMATS, SAVE_FORMATS, detect_format, resolve_format
from swinkit.checkpoints.architecture import infer_config, stage_windows
from swinkit.checkpoints.layout import swin_version
from swinkit.checkpoints.simmim_layout import split_pretraining
from swinkit.preprocessing import Preprocessing
from swinkit.model import SwinConfig, SwinTransformer, get_config

logger = logging.getLogger(__name__)

Source = str | os.PathLike[str]
_HEAD = "head."
_TABLE = "relative_position_bias_table"
#: Config fields that say how the weights compute rather than their shapes: they follow the
#: checkpoint (its stored config, or what its format implies) even when a variant name is given.
CARRIED_FIELDS = ("patch_remainder",)
_VERSION_PARTS = {
    1: "relative position bias tables and a fused qkv bias",
    2: "cosine attention (logit_scale), a position bias MLP (cpb_mlp) and q/v biases",
}


@dataclasses.dataclass
class Checkpoint:
    """A checkpoint read into swinkit's names, with what came with it.

    ``hints`` are config fields read from a ``config.json`` or ``swinkit.json`` (input size,
    dropout, labels, ...) or implied by the format (torchvision's ``patch_remainder="crop"``);
    ``preprocessing`` is None when the checkpoint does not say; ``buffers`` are the stored
    coordinate tables of V2 weights, read only to tell their windows; ``pretraining`` holds a
    SimMIM checkpoint's mask token and decoder under swinkit's names
    (:mod:`swinkit.checkpoints.simmim_layout`), empty for other checkpoints.
    """

    source: str
    format: str
    state_dict: dict[str, torch.Tensor]
    hints: dict[str, object]
    preprocessing: Preprocessing | None
    unmapped: list[str]
    ignored: list[str]
    buffers: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    pretraining: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)

    @property
    def version(self) -> int:
        """1 for Swin V1 weights, 2 for Swin V2 (told by the V2 attention's logit scales, placed or not)."""
        return swin_version([*self.state_dict, *self.unmapped])

    @property
    def labels(self) -> tuple[str, ...]:
        """Class names stored with the weights (Hugging Face ``id2label``, timm ``label_names``, swinkit labels)."""
        return tuple(self.hints.get("labels", ()))  # type: ignore[arg-type]

    @property
    def num_classes(self) -> int:
        """Classes of the stored head (0 for a checkpoint without one)."""
        head = self.state_dict.get("head.weight")
        return 0 if head is None else head.shape[0]

    def config(self) -> SwinConfig:
        """The config of the stored model: architecture from the shapes, the rest from the stored config."""
        return infer_config(self.state_dict, self.hints, self.source, self.buffers)


@dataclasses.dataclass
class LoadReport:
    """What :func:`load_checkpoint` did: the keys it dropped, resized, left initialised, or could not place."""

    source: str
    format: str
    dropped: list[str] = dataclasses.field(default_factory=list)
    initialised: list[str] = dataclasses.field(default_factory=list)
    resized: list[str] = dataclasses.field(default_factory=list)
    missing: list[str] = dataclasses.field(default_factory=list)
    unexpected: list[str] = dataclasses.field(default_factory=list)
    ignored: list[str] = dataclasses.field(default_factory=list)


def read_state_dict(source: Source) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint exactly as stored (foreign names), read safely from a file, directory or Hub id."""
    return io.read_weights(io.locate(source).weights)


def read_checkpoint(source: Source, format: str | None = None) -> Checkpoint:
    """Read a checkpoint and rename it to swinkit's keys, detecting its format unless ``format`` is given.

    ``source`` is a weights file, a Hugging Face / timm / swinkit directory, a swinkit run
    directory (its ``best/``, else ``last/``) or a Hub id. ``format`` is one of
    ``native``, ``hf``, ``torchvision``, ``official``, ``timm`` (or an alias such as ``transformers``).
    """
    located = io.locate(source)
    return convert_checkpoint(located, io.read_weights(located.weights), format)


def convert_checkpoint(located: io.Located, raw: Mapping[str, torch.Tensor], format: str | None = None) -> Checkpoint:
    """:func:`read_checkpoint` for tensors already read from ``located``: detect the format, rename, read the metadata.

    A SimMIM checkpoint's mask token and decoder are set aside in ``Checkpoint.pretraining``.
    """
    raw, pretraining = split_pretraining(raw)
    name = resolve_format(format) if format is not None else detect_format(raw, str(located.weights))
    converted = FORMATS[name].to_native(raw)
    # What the format's own model implies (torchvision's crop), unless stored metadata says otherwise.
    hints: dict[str, object] = dict(getattr(FORMATS[name], "IMPLIED_FIELDS", {}))
    preprocessing = None
    for export_format in SAVE_FORMATS:
        found = FORMATS[export_format].read_metadata(located.metadata)
        if found is not None:
            hints, preprocessing = hints | found[0], found[1]
            break
    return Checkpoint(
        located.source,
        name,
        converted.state_dict,
        hints,
        preprocessing,
        converted.unmapped,
        converted.ignored,
        converted.buffers,
        pretraining,
    )


def resize_relative_position_bias(table: torch.Tensor, window_size: int) -> torch.Tensor:
    """Resize a bias table ``B_hat`` (Eq. 4) to another window by bicubic interpolation.

    ``((2M-1)^2, heads) -> ((2W-1)^2, heads)``: each head's ``(2M-1) x (2M-1)`` grid is
    interpolated to ``(2W-1) x (2W-1)`` as the official fine-tuning code does (13x13 -> 23x23
    for 7 -> 12). Raises ValueError for a table that is not a square grid.
    """
    side = math.isqrt(table.shape[0]) if table.dim() == 2 else 0
    if table.dim() != 2 or side * side != table.shape[0] or side % 2 == 0:
        raise ValueError(f"a relative position bias table must be ((2M-1)^2, heads), got shape {tuple(table.shape)}")
    if window_size < 1:
        raise ValueError(f"window_size must be a positive integer, got {window_size}")
    new_side = 2 * window_size - 1
    heads = table.shape[1]
    grid = table.detach().float().permute(1, 0).reshape(1, heads, side, side)
    resized = F.interpolate(grid, size=(new_side, new_side), mode="bicubic", align_corners=False)
    return resized.reshape(heads, new_side * new_side).permute(1, 0).to(table.dtype).contiguous()


def load_checkpoint(
    model: SwinTransformer, source: Source | Checkpoint, format: str | None = None, strict: bool = True
) -> LoadReport:
    """Load a checkpoint of any understood format into ``model``, adapting it for fine-tuning.

    A head of another number of classes (or none in the model) is dropped, with a warning
    naming the dropped keys, and the model's own head kept (fresh from :func:`~swinkit.checkpoints.factory.create_model`); bias tables of
    another window are resized (:func:`resize_relative_position_bias`); labels stored with
    the weights are kept when the head is loaded. A SimMIM checkpoint's mask token and decoder
    are dropped (listed in ``report.dropped``): the model takes the encoder. Any other shape difference raises
    CheckpointError naming the key and both shapes; with ``strict`` (the default) missing or
    unplaceable keys raise too. Sets ``model.pretrained_cfg`` (preprocessing, source, format)
    and ``model.load_report``, and returns the report.
    """
    checkpoint = source if isinstance(source, Checkpoint) else read_checkpoint(source, format)
    target = model.state_dict()
    tensors = dict(checkpoint.state_dict)
    report = LoadReport(checkpoint.source, checkpoint.format, ignored=list(checkpoint.ignored))
    _check_version(checkpoint, model.config.version)
    report.resized = _resize_tables(tensors, target, model.config.window_size)
    _check_shapes(tensors, target, checkpoint.source)
    head = {key: tensors.pop(key) for key in [key for key in tensors if key.startswith(_HEAD)]}
    head_fits = all(key in target and target[key].shape == tensor.shape for key, tensor in head.items())
    if head_fits:
        tensors.update(head)
    report.dropped = sorted(checkpoint.pretraining) + ([] if head_fits else sorted(head))
    report.initialised = sorted(key for key in target if key.startswith(_HEAD) and key not in tensors)
    report.missing = sorted(key for key in target if key not in tensors and not key.startswith(_HEAD))
    report.unexpected = sorted(checkpoint.unmapped + [key for key in tensors if key not in target])
    if strict and (report.missing or report.unexpected):
        raise CheckpointError(
            f"{checkpoint.source} ({checkpoint.format} format) does not fit the model: missing keys "
            f"[{_listing(report.missing)}]; keys with no place in the model [{_listing(report.unexpected)}]. "
            f"Pass strict=False to load what fits"
        )
    if checkpoint.pretraining:
        logger.info("%s: dropped SimMIM's mask token and decoder; the model takes the encoder", checkpoint.source)
    if not head_fits:
        shapes = ", ".join(f"{key} {tuple(head[key].shape)}" for key in sorted(head))
        warnings.warn(
            f"{checkpoint.source}: the checkpoint's head does not fit a model of {model.num_classes} classes; "
            f"dropped {shapes} and kept the model's own (re-initialised) head",
            stacklevel=2,
        )
    model.load_state_dict({key: tensor for key, tensor in tensors.items() if key in target}, strict=False)
    if (
        head_fits
        and checkpoint.labels
        and len(checkpoint.labels) == model.num_classes
        and not model.config.labels
    ):
        model.config = model.config.replace(labels=checkpoint.labels)
    default = Preprocessing.default(model.config.img_size, model.config.in_chans)
    preprocessing = (
        checkpoint.preprocessing.for_model(model.config.img_size, model.config.in_chans)
        if checkpoint.preprocessing
        else default
    )
    model.pretrained_cfg = {**preprocessing.to_dict(), "source": checkpoint.source, "format": checkpoint.format}
    model.load_report = report
    return report


def pretrained_windows_for(config: SwinConfig, checkpoint: Checkpoint) -> SwinConfig:
    """``config`` with the windows of Swin V2 weights it changes the window of, as its pretrained windows.

    The continuous position bias of V2 (Sec. 3.3) normalises coordinates by the window of
    pre-training; a model fine-tuned at another window keeps it per stage, as the released
    ``swinv2_*_window12to16_192to256`` models keep (12, 12, 12, 6): the windows the stages of
    the checkpoint ran with (the last stage's 6x6 map clamps its window). The checkpoint's own
    pretrained windows, when it has them, are kept instead. A V1 config, one with pretrained
    windows, one of the checkpoint's window, or one for V2 weights that do not tell their
    window (no ``config.json`` and no stored coordinate tables) is returned as it is.
    """
    tells_window = "window_size" in checkpoint.hints or bool(checkpoint.buffers)
    if config.version != 2 or checkpoint.version != 2 or config.pretrained_window_sizes or not tells_window:
        return config
    source = checkpoint.config()
    if source.window_size == config.window_size:
        return config
    ran = stage_windows(source)
    pretrained = tuple(own or window for own, window in zip(source.pretrained_window_sizes or (0,) * len(ran), ran))
    logger.info("window %d of %s becomes pretrained windows %s", source.window_size, checkpoint.source, pretrained)
    return config.replace(pretrained_window_sizes=pretrained)


def _resize_tables(tensors: dict[str, torch.Tensor], target: Mapping[str, torch.Tensor], window_size: int) -> list[str]:
    resized = []
    for key, tensor in tensors.items():
        wanted = target.get(key)
        if (
            key.endswith(_TABLE)
            and wanted is not None
            and wanted.shape != tensor.shape
            and wanted.shape[1] == tensor.shape[1]
        ):
            tensors[key] = resize_relative_position_bias(tensor, window_size)
            resized.append(key)
    if resized:
        logger.info("resized %d relative position bias tables to window %d", len(resized), window_size)
    return resized


def _check_version(checkpoint: Checkpoint, version: int) -> None:
    if checkpoint.version != version:
        example = "swinv2_t" if checkpoint.version == 2 else "swin_t"
        raise CheckpointError(
            f"{checkpoint.source} holds Swin V{checkpoint.version} weights ({checkpoint.format} layout) but the model "
            f"is Swin V{version}: the weights have {_VERSION_PARTS[checkpoint.version]}, a V{version} model has "
            f"{_VERSION_PARTS[version]}. Build a V{checkpoint.version} model (e.g. '{example}'), or leave out the "
            f"model name to infer it from the checkpoint"
        )


def _check_shapes(tensors: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], source: str) -> None:
    mismatched = [
        f"{key} has shape {tuple(tensor.shape)} in the checkpoint but {tuple(target[key].shape)} in the model"
        for key, tensor in tensors.items()
        if key in target and target[key].shape != tensor.shape and not key.startswith(_HEAD)
    ]
    if mismatched:
        raise CheckpointError(
            f"{source} does not fit the model: {_listing(mismatched)}; build the model with the checkpoint's "
            f"architecture (leave out the model name to infer it)"
        )


def _listing(items: list[str], limit: int = 6) -> str:
    if not items:
        return "none"
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


def create_classifier(
    located: io.Located,
    raw: Mapping[str, torch.Tensor],
    name: str | None = None,
    format: str | None = None,
    strict: bool = True,
    **overrides: object,
) -> SwinTransformer:
    """A classifier (or backbone) from tensors already read from ``located``.

    The classifier part of :func:`~swinkit.checkpoints.factory.create_model`.

    Without a ``name`` the variant is inferred from the checkpoint (its ``config.json`` or the
    tensor shapes), and the number of classes and labels follow the checkpoint unless overridden.
    ``overrides`` replace config fields: another ``num_classes`` re-initialises the head,
    another ``window_size`` resizes the V1 bias tables, another ``img_size`` needs nothing.
    A Swin V2 model of another window than its checkpoint's keeps the checkpoint's windows
    as ``pretrained_window_sizes`` (see :func:`pretrained_windows_for`) unless it has its own
    or they are overridden. ``patch_remainder`` follows the checkpoint ("crop" for torchvision's
    weights, whose model crops; the stored value for an export) unless overridden.
    """
    checkpoint = convert_checkpoint(located, raw, format)
    config = get_config(name) if name is not None else checkpoint.config()
    _check_version(checkpoint, config.version)  # before building a model the weights cannot fit
    carried = {key: checkpoint.hints[key] for key in CARRIED_FIELDS if key in checkpoint.hints}
    changes = {"num_classes": checkpoint.num_classes, "labels": ()} | carried | overrides  # labels follow a loaded head
    config = config.replace(**changes)
    if "pretrained_window_sizes" not in overrides:
        config = pretrained_windows_for(config, checkpoint)
    model = SwinTransformer(config)
    load_checkpoint(model, checkpoint, strict=strict)
    return model
