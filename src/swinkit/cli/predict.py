"""``swinkit predict``: a trained model's answer for each image (files or folders), asked of the model's task.

For a classifier: the top labels and their probabilities.
"""

from __future__ import annotations

import argparse
import json

from swinkit.cli.arguments import add_patch_remainder, add_precision, add_task_arguments, task_options
from swinkit.tasks import CommandOptions, task_for


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("predict", help="label images with a trained model", description=__doc__)
    parser.add_argument(
        "--model", required=True, help="a swinkit run or export, a checkpoint file or folder, or a Hub id"
    )
    parser.add_argument("inputs", nargs="+", help="image files and folders (walked recursively)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", choices=("cpu", "cuda"))
    add_precision(parser)
    add_patch_remainder(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_task_arguments(parser, "predict")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    task = task_for(args.model)
    options = CommandOptions(
        device=args.device,
        precision=args.precision,
        patch_remainder=args.patch_remainder,
        batch_size=args.batch_size,
        extra=task_options(args, task.name),
    )
    report = task.predict(str(args.model), args.inputs, options)
    if args.json:
        print(json.dumps(report.data, indent=2))
    else:
        for line in report.lines:
            print(line)
    # Exit 1 when some inputs could not be read, so scripts notice; the rest are still answered.
    return report.code
