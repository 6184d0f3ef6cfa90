"""``swinkit export``: a trained model as ONNX (checked with onnxruntime) or a torch.export program.

ONNX is written in fp32 or int8 (onnxruntime's dynamic quantization of the Linear layers,
checked against swinkit's int8 model); a torch.export program in fp32 or bf16.
"""

from __future__ import annotations

import argparse

from swinkit.cli.arguments import add_img_size, add_patch_remainder, add_precision, img_size, patch_remainder_override


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export a model to ONNX or torch.export", description=__doc__)
    parser.add_argument("model", help="a swinkit run or export, a checkpoint file or folder, or a Hub id")
    parser.add_argument("--onnx", metavar="PATH", help="write an ONNX file (dynamic batch axis; fp32 or int8)")
    parser.add_argument("--pt2", metavar="PATH", help="write a torch.export program (dynamic batch axis; fp32 or bf16)")
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
        path = export_onnx(model, args.onnx, size, precision=args.precision)
        print(f"wrote {path} ({args.precision})")
        if args.check:
            tolerance = ONNX_TOLERANCE[args.precision]
            if args.precision == "fp32":
                difference = check_onnx(converted, path, size)
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
