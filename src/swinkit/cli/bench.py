"""``swinkit bench``: Swin-T speed and memory against timm, torchvision and transformers (see benchmarks/)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench", help="benchmark against timm, torchvision, transformers", description=__doc__, add_help=False
    )
    parser.add_argument("options", nargs=argparse.REMAINDER, help="options of the benchmark (swinkit bench --help)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from swinkit.benchmark import main

    return main(args.options)
