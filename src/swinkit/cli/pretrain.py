"""``swinkit pretrain``: SimMIM masked-image pre-training on a folder of unlabelled images.

Every image below ``--data`` is read, at any depth (sub-folders are not classes); 10% are
held out (``--val-split``) to measure the reconstruction with fixed masks. Flags left unset
are chosen from the images and printed with their reasons (input size, patch and window,
model, batch, learning rate, mask patch and ratio, epochs fitted to ``--time``, 10 minutes by
default); ``--recipe imagenet`` is the official SimMIM Swin-B schedule. Each epoch draws a few
held-out images (original, masked, reconstruction) into the run folder. Fine-tune from the
run with ``swinkit train --pretrained RUN --data LABELLED``. The flags are those of
``swinkit train``, plus ``--mask-patch`` and ``--mask-ratio``.
"""

from __future__ import annotations

import argparse

from swinkit.cli.train import add_training_arguments, run_train


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pretrain", help="SimMIM pre-training on a folder of unlabelled images", description=__doc__
    )
    add_training_arguments(parser)
    parser.set_defaults(handler=run_train, task="pretrain")
