"""Safe reading and atomic writing of checkpoint files, directories and Hub repositories.

Weights are read from safetensors wherever possible; pickles (``.pth``, ``.pt``, ``.bin``,
``.ckpt``) only with ``torch.load(weights_only=True)``, so a file that would import or run
code is refused before anything runs. Every file is written to a temporary name, flushed to
disk and then renamed over the target, so an interrupted save never leaves a half file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pickle
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from swinkit.checkpoints.errors import CheckpointError, UnsafeCheckpointError

#: Weight files looked for in a directory, best first.
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
#: JSON files read beside the weights (they describe the model, its labels and preprocessing).
METADATA_FILES = ("swinkit.json", "config.json", "preprocessor_config.json")
#: Sub-directories of a training run directory, in the order they are preferred.
RUN_SUBDIRS = ("best", "last")
PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
#: Containers a state dict is commonly saved under (official: ``model``; timm and Lightning: ``state_dict``).
WRAPPER_KEYS = ("model", "state_dict")
_HUB_ID = re.compile(r"^(hf-hub:)?[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HUB_PATTERNS = (
    [
        "swinkit.json",
        "config.json",
        "preprocessor_config.json",
        "model.safetensors",
        "model.safetensors.index.json",
        "model-*.safetensors",
    ],
    ["pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*.bin"],
)
#: Harmless classes a weights-only unpickler may rebuild besides tensors (timm's training
#: checkpoints store their command-line arguments as an ``argparse.Namespace``).
_SAFE_GLOBALS = [argparse.Namespace]


@dataclasses.dataclass(frozen=True)
class Located:
    """Where a checkpoint's files are: the weights file and the parsed JSON files found beside it."""

    source: str
    weights: Path
    metadata: Mapping[str, dict]


def locate(source: str | os.PathLike[str]) -> Located:
    """Resolve a file, a directory (Hugging Face, timm, swinkit export or run) or a Hub id to its files.

    A directory is searched for ``model.safetensors``, then ``pytorch_model.bin`` (or their
    sharded index), with ``config.json``, ``swinkit.json`` and ``preprocessor_config.json``
    read beside them; a run directory is resolved to its ``best/``, else ``last/``, export. A
    string ``owner/name`` that is not an existing path is fetched from the Hugging Face Hub.
    Raises FileNotFoundError for a missing path and CheckpointError when nothing loadable is found.
    """
    text = os.fspath(source)
    path = Path(text).expanduser()
    if not path.exists():
        if _HUB_ID.match(text) and not text.endswith((".safetensors", ".json", *PICKLE_SUFFIXES)):
            path = _fetch_from_hub(text.removeprefix("hf-hub:"))
        else:
            raise FileNotFoundError(
                f"no checkpoint at {text!r}: give a weights file (.safetensors, .pth, .pt, .bin), a directory "
                f"holding one, or a Hugging Face Hub id such as 'microsoft/swin-tiny-patch4-window7-224'"
            )
    if path.is_dir():
        return Located(text, *_weights_in_directory(_export_directory(path)))
    metadata = _read_metadata(path.parent) if path.name in WEIGHT_FILES else {}
    return Located(text, path, metadata)


def _export_directory(path: Path) -> Path:
    if (path / "swinkit.json").is_file():
        return path
    for name in RUN_SUBDIRS:
        if (path / name / "swinkit.json").is_file():
            return path / name
    return path


def _weights_in_directory(path: Path) -> tuple[Path, dict[str, dict]]:
    for name in WEIGHT_FILES:
        if (path / name).is_file():
            return path / name, _read_metadata(path)
    present = sorted(child.name for child in path.iterdir())[:10]
    raise CheckpointError(
        f"no weights found in directory {path}: expected one of {', '.join(WEIGHT_FILES)} (a Hugging Face or timm "
        f"export), a swinkit export with swinkit.json, or a run directory with {' or '.join(RUN_SUBDIRS)}/; "
        f"it holds {present or 'nothing'}"
    )


def _read_metadata(directory: Path) -> dict[str, dict]:
    return {name: read_json(directory / name) for name in METADATA_FILES if (directory / name).is_file()}


def _fetch_from_hub(repo_id: str) -> Path:
    # Imported here: only a Hub id needs it, and importing it reads the offline settings.
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HTTPError

    path = None
    try:
        for patterns in _HUB_PATTERNS:
            path = Path(snapshot_download(repo_id, allow_patterns=patterns))
            if any((path / name).is_file() for name in WEIGHT_FILES):
                return path
    except (OSError, ValueError, HTTPError) as error:
        raise CheckpointError(
            f"could not fetch {repo_id!r} from the Hugging Face Hub ({type(error).__name__}: {error}); check the "
            f"id and the network (HF_HUB_OFFLINE must be unset), or download it and give the local directory or file"
        ) from error
    raise CheckpointError(f"Hub repository {repo_id!r} has no weights file ({', '.join(WEIGHT_FILES)}) at {path}")


def read_json(path: Path) -> dict:
    """Parse a JSON object from ``path``; a malformed file raises CheckpointError naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of one weights file (or of every shard named by an ``*.index.json``), on the CPU.

    A state dict saved under ``model`` or ``state_dict`` (official and training checkpoints) is
    unwrapped, and a ``module.`` prefix (DistributedDataParallel) removed. Raises
    UnsafeCheckpointError for a pickle that would run code and CheckpointError for a truncated,
    corrupt or tensor-less file.
    """
    if path.name.endswith(".index.json"):
        shards = sorted(set(read_json(path).get("weight_map", {}).values()))
        if not shards:
            raise CheckpointError(f"{path} has no 'weight_map' naming the shard files")
        tensors: dict[str, torch.Tensor] = {}
        for shard in shards:
            tensors.update(read_weights(path.parent / shard))
        return tensors
    loaded = _read_safetensors(path) if _is_safetensors(path) else _read_pickle(path)
    return _state_dict_of(loaded, path)


def _is_safetensors(path: Path) -> bool:
    if path.suffix == ".safetensors":
        return True
    if path.suffix in PICKLE_SUFFIXES:
        return False
    with path.open("rb") as handle:
        header = handle.read(9)
    return len(header) == 9 and header[8:9] == b"{"


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError) as error:
        raise CheckpointError(
            f"could not read {path}: not a complete safetensors file (truncated or corrupt?): {error}"
        ) from error


def _read_pickle(path: Path) -> object:
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = re.search(r"GLOBAL ([\w.]+)", str(error))
        if "Weights only load failed" in str(error):
            needs = f"`{refused.group(1)}`" if refused else "an object that is not plain tensor data"
            raise UnsafeCheckpointError(
                f"refused to load {path}: it is a pickle that needs {needs}, which unpickling would import and "
                f"run; only plain weights (tensors in dicts and lists, numbers, strings) are read. Nothing was "
                f"executed. If the file comes from a source you trust, re-save its state_dict() as .safetensors"
            ) from error
        raise _corrupt(path, error) from error
    except (RuntimeError, EOFError, KeyError, ValueError, AttributeError, IndexError, OSError) as error:
        raise _corrupt(path, error) from error


def _corrupt(path: Path, error: Exception) -> CheckpointError:
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return CheckpointError(
        f"could not read {path}: not a complete PyTorch checkpoint (truncated or corrupt?): {reason}. "
        f"Accepted: .safetensors files and torch.save() files of tensors"
    )


def _state_dict_of(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    while isinstance(loaded, Mapping):
        inner = next((loaded[key] for key in WRAPPER_KEYS if isinstance(loaded.get(key), Mapping)), None)
        if inner is None:
            break
        loaded = inner
    if not isinstance(loaded, Mapping):
        raise CheckpointError(f"{path} holds a {type(loaded).__name__}, not a state dict of named tensors")
    tensors = {str(key): value for key, value in loaded.items() if isinstance(value, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path} holds no tensors; its keys are {list(loaded)[:5]}")
    if all(key.startswith("module.") for key in tensors):
        tensors = {key.removeprefix("module."): value for key, value in tensors.items()}
    return tensors


def fsync_directory(path: Path) -> None:
    """Flush a directory's entries (a rename inside it) to disk."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> None:
    """Write a file atomically: ``write(tmp)`` fills a temporary file, which is synced and renamed.

    Readers (and a process killed at any moment) see either the old file or the whole new
    one, never a part.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
        fsync_directory(path.parent)
    finally:
        temporary.unlink(missing_ok=True)


def write_json(path: Path, data: Mapping[str, object]) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically (temporary file, fsync, rename)."""

    def write(temporary: Path) -> None:
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")

    atomic_write(path, write)


def write_safetensors(path: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    """Write ``tensors`` (moved to the CPU, made contiguous) to a safetensors file atomically."""
    ready = {name: tensor.detach().to("cpu").contiguous() for name, tensor in tensors.items()}
    atomic_write(path, lambda temporary: save_file(ready, temporary, metadata={"format": "pt"}))
