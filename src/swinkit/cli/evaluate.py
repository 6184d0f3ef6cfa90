"""``swinkit eval``: a trained model's metrics on labelled data, asked of the model's task.

For a classifier: top-1, top-5, per-class accuracy and the confusion matrix.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from swinkit.cli.arguments import add_patch_remainder, add_precision, add_task_arguments, task_options
from swinkit.tasks import CommandOptions, task_for


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a model on labelled images", description=__doc__)
    parser.add_argument(
        "--model", required=True, help="a swinkit run or export, a checkpoint file or folder, or a Hub id"
    )
    parser.add_argument(
        "--data", required=True, help="image folder, CSV of path,label, datasets folder, hf:NAME, or digits"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    add_precision(parser)
    add_patch_remainder(parser)
    parser.add_argument("--device", choices=("cpu", "cuda"))
    parser.add_argument("--skip-bad-images", action="store_true", help="skip unreadable images instead of stopping")
    parser.add_argument(
        "--output", help="folder for eval.json and the pictures (default: the run folder, else .)"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    add_task_arguments(parser, "eval")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    task = task_for(args.model)
    model_path = Path(args.model)
    output = (
        Path(args.output)
        if args.output
        else (model_path if (model_path / "config.json").is_file() and model_path.is_dir() else Path("."))
    )
    output.mkdir(parents=True, exist_ok=True)
    options = CommandOptions(
        device=args.device,
        precision=args.precision,
        patch_remainder=args.patch_remainder,
        batch_size=args.batch_size,
        workers=args.workers,
        skip_bad_images=args.skip_bad_images,
        output=output,
        extra=task_options(args, task.name),
    )
    report = task.evaluate(str(args.model), args.data, options)
    results = output / "eval.json"
    results.write_text(json.dumps(report.data, indent=2) + "\n")
    if args.json:
        print(json.dumps(report.data, indent=2))
        return report.code
    for line in report.lines:
        print(line)
    *first, last = [results, *report.files]
    print(f"wrote {', '.join(map(str, first))} and {last}" if first else f"wrote {last}")
    return report.code
