"""``swinkit flops``: the cost of window attention (Eq. 2) against global attention (Eq. 1), per stage.

Prints, for each stage, the projections ``4hwC^2``, the window attention ``2M^2hwC`` and the
global attention ``2(hw)^2C`` (summed over the stage's blocks), the rest of the model, and
the totals (the W-MSA total is the model's FLOP count). ``--plot`` draws both costs against
image size, and ``--measure`` adds the measured forward time of swinkit at each size.
"""

from __future__ import annotations

import argparse

from swinkit.cli.arguments import add_img_size, img_size


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "flops", help="FLOPs per stage: window (Eq. 2) vs global (Eq. 1) attention", description=__doc__
    )
    parser.add_argument("--model", default="swin_t", help="a variant name (default swin_t) or a checkpoint")
    add_img_size(parser)
    parser.add_argument("--plot", metavar="PNG", help="also draw the costs against image size into this file")
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        metavar="SIDE",
        help="image sides of the plot (default 224 320 384 448 512 640 768 896 1024)",
    )
    parser.add_argument("--measure", action="store_true", help="time a forward pass at each size of the plot")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per size, median taken (default 3)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="where to time (default cpu)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from swinkit.viz import flops as viz_flops
    from swinkit.viz import save_figure

    if args.measure and not args.plot:
        raise ValueError("--measure times the sizes of the plot: give --plot FILE.png too")
    table = viz_flops.flops_table(args.model, img_size(args.img_size))
    print(f"{args.model} at {table.img_size[0]}x{table.img_size[1]}, GFLOPs per stage (summed over its blocks):")
    print(viz_flops.format_flops_table(table))
    if args.plot:
        sizes = args.sizes or viz_flops.DEFAULT_SIZES
        seconds, timed_on = None, ""
        if args.measure:
            model = viz_flops.resolve_model(args.model)
            seconds = viz_flops.measure_forward_seconds(model, sizes, args.repeats, args.device)
            times = ", ".join(f"{size}px {value * 1e3:.0f} ms" for size, value in zip(sizes, seconds))
            timed_on = viz_flops.describe_device(args.device)
            print(f"measured forward time ({timed_on}): {times}")
        curve = viz_flops.cost_curve(args.model, sizes, seconds, timed_on)
        figure = viz_flops.draw_flops(curve, title=f"{args.model}: cost of attention")
        print(f"wrote {save_figure(figure, args.plot)}")
    return 0
