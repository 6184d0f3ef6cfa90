"""``swinkit models``: the registered variants with their parameters, FLOPs, input size, patch and window.

Parameters and FLOPs are those of the registered config: ImageNet's 1000 classes for the
paper's variants, 10 classes at 32x32 for the compact ladder (``swin_atto`` .. ``swin_nano``).
"""

from __future__ import annotations

import argparse

from swinkit.model import ALIASES, create_model, list_models
from swinkit.model.flops import count_flops


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list the model variants", description=__doc__)
    parser.set_defaults(handler=run)


def model_rows() -> list[dict[str, object]]:
    """One row per variant: name, timm alias, parameters, GFLOPs, input size, patch, window."""
    alias_of = {canonical: alias for alias, canonical in ALIASES.items()}
    rows = []
    for name in list_models():
        model = create_model(name, device="meta")
        config = model.config
        rows.append(
            {
                "name": name,
                "alias": alias_of.get(name, ""),
                "params": sum(p.numel() for p in model.parameters()),
                "gflops": count_flops(config).gflops,
                "input": f"{config.img_size[0]}x{config.img_size[1]}",
                "patch": config.patch_size,
                "window": config.window_size,
            }
        )
    return rows


def run(args: argparse.Namespace) -> int:
    rows = model_rows()
    lines = [f"{'model':<12} {'params':>13} {'GFLOPs':>8} {'input':>8} {'patch':>5} {'window':>6}  timm name"]
    for row in rows:
        lines.append(
            f"{row['name']:<12} {row['params']:>13,} {row['gflops']:>8.3f} {row['input']:>8} {row['patch']:>5} "
            f"{row['window']:>6}  {row['alias']}".rstrip()
        )
    lines.insert(1, "-" * max(len(line) for line in lines))
    print("\n".join(lines))
    return 0
