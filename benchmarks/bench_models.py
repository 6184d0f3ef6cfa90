"""Swin-T: swinkit against timm, torchvision and transformers, same process, interleaved.

    python benchmarks/bench_models.py [--bf16] [--compile] [--rounds 7]      # CPU: fp32, int8, bf16 rows
    python benchmarks/bench_models.py --device cuda --bf16 --quick           # GPU: fp32, bf16, training

Writes benchmarks/results/cpu.json and cpu.md (gpu.json and gpu.md with --device cuda), the
tables the README quotes. The measuring code is swinkit.benchmark, also run by
``swinkit bench``.
"""

from swinkit.benchmark import main

if __name__ == "__main__":
    raise SystemExit(main())
