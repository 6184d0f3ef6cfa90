"""``swinkit models``: the registered variants with their parameters, FLOPs, input size, patch and window.

Swin V1 first (the paper's variants at ImageNet's 1000 classes, then the compact ladder for
small images, ``swin_atto`` .. ``swin_nano``, at 10 classes and 32x32), then Swin V2 in a
table of its own (with the pretrained windows and classes).
"""

from __future__ import annotations

import argparse

from swinkit.model import ALIASES, create_model, list_models
from swinkit.model.flops import count_flops


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list the model variants", description=__doc__)
    parser.set_defaults(handler=run)


def model_rows() -> list[dict[str, object]]:
    """One row per variant: name, timm alias, parameters, GFLOPs, input size, patch, window, version, V2 extras."""
    alias_of: dict[str, str] = {}
    for alias, canonical in ALIASES.items():
        alias_of.setdefault(canonical, alias)  # timm's current name, not a deprecated one
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
                "version": config.version,
                "pretrained_windows": ",".join(str(w) for w in config.pretrained_window_sizes) or "-",
                "classes": config.num_classes,
            }
        )
    return rows


def _v1_table(rows: list[dict[str, object]]) -> list[str]:
    lines = [f"{'model':<12} {'params':>13} {'GFLOPs':>8} {'input':>8} {'patch':>5} {'window':>6}  timm name"]
    for row in rows:
        lines.append(
            f"{row['name']:<12} {row['params']:>13,} {row['gflops']:>8.3f} {row['input']:>8} {row['patch']:>5} "
            f"{row['window']:>6}  {row['alias']}".rstrip()
        )
    lines.insert(1, "-" * max(len(line) for line in lines))
    return lines


def _v2_table(rows: list[dict[str, object]]) -> list[str]:
    lines = [
        f"{'Swin V2':<18} {'params':>13} {'GFLOPs':>8} {'input':>8} {'window':>6} {'pretrained':>10} "
        f"{'classes':>7}  timm name"
    ]
    for row in rows:
        lines.append(
            f"{row['name']:<18} {row['params']:>13,} {row['gflops']:>8.3f} {row['input']:>8} {row['window']:>6} "
            f"{row['pretrained_windows']:>10} {row['classes']:>7}  {row['alias']}"
        )
    lines.insert(1, "-" * max(len(line) for line in lines))
    return lines


def run(args: argparse.Namespace) -> int:
    rows = model_rows()
    lines = _v1_table([row for row in rows if row["version"] == 1])
    v2_rows = [row for row in rows if row["version"] == 2]
    if v2_rows:
        lines += [""] + _v2_table(v2_rows)
    print("\n".join(lines))
    return 0
