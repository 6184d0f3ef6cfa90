"""``swinkit export``: a trained model as ONNX (checked with onnxruntime) or a torch.export program."""

from __future__ import annotations

import argparse

from swinkit.cli.arguments import add_img_size, img_size


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export a model to ONNX or torch.export", description=__doc__)
    parser.add_argument("model", help="a swinkit run or export, a checkpoint file or folder, or a Hub id")
    parser.add_argument("--onnx", metavar="PATH", help="write an ONNX file (dynamic batch axis)")
    parser.add_argument("--pt2", metavar="PATH", help="write a torch.export program (dynamic batch axis)")
    add_img_size(parser)
    parser.add_argument("--no-check", dest="check", action="store_false", help="skip comparing onnxruntime's outputs")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import swinkit
    from swinkit.export import check_onnx, export_onnx, export_program

    if not args.onnx and not args.pt2:
        raise ValueError("nothing to do: give --onnx PATH and/or --pt2 PATH")
    size = img_size(args.img_size)
    model = swinkit.create_model(pretrained=args.model).eval()
    if args.onnx:
        path = export_onnx(model, args.onnx, size)
        print(f"wrote {path}")
        if args.check:
            difference = check_onnx(model, path, size)
            print(f"onnxruntime vs PyTorch: max abs difference {difference:.2e}")
            if difference > 1e-4:
                print("warning: the difference is above 1e-4")
                return 1
    if args.pt2:
        export_program(model, args.pt2, size)
        print(f"wrote {args.pt2}")
    return 0
