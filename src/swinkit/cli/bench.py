"""``swinkit bench NAME [options]``: run one of the benchmarks (the package ``swinkit.bench``).

``swinkit bench`` alone lists the names; ``swinkit bench NAME --help`` gives a benchmark's
options. Results go to ``benchmarks/results`` (each benchmark's ``--output`` to change it).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import NamedTuple

from swinkit.bench import detection, lora, models, segmentation, serve, simmim, small_data


class Benchmark(NamedTuple):
    """What a name runs: a benchmark's ``main``, with options put before the user's."""

    summary: str
    main: Callable[[Sequence[str]], int]
    preset: tuple[str, ...] = ()


BENCHMARKS = {
    "models": Benchmark("Swin-T speed and memory against timm, torchvision, transformers", models.main),
    "v2": Benchmark("the same for Swin V2-T at 256 (models --model swinv2_t)", models.main, ("--model", "swinv2_t")),
    "small-data": Benchmark(
        "training from scratch on small images against timm's Swin and ResNets, and a pixel floor", small_data.main
    ),
    "segmentation": Benchmark(
        "the segmenter against transformers' UperNet: speed, memory, mIoU in the same time", segmentation.main
    ),
    "detection": Benchmark(
        "swinkit train --task detect against torchvision's Mask R-CNN in a plain loop; step time, memory",
        detection.main,
    ),
    "serve": Benchmark("swinkit serve under load: requests/s and latency, batching on and off", serve.main),
    "lora": Benchmark("LoRA against a full fine-tune: parameters, accuracy, training memory", lora.main),
    "simmim": Benchmark(
        "SimMIM pre-training, then a tenth of the labels against scratch; its speed against transformers", simmim.main
    ),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``bench`` and one sub-command per benchmark, whose options go to the benchmark as they came."""
    parser = subparsers.add_parser(
        "bench", help="benchmarks against timm, torchvision, transformers", description=__doc__
    )
    names = parser.add_subparsers(dest="benchmark", metavar="NAME")
    for name, benchmark in BENCHMARKS.items():
        entry = names.add_parser(name, help=benchmark.summary, description=benchmark.summary, add_help=False)
        entry.add_argument("options", nargs=argparse.REMAINDER, help=f"options (swinkit bench {name} --help)")
    parser.set_defaults(handler=run, benchmark=None)


def listing() -> str:
    """The benchmarks' names, one a line with what each measures."""
    width = max(map(len, BENCHMARKS))
    lines = [f"  {name:<{width}}  {benchmark.summary}" for name, benchmark in BENCHMARKS.items()]
    return "\n".join(["swinkit bench NAME [options]; NAME is one of:", *lines])


def run(args: argparse.Namespace) -> int:
    """Run the named benchmark with the given options; without a name, list the names."""
    if args.benchmark is None:
        print(listing())
        return 0
    benchmark = BENCHMARKS[args.benchmark]
    return benchmark.main([*benchmark.preset, *args.options])
