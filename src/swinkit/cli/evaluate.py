"""``swinkit eval``: top-1, top-5, per-class accuracy and the confusion matrix of a model on labelled data."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from swinkit.cli.arguments import add_patch_remainder, add_precision


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
        "--output", help="folder for eval.json and eval_confusion_matrix.png (default: the run folder, else .)"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from swinkit.classifier import evaluate_data, load_classifier
    from swinkit.train.plots import plot_confusion

    classifier = load_classifier(args.model, args.device, args.precision, args.patch_remainder)
    result = evaluate_data(classifier, args.data, args.batch_size, args.workers, args.skip_bad_images)
    model_path = Path(args.model)
    output = (
        Path(args.output)
        if args.output
        else (model_path if (model_path / "config.json").is_file() and model_path.is_dir() else Path("."))
    )
    output.mkdir(parents=True, exist_ok=True)
    report = {
        "model": str(args.model),
        "data": args.data,
        "precision": classifier.precision,
        "images": result.count,
        "loss": result.loss,
        "top1": result.top1,
        "top5": result.top5,
        "per_class": {
            name: (None if math.isnan(value) else value) for name, value in zip(classifier.classes, result.per_class)
        },
        "confusion_matrix": result.confusion.tolist(),
        "classes": classifier.classes,
    }
    (output / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_confusion(result.confusion, classifier.classes, output / "eval_confusion_matrix.png", f"{args.data}")
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"{result.count} images, {classifier.precision}: top-1 {result.top1:.2f}%  top-5 {result.top5:.2f}%  "
        f"loss {result.loss:.4f}"
    )
    width = max(len(name) for name in classifier.classes)
    for name, value in report["per_class"].items():
        print(f"  {name:<{width}}  {'-' if value is None else f'{value:6.2f}%'}")
    print(f"wrote {output / 'eval.json'} and {output / 'eval_confusion_matrix.png'}")
    return 0
