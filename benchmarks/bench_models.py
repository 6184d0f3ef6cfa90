"""Swin-T: swinkit against timm, torchvision and transformers, same process, interleaved.

    python benchmarks/bench_models.py [--bf16] [--compile] [--rounds 7]      # CPU: fp32, int8, bf16 rows
    python benchmarks/bench_models.py --device cuda --bf16 --quick           # GPU: fp32, bf16, training

Writes benchmarks/results/cpu.json and cpu.md (gpu.json and gpu.md with --device cuda), the
tables the README quotes. The measuring code is swinkit.benchmark, also run by
``swinkit bench``.

Swin V2-T at 256 against timm's swinv2_tiny_window8_256, torchvision's swin_v2_t and
transformers' Swinv2ForImageClassification (swinkit.benchmark_v2):

    python benchmarks/bench_models.py --model swinv2_t --bf16 [--device cuda]

writes benchmarks/results/swinv2_t-cpu.{json,md} (or swinv2_t-cuda.*).
"""

from swinkit.benchmark import main

if __name__ == "__main__":
    raise SystemExit(main())
