"""Renaming state-dict keys between a foreign layout and swinkit's, driven by a table.

A :class:`Layout` says, as data, where a foreign checkpoint keeps each of swinkit's modules:
the modules outside the stages, the prefix of a block and of a patch merging (with how a
stage index is numbered there), and the names inside a block and a merging. The same table
renames in both directions. Swinkit's own names are::

    patch_embed.proj  patch_embed.norm  norm  head
    stages.{s}.blocks.{b}.{norm1, attn.qkv, attn.proj, attn.relative_position_bias_table, norm2, mlp.fc1, mlp.fc2}
    stages.{s}.blocks.{b}.attn.{q_bias, v_bias, logit_scale, cpb_mlp}   (Swin V2, which has no bias table)
    stages.{s}.downsample.{norm, reduction}     (s >= 1: merging at the start of a stage)

A layout's table covers both versions: a V1 checkpoint simply has none of the V2 names.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Collection, Mapping

import torch

#: Module names inside a swinkit block, which several layouts share verbatim.
BLOCK_MODULES = ("norm1", "attn.qkv", "attn.proj", "attn.relative_position_bias_table", "norm2", "mlp.fc1", "mlp.fc2")
#: Swin V2 parameters inside a swinkit block: the q and v biases (the k bias is zero), the
#: per-head logit scale of the cosine attention and the continuous position bias MLP.
V2_BLOCK_MODULES = ("attn.q_bias", "attn.v_bias", "attn.logit_scale", "attn.cpb_mlp")
#: Buffers inside a block that tell the window a checkpoint was saved with (Swin V2 keeps
#: no bias table, so the window is otherwise not in the shapes); read, never loaded.
WINDOW_BUFFERS = ("attn.relative_coords_table",)
#: The parameter every Swin V2 layout has and no V1 layout: the cosine attention's logit scale.
V2_MARKER = "logit_scale"
#: Module names inside a patch merging, shared by every layout.
MERGE_MODULES = (("norm", "norm"), ("reduction", "reduction"))
#: Buffers some layouts save; they are recomputed, never loaded.
IGNORED_BUFFERS = ("relative_position_index", "attn_mask", "relative_coords_table")

_NATIVE_BLOCK = "stages.{stage}.blocks.{block}"
_NATIVE_MERGE = "stages.{stage}.downsample"

Pairs = tuple[tuple[str, str], ...]


def same_names(names: tuple[str, ...]) -> Pairs:
    """``(name, name)`` pairs for modules a layout names as swinkit does."""
    return tuple((name, name) for name in names)


class Renaming:
    """A table renaming keys both ways: subclasses give ``_rename(key, to_native)``."""

    def to_native(self, key: str) -> str | None:
        """The swinkit name of a foreign key, or None when the table has no place for it."""
        return self._rename(key, to_native=True)

    def from_native(self, key: str) -> str | None:
        """The foreign name of a swinkit key, or None when the layout has no place for it."""
        return self._rename(key, to_native=False)

    def _rename(self, key: str, to_native: bool) -> str | None:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Layout(Renaming):
    """Where a foreign layout keeps each swinkit module; pairs are ``(foreign, native)``.

    A foreign stage index is ``scale * native + offset``: ``(1, -1)`` for merging stored at
    the end of the previous stage, ``(2, 1)`` for torchvision's interleaved ``features``.
    When several foreign names map to one native name, the first is the one written.
    """

    modules: Pairs
    block: str
    block_modules: Pairs
    merge: str
    merge_stage: tuple[int, int]
    block_stage: tuple[int, int] = (1, 0)
    merge_modules: Pairs = MERGE_MODULES

    @functools.cached_property
    def _parts(self) -> tuple[tuple[str, str, Pairs, tuple[int, int]], ...]:
        return (
            (self.block, _NATIVE_BLOCK, self.block_modules, self.block_stage),
            (self.merge, _NATIVE_MERGE, self.merge_modules, self.merge_stage),
        )

    def _rename(self, key: str, to_native: bool) -> str | None:
        source, target = (0, 1) if to_native else (1, 0)
        renamed = _rename_module(key, self.modules, source, target)
        if renamed is not None:
            return renamed
        for foreign, native, inner, (scale, offset) in self._parts:
            pattern, template = (foreign, native) if to_native else (native, foreign)
            match = _template_regex(pattern).match(key)
            if match is None:
                continue
            stage = int(match["stage"])
            stage, remainder = divmod(stage - offset, scale) if to_native else (stage * scale + offset, 0)
            if remainder or stage < 0:
                continue
            rest = _rename_module(match["rest"], inner, source, target)
            if rest is not None:
                return template.format(stage=stage, block=match.groupdict().get("block")) + "." + rest
        return None


def _rename_module(key: str, pairs: Pairs, source: int, target: int) -> str | None:
    for pair in pairs:
        prefix = pair[source]
        if key == prefix or key.startswith(prefix + "."):
            return pair[target] + key[len(prefix) :]
    return None


@functools.cache
def _template_regex(template: str) -> re.Pattern[str]:
    pattern = re.escape(template).replace(r"\{stage\}", r"(?P<stage>\d+)").replace(r"\{block\}", r"(?P<block>\d+)")
    return re.compile(pattern + r"\.(?P<rest>.+)$")


@dataclasses.dataclass
class Converted:
    """A state dict renamed to swinkit's names, with the keys that were skipped.

    ``buffers`` holds the ignored buffers the layout can place (``relative_coords_table``,
    under swinkit's block names): they are never loaded, only read to tell the window.
    """

    state_dict: dict[str, torch.Tensor]
    unmapped: list[str]
    ignored: list[str]
    buffers: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)


def swin_version(keys: Collection[str]) -> int:
    """2 for Swin V2 weights in any layout (its attention has a per-head ``logit_scale``), else 1."""
    return 2 if any(key.endswith(V2_MARKER) for key in keys) else 1


def is_ignored(key: str) -> bool:
    """Whether ``key`` is a buffer that layouts save but swinkit recomputes."""
    return key.rsplit(".", 1)[-1] in IGNORED_BUFFERS


def rename_to_native(state_dict: Mapping[str, torch.Tensor], layout: Layout | None) -> Converted:
    """Rename every key of a foreign state dict through ``layout`` (None: already swinkit's names)."""
    converted = Converted({}, [], [])
    for key, tensor in state_dict.items():
        if is_ignored(key):
            converted.ignored.append(key)
            native = key if layout is None else layout.to_native(key)
            if native is not None and native.endswith(WINDOW_BUFFERS):
                converted.buffers[native] = tensor
            continue
        native = key if layout is None else layout.to_native(key)
        if native is None:
            converted.unmapped.append(key)
        else:
            converted.state_dict[native] = tensor
    return converted


def rename_from_native(state_dict: Mapping[str, torch.Tensor], layout: Layout) -> dict[str, torch.Tensor]:
    """Rename a swinkit state dict into ``layout``; a key the layout cannot hold raises ValueError."""
    renamed = {}
    for key, tensor in state_dict.items():
        foreign = layout.from_native(key)
        if foreign is None:
            raise ValueError(f"the target layout has no place for swinkit key {key!r}")
        renamed[foreign] = tensor
    return renamed


#: UperNet's modules as mmsegmentation names them (transformers keeps the names) and as swinkit does,
#: ``(foreign, native)``; ``{stage}`` is a branch or level index, ``{classifier}`` the layout's classifier name.
UPERNET_MODULES = (
    ("decode_head.psp_modules.{stage}.1", "head.ppm.branches.{stage}.conv"),
    ("decode_head.bottleneck", "head.ppm.bottleneck"),
    ("decode_head.lateral_convs.{stage}", "head.laterals.{stage}"),
    ("decode_head.fpn_convs.{stage}", "head.fpn_convs.{stage}"),
    ("decode_head.fpn_bottleneck", "head.fuse"),
    ("decode_head.{classifier}", "head.classifier"),
    ("auxiliary_head.convs.{stage}", "aux_head.convs.{stage}"),
    ("auxiliary_head.{classifier}", "aux_head.classifier"),
)


@dataclasses.dataclass(frozen=True)
class HeadLayout(Renaming):
    """Where a foreign UperNet checkpoint keeps swinkit's head modules.

    ``norm`` is its name for a conv module's BatchNorm (mmsegmentation ``bn``, transformers
    ``batch_norm``; swinkit ``norm``) and ``classifier`` its name for the 1x1 classifiers
    (``conv_seg``, ``classifier``).
    """

    norm: str
    classifier: str

    @functools.cached_property
    def _pairs(self) -> Pairs:
        return tuple((theirs.replace("{classifier}", self.classifier), ours) for theirs, ours in UPERNET_MODULES)

    def _rename(self, key: str, to_native: bool) -> str | None:
        source, target = (0, 1) if to_native else (1, 0)
        inner = ((self.norm, "norm"), ("conv", "conv"))
        for pair in self._pairs:
            match = _template_regex(pair[source]).match(key)
            if match is None:
                continue
            rest = _rename_module(match["rest"], inner, source, target) or match["rest"]
            return pair[target].format(stage=match.groupdict().get("stage")) + "." + rest
        return None
