"""Benchmarks: swinkit measured against its peers, each run by ``swinkit bench NAME``.

:mod:`~swinkit.bench.measure` holds the measuring helpers and :mod:`~swinkit.bench.tables` the
one writer of results (JSON and the Markdown tables the README quotes, in
``benchmarks/results``); each other module is one benchmark with a ``main(argv)`` (but
:mod:`~swinkit.bench.small_sets` and :mod:`~swinkit.bench.plain_loop`, parts of the small-data one, and
:mod:`~swinkit.bench.scenes`):
:mod:`~swinkit.bench.models` (speed and memory of Swin-T or V2-T against timm, torchvision
and transformers), :mod:`~swinkit.bench.small_data` (training from scratch on small images
against timm's Swin, ResNet-18 and ResNet-10-T in a plain loop and a logistic regression on the
pixels), :mod:`~swinkit.bench.segmentation` (the segmenter against transformers' UperNet: speed,
memory, and mIoU in the same training time; its data set built by :mod:`~swinkit.bench.scenes`),
:mod:`~swinkit.bench.detection` (``swinkit train --task detect`` against torchvision's Mask R-CNN: AP in the
same time, step time and memory), :mod:`~swinkit.bench.serve` (``swinkit serve`` under load),
:mod:`~swinkit.bench.lora` (LoRA against a full fine-tune) and :mod:`~swinkit.bench.simmim` (SimMIM
pre-training, then a tenth of the labels, against training from scratch; its step against transformers').
"""
