"""``swinkit train``: fine-tune or train a Swin on your images (or the built-in digits).

Flags left unset take the recipe's value: the built-in digits recipe when no ``--data``
is given, the fine-tuning recipe with ``--pretrained``, and otherwise one chosen from the
data (a compact Swin, its input size, batch, epochs fitted to ``--time`` ...), printed
with its reasons before training. ``--recipe imagenet`` gives the paper's ImageNet recipe.
Also runs under ``torchrun --nproc-per-node N -m swinkit train ...``.
"""

from __future__ import annotations

import argparse
import sys

from swinkit.cli.arguments import (
    add_patch_remainder,
    add_task_arguments,
    parse_model_override,
    patch_remainder_override,
    task_options,
)
from swinkit.data.memory import parse_size
from swinkit.data.transforms import CROPS
from swinkit.tasks import TASKS, train
from swinkit.model.stems import STEMS
from swinkit.train.config import EMA_MODES, PRECISIONS, RECIPES, SCHEDULES, TrainConfig
from swinkit.train.loop import TrainingDiverged
from swinkit.train.timing import parse_duration, process_age


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train or fine-tune on an image folder, CSV, datasets or the built-in digits", description=__doc__
    )
    parser.add_argument(
        "--task",
        choices=tuple(TASKS),
        default="classify",
        help="what to train: " + "; ".join(f"{name}, {task.description}" for name, task in TASKS.items()),
    )
    add_training_arguments(parser)


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of a training run (data, recipe, model, optimisation, augmentation, run, the tasks' own)."""
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
        "--workers",
        type=int,
        help="data-loading processes per training process for images read from files (default: sized to the "
        "machine; none for images in memory; on resume, the run's)",
    )
    data.add_argument(
        "--memory-limit",
        type=_size,
        metavar="SIZE",
        help="decode images once and keep them in memory up to SIZE (e.g. 500MB, 8GB; default 4GB or half the "
        "free memory; 0: read the files every epoch)",
    )

    parser.add_argument(
        "--recipe",
        choices=RECIPES,
        help="where unset flags come from: auto (chosen from the data; the default without --pretrained), "
        "imagenet (the paper's), finetune (the default with --pretrained), digits (the built-in data's)",
    )
    parser.add_argument(
        "--time",
        dest="time_budget",
        type=_duration,
        metavar="DURATION",
        help="fit the epochs to this wall-clock budget, timed on a few steps first: 90s, 10m, 1h30m, 2h, or none "
        "(default 10m for the auto recipe; unused with --epochs)",
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
    add_patch_remainder(model)
    model.add_argument("--drop-path", type=float, help="stochastic depth rate, rising linearly over blocks")
    model.add_argument(
        "--stem",
        choices=STEMS,
        help="how pixels become tokens: patch (the paper's patch embedding), conv (overlapping 3x3 convolutions) or "
        "spt (shifted patch tokenization); default: the checkpoint's, or for the auto recipe conv up to 64 px",
    )
    model.add_argument(
        "--grad-checkpointing", action="store_true", help="recompute activations in backward: less memory"
    )
    model.add_argument("--freeze-backbone", action="store_true", help="train the head only (linear probe)")

    lora = parser.add_argument_group("LoRA (parameter-efficient fine-tuning; needs pip install 'swinkit[peft]')")
    lora.add_argument(
        "--lora",
        type=int,
        metavar="R",
        help="train rank-R LoRA adapters on the blocks' layers and the head, nothing else",
    )
    lora.add_argument("--lora-alpha", type=float, help="adapter scale alpha (the update is alpha/R B A; default R)")
    lora.add_argument("--lora-dropout", type=float, help="dropout on the adapters' input (default 0)")
    lora.add_argument(
        "--lora-targets", metavar="NAMES", help="comma-separated block layers to adapt (default qkv,proj,fc1,fc2)"
    )

    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=int, help="epochs (default: the recipe's, or as many as fit in --time)")
    optim.add_argument(
        "--epoch-repeats",
        type=int,
        help="passes over the training images in one epoch (default 1; the data-chosen recipe repeats a small "
        "set so that evaluating and saving each epoch stay a small share of it)",
    )
    optim.add_argument("--batch-size", type=int, help="images per step per process")
    optim.add_argument("--accum-steps", type=int, help="gradient accumulation steps")
    optim.add_argument("--lr", type=float, help="peak learning rate (at --lr-base-batch, scaled linearly)")
    optim.add_argument("--lr-base-batch", type=int, help="global batch the lr is given for; 0 = do not scale")
    optim.add_argument("--min-lr", type=float, help="floor of the cosine decay")
    optim.add_argument(
        "--schedule", choices=SCHEDULES, help="decay after the warm-up: cosine (default) or poly (power 1)"
    )
    optim.add_argument("--warmup-epochs", type=float, help="linear warm-up length, in epochs (fractions allowed)")
    optim.add_argument("--weight-decay", type=float, help="AdamW weight decay (never on norms, biases, bias tables)")
    optim.add_argument("--layer-decay", type=float, help="layer-wise lr decay factor in (0, 1]; 1 = off")
    optim.add_argument("--clip-grad", type=float, help="gradient-norm clipping; 0 = off")
    optim.add_argument("--precision", choices=PRECISIONS, default="fp32", help="autocast precision (bf16 works on CPU)")
    optim.add_argument(
        "--ema",
        choices=EMA_MODES,
        nargs="?",
        const="on",
        help="keep an exponential moving average of the weights, evaluated and saved as the run's: on (--ema alone), "
        "off, or auto (on when training from scratch for enough steps; the auto recipe's default; others: off)",
    )
    optim.add_argument("--ema-decay", type=float, help="EMA decay per step (default: from the run's steps)")

    augment = parser.add_argument_group("augmentation")
    augment.add_argument(
        "--no-augment", dest="augment", action="store_false", help="train on the evaluation transform, no mixing"
    )
    augment.add_argument(
        "--auto-augment",
        help="randaugment (2 ops at m9), rand-mM-nN (magnitude M of 10, N ops), trivial (TrivialAugmentWide), or none",
    )
    augment.add_argument("--re-prob", type=float, help="random erasing probability")
    augment.add_argument("--mixup", type=float, help="MixUp alpha; 0 = off")
    augment.add_argument("--cutmix", type=float, help="CutMix alpha; 0 = off")
    augment.add_argument("--smoothing", dest="label_smoothing", type=float, help="label smoothing")
    augment.add_argument("--hflip", type=float, help="horizontal flip probability")
    augment.add_argument(
        "--crop", choices=CROPS, help="resized: RandomResizedCrop over --scale; pad: pad by --pad pixels and crop"
    )
    augment.add_argument("--pad", type=int, help="padding of --crop pad, in pixels (default: 1/8 of the side)")
    augment.add_argument("--scale", type=float, nargs=2, metavar=("MIN", "MAX"), help="RandomResizedCrop area range")
    augment.add_argument("--mean", type=float, nargs="+", help="normalisation mean per channel (default: the recipe's)")
    augment.add_argument("--std", type=float, nargs="+", help="normalisation std per channel (default: the recipe's)")

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
    add_task_arguments(parser, "train")
    parser.set_defaults(handler=run_train)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` the flags describe (recipe values still unset).

    The flags of the chosen task go into ``task_options``; another task's flag raises ValueError.
    """
    fields = {
        name: value
        for name, value in vars(args).items()
        if name in TrainConfig.__dataclass_fields__ and value is not None
    }
    fields["task_options"] = task_options(args, args.task)
    fields["model_overrides"] = dict(args.model_overrides) | patch_remainder_override(args)
    if getattr(args, "stem", None) is not None:
        fields["model_overrides"]["stem"] = args.stem
    for name in ("scale", "mean", "std"):
        if getattr(args, name) is not None:
            fields[name] = tuple(getattr(args, name))
    return TrainConfig(**fields)


def run_train(args: argparse.Namespace) -> int:
    try:
        spent = process_age() if getattr(args, "command_line", False) else 0.0
        train(config_from_args(args), resume=args.resume, spent=spent)
    except TrainingDiverged as error:
        print(f"swinkit train: {error}", file=sys.stderr)
        return 1
    return 0
