"""``swinkit predict``: the top labels and probabilities for each image (files or folders)."""

from __future__ import annotations

import argparse
import json

from swinkit.cli.arguments import add_patch_remainder, add_precision


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("predict", help="label images with a trained model", description=__doc__)
    parser.add_argument(
        "--model", required=True, help="a swinkit run or export, a checkpoint file or folder, or a Hub id"
    )
    parser.add_argument("inputs", nargs="+", help="image files and folders (walked recursively)")
    parser.add_argument("--topk", type=int, default=5, help="how many labels per image (default 5)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", choices=("cpu", "cuda"))
    add_precision(parser)
    add_patch_remainder(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from swinkit.classifier import load_classifier, predict

    classifier = load_classifier(args.model, args.device, args.precision, args.patch_remainder)
    predictions = predict(classifier, args.inputs, args.topk, args.batch_size)
    failed = sum(p.error is not None for p in predictions)
    if args.json:
        print(json.dumps([p.to_dict() for p in predictions], indent=2))
    else:
        width = max(len(p.path) for p in predictions)
        for p in predictions:
            if p.error is not None:
                print(f"{p.path:<{width}}  unreadable: {p.error}")
                continue
            labels = "  ".join(f"{label} {probability:.3f}" for label, probability in zip(p.labels, p.probabilities))
            print(f"{p.path:<{width}}  {labels}")
    # Exit 1 when some inputs could not be read, so scripts notice; the rest are still labelled.
    return 1 if failed else 0
