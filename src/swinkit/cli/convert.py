"""``swinkit convert SRC DST --to native|hf|timm``: re-save a checkpoint of any understood format."""

from __future__ import annotations

import argparse

from swinkit.checkpoints import FORMATS, SAVE_FORMATS, create_model, save_pretrained
from swinkit.cli.arguments import add_patch_remainder, patch_remainder_override


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert a checkpoint to swinkit, Hugging Face or timm", description=__doc__
    )
    parser.add_argument("source", help="weights file, checkpoint directory or Hugging Face Hub id")
    parser.add_argument("destination", help="directory to write")
    parser.add_argument(
        "--to", dest="to_format", choices=SAVE_FORMATS, default="native", help="format to write (default: native)"
    )
    parser.add_argument("--from", dest="from_format", choices=tuple(FORMATS), help="format of SRC (default: detected)")
    parser.add_argument("--name", help="model variant, e.g. swin_t (default: inferred from the checkpoint)")
    add_patch_remainder(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    model = create_model(args.name, pretrained=args.source, format=args.from_format, **patch_remainder_override(args))
    path = save_pretrained(model, args.destination, format=args.to_format)
    report = model.load_report
    config = model.config
    print(
        f"converted {args.source} ({report.format}, embed_dim {config.embed_dim}, depths {list(config.depths)}, "
        f"window {config.window_size}, {config.num_classes} classes) -> {path} ({args.to_format})"
    )
    return 0
