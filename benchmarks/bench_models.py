"""Swin-T: swinkit against timm, torchvision and transformers, same process, interleaved.

    python benchmarks/bench_models.py [--bf16] [--compile] [--rounds 7]

Writes benchmarks/results/cpu.json and cpu.md (the table the README quotes). The
measuring code is swinkit.benchmark, also run by ``swinkit bench``.
"""

from swinkit.benchmark import main

if __name__ == "__main__":
    raise SystemExit(main())
