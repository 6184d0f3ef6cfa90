"""``swinkit show``: pictures of the model's windows and of a model's attention, as PNG files.

``swinkit show windows`` draws the regular and shifted window partitions, the cyclic shift
with its sub-windows, and the SW-MSA mask of each window, from the model's own code.
``swinkit show attention`` overlays, on an image, where one query position attends in each
stage of a model (mean over heads and per head).
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "show", help="draw the windows, shift and masks, or a model's attention", description=__doc__
    )
    kinds = parser.add_subparsers(dest="picture", metavar="PICTURE")
    kinds.required = True

    windows = kinds.add_parser(
        "windows",
        help="window partition, shifted partition, cyclic shift and masks of a token map",
        description="Draw the regular partition, the displaced one, the cyclic shift with its sub-windows "
        "and each window's additive mask, for an H x W token map and window M (default: the slides' "
        "8x8 map with M = 4).",
    )
    windows.add_argument(
        "--size", type=int, nargs=2, default=(8, 8), metavar=("H", "W"), help="token map size (default 8 8)"
    )
    windows.add_argument("--window", type=int, default=4, metavar="M", help="window side M (default 4)")
    windows.add_argument("--shift", type=int, metavar="S", help="shift of the partition (default M // 2)")
    windows.add_argument("-o", "--output", required=True, help="PNG file to write")
    windows.set_defaults(handler=run_windows)

    attention = kinds.add_parser(
        "attention",
        help="where a query position attends in each stage of a model, overlaid on an image",
        description="Overlay on an image the attention of one query position (default: the centre) in "
        "blocks 0 (W-MSA) and 1 (SW-MSA) of every stage, mean over heads and per head.",
    )
    attention.add_argument(
        "--model", required=True, help="a swinkit run or export, a checkpoint file or folder, or a Hub id"
    )
    attention.add_argument("--image", required=True, help="image file (preprocessed as the model's evaluation does)")
    attention.add_argument("-o", "--output", required=True, help="PNG file to write")
    attention.add_argument(
        "--query",
        type=int,
        nargs=2,
        metavar=("ROW", "COL"),
        help="query position in pixels of the preprocessed input (default: its centre)",
    )
    attention.add_argument("--stage", type=_stage_number, help="only this stage, numbered as in the paper (1 to 4)")
    attention.add_argument("--block", type=int, help="only this block of each stage, from 0 (default: blocks 0 and 1)")
    attention.add_argument("--head", type=int, help="only this head next to the mean (default: the first --max-heads)")
    attention.add_argument("--max-heads", type=int, default=6, help="heads drawn per block without --head (default 6)")
    attention.add_argument("--device", choices=("cpu", "cuda"))
    attention.set_defaults(handler=run_attention)


def _stage_number(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more (stages count from 1, as in the paper), got {value}")
    return value


def run_windows(args: argparse.Namespace) -> int:
    from swinkit.viz import draw_windows, save_figure, window_figure_data

    data = window_figure_data(args.size[0], args.size[1], args.window, args.shift)
    path = save_figure(draw_windows(data), args.output)
    print(
        f"{data.height}x{data.width} tokens, M = {data.window}, shift {data.shift}: {data.num_windows} windows, "
        f"{data.num_naive_windows} without the cyclic shift; wrote {path}"
    )
    return 0


def run_attention(args: argparse.Namespace) -> int:
    from swinkit import viz

    model, preprocessing = viz.load_model(args.model, args.device)
    pixels = viz.preprocess_image(args.image, preprocessing)
    stage = args.stage - 1 if args.stage is not None else None  # the paper's numbering on the command line
    maps = viz.attention_maps(model, pixels, args.query, viz.select_blocks(model, stage, args.block))
    figure = viz.draw_attention(viz.denormalize(pixels, preprocessing), maps, args.head, args.max_heads)
    print(f"wrote {viz.save_figure(figure, args.output)}")
    return 0
