"""Arguments several commands share."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json

from swinkit.model.swin import PATCH_REMAINDERS
from swinkit.precision import PRECISIONS
from swinkit.tasks import TASKS


def add_img_size(parser: argparse.ArgumentParser) -> None:
    """``--img-size SIDE`` or ``--img-size H W``; read it back with :func:`img_size`."""
    parser.add_argument(
        "--img-size", type=int, nargs="+", metavar="SIZE", help="image side, or height and width (default: the model's)"
    )


def img_size(values: list[int] | None) -> int | tuple[int, int] | None:
    """The size ``--img-size`` gave: None, one side, or ``(height, width)``; ValueError for more numbers."""
    if not values:
        return None
    if len(values) > 2:
        raise ValueError(f"--img-size takes one or two numbers (H W), got {values}")
    return values[0] if len(values) == 1 else (values[0], values[1])


def add_task_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Each task's own flags of ``command`` in a group of their own; read them back with :func:`task_options`."""
    flags = {}
    for name, task in TASKS.items():
        group = parser.add_argument_group(f"{name} (--task {name})" if command == "train" else f"{name} models")
        task.add_arguments(command, group)  # type: ignore[arg-type]
        flags[name] = [(action.dest, action.option_strings[0]) for action in group._group_actions]
    parser.set_defaults(task_flags=flags)


def task_options(args: argparse.Namespace, task: str) -> dict[str, object]:
    """The flags of ``task`` that were given, by dest; ValueError for a flag of another task."""
    chosen: dict[str, object] = {}
    for name, flags in args.task_flags.items():
        given = {dest: getattr(args, dest) for dest, _ in flags if getattr(args, dest) is not None}
        if name == task:
            chosen = given
        elif given:
            flag = dict(flags)[next(iter(given))]
            raise ValueError(f"{flag} is a flag of task {name}, not of task {task}")
    return chosen


def add_precision(parser: argparse.ArgumentParser) -> None:
    """``--precision fp32|bf16|int8``: the inference precision (see :mod:`swinkit.precision`)."""
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp32; bf16 (weights and inputs in bfloat16); int8 (dynamic quantization of the Linear layers, CPU)",
    )


def add_patch_remainder(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--patch-remainder pad|crop``: whose answers the model gives at sizes it was not trained for.

    ``crop`` is torchvision's semantics (pixels beyond whole patches left out, stage maps no
    larger than the window padded to whole windows); see :attr:`swinkit.SwinConfig.patch_remainder`.
    Read it back with :func:`patch_remainder_override`; unset, the checkpoint decides (``crop``
    for torchvision's weights, else what the checkpoint's config says, else ``pad``).
    """
    parser.add_argument(
        "--patch-remainder",
        choices=PATCH_REMAINDERS,
        help="pad: pixels beyond whole patches padded, windows shrunk to smaller stage maps (official, Hugging "
        "Face); crop: those pixels cropped, smaller maps padded to the window (torchvision); "
        "default: the checkpoint's (crop for torchvision weights, else pad)",
    )


def patch_remainder_override(args: argparse.Namespace) -> dict[str, object]:
    """The model override ``--patch-remainder`` gave: ``{"patch_remainder": value}``, or nothing when unset."""
    return {"patch_remainder": args.patch_remainder} if args.patch_remainder else {}


#: How each kind of model field is written after ``--set KEY=``, for error messages.
_FORMS = {
    "int": "an integer, e.g. {key}=64",
    "float": "a number, e.g. {key}=0.1",
    "bool": "true or false, e.g. {key}=false",
    "ints": "integers, one per stage: {key}=2,2,6,2 or {key}=[2,2,6,2]",
    "size": "one side or height,width: {key}=32, {key}=32,48 or {key}=[32,48]",
    "strings": 'names separated by commas: {key}=cat,dog or {key}=["cat","dog"]',
    "word": "a word, e.g. {key}=crop",
}


def _field_kinds() -> dict[str, str]:
    """The kind of value each model field takes, read off its annotation.

    The fields are :class:`~swinkit.model.SwinConfig`'s and a segmenter's heads'
    (:class:`~swinkit.model.SegmenterConfig`, but its backbone).
    """
    from swinkit.model import SegmenterConfig, SwinConfig

    kinds = {
        "int": "int",
        "float": "float",
        "bool": "bool",
        "str": "word",
        "tuple[int, ...]": "ints",
        "tuple[str, ...]": "strings",
    }
    result = {}
    head_fields = [field for field in dataclasses.fields(SegmenterConfig) if field.name != "backbone"]
    for field in [*dataclasses.fields(SwinConfig), *head_fields]:
        if field.name in result:
            continue
        annotation = str(field.type).replace(" ", "")
        if annotation == "int|tuple[int,int]":
            result[field.name] = "size"
        else:
            result[field.name] = kinds.get(str(field.type), "json")
    return result


def _scalar(kind: str, text: str) -> object:
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if text.lower() in ("true", "yes", "1"):
        return True
    if text.lower() in ("false", "no", "0"):
        return False
    raise ValueError(text)


def _items(text: str) -> list[object]:
    """``[2,2,6]`` (JSON) or ``2,2,6`` as a list of strings or JSON values."""
    if text.startswith("["):
        value = json.loads(text)
        if not isinstance(value, list):
            raise ValueError(text)
        return value
    parts = [part.strip() for part in text.split(",")]
    if not all(parts):
        raise ValueError(text)
    return parts


def parse_model_override(text: str) -> tuple[str, object]:
    """``--set KEY=VALUE`` for a model field: the key and the value typed as the field needs.

    Lists are written ``depths=2,2,6,2`` or as JSON, ``depths=[2,2,6,2]``; ``img_size`` takes
    one side or ``height,width``; booleans ``true``/``false``. Raises
    ``argparse.ArgumentTypeError`` naming the key, the value and the accepted forms.
    """
    key, separator, value = text.partition("=")
    key, value = key.strip(), value.strip()
    kinds = _field_kinds()
    if not separator or not key:
        raise argparse.ArgumentTypeError(
            f"--set {text}: expected KEY=VALUE, e.g. embed_dim=64 or depths=2,2,6,2; keys: {', '.join(kinds)}"
        )
    if key not in kinds:
        close = difflib.get_close_matches(key, list(kinds), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise argparse.ArgumentTypeError(
            f"--set {text}: {key!r} is not a model field{hint}; fields: {', '.join(kinds)}"
        )
    kind = kinds[key]
    try:
        if kind in ("int", "float", "bool"):
            return key, _scalar(kind, value)
        if kind == "word":
            if not value:
                raise ValueError(value)
            return key, value
        if kind == "ints":
            return key, tuple(int(str(item)) for item in _items(value))
        if kind == "strings":
            return key, tuple(str(item) for item in _items(value))
        if kind == "size":
            sides = tuple(int(str(item)) for item in _items(value))
            if len(sides) not in (1, 2):
                raise ValueError(value)
            return key, sides[0] if len(sides) == 1 else sides
        return key, json.loads(value)
    except (ValueError, json.JSONDecodeError):
        form = _FORMS.get(kind, "a JSON value").format(key=key)
        raise argparse.ArgumentTypeError(f"--set {key}={value}: {key} takes {form}") from None
