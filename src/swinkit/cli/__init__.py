"""The ``swinkit`` command line: parses arguments and calls the library, nothing more.

Each sub-command lives in its own module exposing ``register(subparsers)``, which adds
its parser and sets ``handler`` to a function taking the parsed arguments and returning
the exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from swinkit import __version__
from swinkit.cli import bench, convert, evaluate, export, flops, models, predict, pretrain, serve, show, train

COMMANDS = (models, train, pretrain, evaluate, predict, convert, export, bench, show, flops, serve)


def build_parser() -> argparse.ArgumentParser:
    """The parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="swinkit", description="Swin Transformer: build, load, train, evaluate, predict."
    )
    parser.add_argument("--version", action="version", version=f"swinkit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (argparse exits with 2 on bad flags)."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        if not hasattr(args, "options"):
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        # A benchmark has its own options (--help among them): they are passed on as they came.
        args.options = unknown + list(args.options)
    # Read from sys.argv: this process was started for this command (time budgets count its start-up).
    args.command_line = argv is None
    try:
        return int(args.handler(args) or 0)
    except (ValueError, FileNotFoundError) as error:
        print(f"swinkit {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
