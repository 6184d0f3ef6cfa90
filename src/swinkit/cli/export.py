"""``swinkit export``: a trained model as ONNX (checked with onnxruntime) or a torch.export program.

ONNX is written in fp32 or int8 (onnxruntime's dynamic quantization of the Linear layers,
checked against swinkit's int8 model); a torch.export program in fp32 or bf16. A segmenter's
ONNX can take any height and width (``--dynamic-size``; checked at the export size and another).
"""

from __future__ import annotations

import argparse

from swinkit.cli.arguments import add_img_size, add_patch_remainder, add_precision, img_size, patch_remainder_override


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export a model to ONNX or torch.export", description=__doc__)
    parser.add_argument("model", help="a swinkit run or export, a checkpoint file or folder, or a Hub id")
    parser.add_argument("--onnx", metavar="PATH", help="write an ONNX file (dynamic batch axis; fp32 or int8)")
    parser.add_argument("--pt2", metavar="PATH", help="write a torch.export program (dynamic batch axis; fp32 or bf16)")
    parser.add_argument(
        "--dynamic-size",
        action="store_true",
        help="segmenters: ONNX with a dynamic height and width too (checked at --img-size and at an odd size)",
    )
    add_img_size(parser)
    add_precision(parser)
    add_patch_remainder(parser)
    parser.add_argument("--no-check", dest="check", action="store_false", help="skip comparing onnxruntime's outputs")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import swinkit
    from swinkit.export import ONNX_TOLERANCE, check_export_precision, check_onnx, export_onnx, export_program
    from swinkit.precision import apply_precision

    if not args.onnx and not args.pt2:
        raise ValueError("nothing to do: give --onnx PATH and/or --pt2 PATH")
    for kind in ("onnx", "pt2"):
        if getattr(args, kind):
            check_export_precision(kind, args.precision)
    size = img_size(args.img_size)
    model = swinkit.create_model(pretrained=args.model, **patch_remainder_override(args)).eval()
    converted = apply_precision(model, args.precision)
    if args.onnx:
        path = export_onnx(model, args.onnx, size, precision=args.precision, dynamic_size=args.dynamic_size)
        print(f"wrote {path} ({args.precision}{', dynamic height and width' if args.dynamic_size else ''})")
        if args.check:
            tolerance = ONNX_TOLERANCE[args.precision]
            if args.precision == "fp32":
                sizes = _check_sizes(size, model.config.img_size, args.dynamic_size)
                difference = max(check_onnx(converted, path, checked) for checked in sizes)
                print(f"onnxruntime vs PyTorch: max abs difference {difference:.2e} (tolerance {tolerance:.0e})")
            else:
                difference = check_onnx(converted, path, size, relative=True)
                print(
                    f"onnxruntime {args.precision} vs swinkit {args.precision}: max abs difference "
                    f"{difference:.2%} of the largest logit (tolerance {tolerance:.0%})"
                )
            if difference > tolerance:
                print("warning: the difference is above the tolerance")
                return 1
    if args.pt2:
        export_program(converted, args.pt2, size)
        print(f"wrote {args.pt2} ({args.precision})")
    return 0


def _check_sizes(
    size: int | tuple[int, int] | None, default: tuple[int, int], dynamic: bool
) -> list[int | tuple[int, int] | None]:
    """The export size, and for a dynamic-size export another whose sides are odd (so that every stage pads)."""
    if not dynamic:
        return [size]
    height, width = (size, size) if isinstance(size, int) else (size or default)
    return [(height, width), (height + height // 4 + 1 - height % 2, width + width // 4 + 1 - width % 2)]
