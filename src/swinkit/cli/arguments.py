"""Arguments several commands share."""

from __future__ import annotations

import argparse

from swinkit.precision import PRECISIONS


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


def add_precision(parser: argparse.ArgumentParser) -> None:
    """``--precision fp32|bf16|int8``: the inference precision (see :mod:`swinkit.precision`)."""
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp32; bf16 (weights and inputs in bfloat16); int8 (dynamic quantization of the Linear layers, CPU)",
    )
