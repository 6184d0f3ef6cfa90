"""Parameter-efficient fine-tuning: LoRA adapters (Hu et al., 2021) on the blocks' layers, through PEFT.

Each adapted layer ``W`` (a block's ``qkv``, ``proj``, ``fc1`` or ``fc2`` by default) gains
a low-rank update, ``W x + (alpha / r) B A x`` with ``A: (r, in)`` and ``B: (out, r)``;
only ``A``, ``B`` and the classification head are trained, the rest stays frozen. PEFT
injects the adapters into the model in place, so the training loop runs the model as it is.

A LoRA run's checkpoint holds, beside the usual loadable export (the adapters merged into
the weights, a plain model that ``eval``, ``predict``, ``convert``, ``export`` and ``show``
take like any other), the adapter in PEFT's own format (``adapter/adapter_model.safetensors``
and ``adapter_config.json``), which ``peft.PeftModel.from_pretrained`` puts back on the
pretrained model.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

from torch import nn

from swinkit.model import SwinTransformer
from swinkit.preprocessing import Preprocessing

#: The layers adapted unless ``--lora-targets`` names others: attention and MLP of every block.
DEFAULT_TARGETS = "qkv,proj,fc1,fc2"
#: Sub-folder of a checkpoint holding the PEFT adapter.
ADAPTER_FOLDER = "adapter"
#: The block-local paths of the Linear layers a target name may pick.
_BLOCK_LAYER = re.compile(r"(?:.*\.)?stages\.\d+\.blocks\.\d+\.(?P<path>.+)")


def require_peft() -> ModuleType:
    """The ``peft`` module, or a ValueError saying how to install it."""
    try:
        import peft
    except ImportError as error:
        raise ValueError(
            "LoRA fine-tuning (--lora) needs PEFT, which is not installed: pip install 'swinkit[peft]'"
        ) from error
    return peft


def parse_targets(targets: str) -> list[str]:
    """``"qkv,proj"`` -> ``["qkv", "proj"]`` (stripped, without empties or repeats)."""
    names: list[str] = []
    for name in targets.split(","):
        name = name.strip()
        if name and name not in names:
            names.append(name)
    return names


def target_pattern(model: SwinTransformer, targets: str) -> str:
    """The PEFT ``target_modules`` regular expression for ``targets`` (layer names, comma-separated).

    Only Linear layers inside the blocks match (``stages.S.blocks.B.attn.qkv``, ...; inside a
    segmenter ``backbone.stages.S.blocks.B.attn.qkv``), never
    the patch embedding's ``proj`` convolution, the merging ``reduction`` or the head.
    Raises ValueError for a name that is no block Linear layer, listing the accepted ones.
    """
    paths: dict[str, set[str]] = {}
    for name, module in model.named_modules():
        match = _BLOCK_LAYER.fullmatch(name)
        if match and isinstance(module, nn.Linear):
            path = match["path"]
            paths.setdefault(path.rsplit(".", 1)[-1], set()).add(path)
    wanted = parse_targets(targets)
    unknown = [name for name in wanted if name not in paths]
    if not wanted or unknown:
        raise ValueError(
            f"--lora-targets {targets!r}: {', '.join(unknown) or 'no layer named'} is not a Linear layer of the "
            f"blocks; accepted: {', '.join(sorted(paths))}"
        )
    chosen = sorted(set().union(*(paths[name] for name in wanted)))
    return r"(?:.*\.)?stages\.\d+\.blocks\.\d+\.(?:" + "|".join(re.escape(path) for path in chosen) + ")"


class LoraAdapters:
    """LoRA adapters of ``rank`` injected into ``model`` (in place), the head trained fully.

    ``alpha`` scales the update by ``alpha / rank`` (default: the rank, scale 1);
    ``dropout`` applies to the adapters' input; ``targets`` names the block layers to adapt
    (see :func:`target_pattern`); ``heads`` names the modules trained fully beside the adapters
    (PEFT's ``modules_to_save``; a module whose name ends with one counts); ``base`` (the
    pretrained source) is recorded in the adapter's config. After construction ``model`` runs
    with its adapters; its parameters that still need gradients are the adapters' ``A`` and
    ``B`` and trainable copies of the heads. ``peft_model`` is PEFT's wrapper around the same modules.
    """

    def __init__(
        self,
        model: SwinTransformer,
        rank: int,
        alpha: float | None = None,
        dropout: float = 0.0,
        targets: str = DEFAULT_TARGETS,
        base: str | None = None,
        heads: Sequence[str] = ("head",),
    ) -> None:
        peft = require_peft()
        if rank < 1:
            raise ValueError(f"the LoRA rank must be a positive integer, got {rank}")
        self.rank = rank
        self.alpha = float(rank if alpha is None else alpha)
        self.base_parameters = sum(p.numel() for p in model.parameters())
        config = peft.LoraConfig(
            r=rank,
            lora_alpha=self.alpha,
            lora_dropout=dropout,
            target_modules=target_pattern(model, targets),
            modules_to_save=list(heads),
        )
        self.model = model
        self.peft_model = peft.get_peft_model(model, config)
        # Recorded in adapter_config.json: the weights the adapter goes on (PEFT reads no name off a swinkit model).
        self.peft_model.peft_config["default"].base_model_name_or_path = base

    @property
    def trainable_parameters(self) -> int:
        """Parameters the optimiser moves: the adapters and the head."""
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    @property
    def adapted_layers(self) -> list[str]:
        """Names of the layers carrying an adapter."""
        return [name for name, module in self.model.named_modules() if hasattr(module, "lora_A")]

    def summary(self) -> str:
        """One line for the run's log: rank, alpha, layers and the share of parameters trained."""
        share = 100 * self.trainable_parameters / self.base_parameters
        return (
            f"LoRA rank {self.rank}, alpha {self.alpha:g} on {len(self.adapted_layers)} layers: training "
            f"{self.trainable_parameters:,} of {self.base_parameters:,} parameters ({share:.2f}%, adapters and head)"
        )

    def merged(self) -> SwinTransformer:
        """A plain copy of the model with the adapters merged into its weights and the trained head."""
        return copy.deepcopy(self.peft_model).merge_and_unload()

    def save(
        self, folder: Path, preprocessing: Preprocessing, save_model: Callable[[nn.Module, Path, Preprocessing], None]
    ) -> None:
        """Write the merged model into ``folder`` with ``save_model``, the adapter (PEFT's) into ``folder/adapter``."""
        save_model(self.merged(), folder, preprocessing)
        self.peft_model.save_pretrained(str(Path(folder) / ADAPTER_FOLDER), safe_serialization=True)
