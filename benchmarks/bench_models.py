"""Swin-T: swinkit against timm, torchvision and transformers, same process, interleaved.

    python benchmarks/bench_models.py [--bf16] [--compile] [--rounds 7]

Writes benchmarks/results/cpu.json and cpu.md (the table the README quotes). The
measuring code is swinkit.benchmark, also run by ``swinkit bench``.

Swin V2-T at 256 against timm's swinv2_tiny_window8_256, torchvision's swin_v2_t and
transformers' Swinv2ForImageClassification (swinkit.benchmark_v2):

    python benchmarks/bench_models.py --model swinv2_t --bf16 [--device cuda]

writes benchmarks/results/swinv2_t-cpu.{json,md} (or swinv2_t-cuda.*).
"""

from swinkit.benchmark import main

if __name__ == "__main__":
    raise SystemExit(main())
