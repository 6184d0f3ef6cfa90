"""``swinkit train``: fine-tune or train a Swin on your images (or the built-in digits).

Flags left unset take the recipe's value: the built-in digits recipe when no ``--data``
is given, the fine-tuning recipe with ``--pretrained``, the paper's recipe otherwise.
Also runs under ``torchrun --nproc-per-node N -m swinkit train ...``.
"""

from __future__ import annotations

import argparse
import sys

from swinkit.cli.arguments import parse_model_override
from swinkit.train.config import AUGMENTS, PRECISIONS, TrainConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train or fine-tune on an image folder, CSV, datasets or the built-in digits", description=__doc__
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data", help="image folder, CSV of path,label, datasets save_to_disk folder, hf:NAME, or 'digits' (default)"
    )
    data.add_argument("--val", help="validation data (same forms as --data); default: split off --val-split")
    data.add_argument(
        "--val-split", type=float, default=0.1, help="fraction held out for validation, stratified (default 0.1)"
    )
    data.add_argument("--skip-bad-images", action="store_true", help="skip unreadable images instead of stopping")
    data.add_argument(
        "--workers", type=int, help="data-loading processes per training process (default 2; on resume, the run's)"
    )

    model = parser.add_argument_group("model")
    model.add_argument("--model", help="variant name (swin_t, swin_b_384, ...); default from the recipe or checkpoint")
    model.add_argument("--pretrained", help="weights to start from: file, folder, swinkit run, or Hub id")
    model.add_argument(
        "--set",
        dest="model_overrides",
        metavar="KEY=VALUE",
        action="append",
        type=parse_model_override,
        default=[],
        help="override a model config field, e.g. --set window_size=12 or --set depths=2,2,6,2 (repeatable)",
    )
    model.add_argument("--img-size", type=int, help="training image size (default: the model's)")
    model.add_argument("--drop-path", type=float, help="stochastic depth rate, rising linearly over blocks")
    model.add_argument(
        "--grad-checkpointing", action="store_true", help="recompute activations in backward: less memory"
    )
    model.add_argument("--freeze-backbone", action="store_true", help="train the head only (linear probe)")

    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=int)
    optim.add_argument("--batch-size", type=int, help="images per step per process")
    optim.add_argument("--accum-steps", type=int, help="gradient accumulation steps")
    optim.add_argument("--lr", type=float, help="peak learning rate (at --lr-base-batch, scaled linearly)")
    optim.add_argument("--lr-base-batch", type=int, help="global batch the lr is given for; 0 = do not scale")
    optim.add_argument("--min-lr", type=float, help="floor of the cosine decay")
    optim.add_argument("--warmup-epochs", type=float, help="linear warm-up length, in epochs (fractions allowed)")
    optim.add_argument("--weight-decay", type=float, help="AdamW weight decay (never on norms, biases, bias tables)")
    optim.add_argument("--layer-decay", type=float, help="layer-wise lr decay factor in (0, 1]; 1 = off")
    optim.add_argument("--clip-grad", type=float, help="gradient-norm clipping; 0 = off")
    optim.add_argument("--precision", choices=PRECISIONS, default="fp32", help="autocast precision (bf16 works on CPU)")
    optim.add_argument("--ema", action="store_true", help="keep an exponential moving average of the weights")
    optim.add_argument("--ema-decay", type=float, default=0.9998)

    augment = parser.add_argument_group("augmentation")
    augment.add_argument(
        "--no-augment", dest="augment", action="store_false", help="train on the evaluation transform, no mixing"
    )
    augment.add_argument("--auto-augment", choices=AUGMENTS, help="RandAugment (m9), TrivialAugmentWide, or none")
    augment.add_argument("--re-prob", type=float, help="random erasing probability")
    augment.add_argument("--mixup", type=float, help="MixUp alpha; 0 = off")
    augment.add_argument("--cutmix", type=float, help="CutMix alpha; 0 = off")
    augment.add_argument("--smoothing", dest="label_smoothing", type=float, help="label smoothing")
    augment.add_argument("--hflip", type=float, help="horizontal flip probability")
    augment.add_argument("--scale", type=float, nargs=2, metavar=("MIN", "MAX"), help="RandomResizedCrop area range")

    run = parser.add_argument_group("run")
    run.add_argument("--output", default="runs", help="folder that holds run folders (default runs/)")
    run.add_argument("--name", help="run folder name (default: the start time)")
    run.add_argument("--resume", metavar="RUN", help="continue the run in this folder from its last checkpoint")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument(
        "--deterministic", action="store_true", help="deterministic algorithms (bit-identical resume on CPU)"
    )
    run.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    run.add_argument("--quiet", action="store_true", help="print nothing but errors")
    parser.set_defaults(handler=run_train)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` the flags describe (recipe values still unset)."""
    fields = {
        name: value
        for name, value in vars(args).items()
        if name in TrainConfig.__dataclass_fields__ and value is not None
    }
    fields["model_overrides"] = dict(args.model_overrides)
    if args.scale is not None:
        fields["scale"] = tuple(args.scale)
    return TrainConfig(**fields)


def run_train(args: argparse.Namespace) -> int:
    from swinkit.train.loop import TrainingDiverged, train

    try:
        train(config_from_args(args), resume=args.resume)
    except TrainingDiverged as error:
        print(f"swinkit train: {error}", file=sys.stderr)
        return 1
    return 0
