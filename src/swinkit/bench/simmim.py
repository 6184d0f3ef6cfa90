"""SimMIM pre-training as evidence: fine-tuning on 10% of the labels against training from scratch, and its speed.

    swinkit bench simmim                  # the full run: 3 seeds, pre-training 80 s, fine-tuning 35 s (~14 min),
                                          # then the speed and memory of one training step (~3 min)
    swinkit bench simmim --quick          # a smoke run: seed 0, 600 + 200 images, 20 s + 10 s, a compact speed test
    swinkit bench simmim --pretrain-time 120 --finetune-time 45 --seeds 0 1 2
    swinkit bench simmim --speed-only     # only the speed and memory against transformers

The set is small_data's ``cluttered`` digits (3,000 training and 1,000 validation images of
32x32, built here without any download). For each seed ``S``, every run a separate process:

- the labelled subset: 10% of the training images, stratified by class, drawn with seed ``S``;
- ``scratch, equal fine-tuning time``: ``swinkit train --data TEN --val VAL --time F --model M``;
- ``swinkit pretrain --data TRAIN --time P --model M --seed S``: every training image, labels
  ignored, 10% of them held out for the reconstruction loss that picks the checkpoint (``best``)
  fine-tuning starts from; the validation images are never seen before evaluation;
- ``fine-tuned``: ``swinkit train --pretrained RUN --data TEN --val VAL --epochs E ...``: the architecture
  and normalisation from the checkpoint, the layer decay of its size by default; the epochs,
  batch, learning rate, schedule, clipping and augmentation those the data-chosen recipe gave
  the scratch run of the same seed at the same time (its epochs were fitted to ``F`` for the
  same architecture, images and batch); ``--recipe finetune``'s own are the Hugging Face
  example's (three epochs at 5e-5, accumulating four batches), which do not fill a budget;
- ``scratch, equal total time``: ``swinkit train --data TEN --val VAL --time P+F --model M``.

Architecture-fair: the same ``--model M`` (default ``swin_atto``, what the recipe picks for
300 images of 32 pixels: patch 2, window 4, three stages) is passed to the pre-training and to
both scratch runs, so that no run steps down the ladder on its own; fine-tuning takes it from
the checkpoint. Validation top-1 is the last epoch's; reported as mean and standard deviation
over the seeds, with the differences against each scratch row and the issue's target (at least
3 points over scratch at equal total time).

Then the speed of one pre-training step, interleaved in this process: swinkit's
:class:`~swinkit.model.SimMIM` and transformers' ``SwinForMaskedImageModeling`` of the same
configuration with the same weights (swinkit's saved in transformers' layout and read by
``from_pretrained``; their losses checked equal first), each a forward on the same images with
the same boolean mask, the masked L1 loss, backward and an AdamW step; images per second
(medians of the rounds) and the peak memory two steps add, each measured in a fresh process.

Writes ``simmim.json`` and ``simmim.md`` to ``--output`` (``benchmarks/results``; ``simmim_quick.*``
with ``--quick``, ``simmim_speed.*`` with ``--speed-only``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import nn

import swinkit
from swinkit.bench import measure, tables
from swinkit.bench.small_sets import cluttered_set, load_folder, write_folder
from swinkit.checkpoints import save_simmim
from swinkit.data import stratified_split
from swinkit.model import SimMIM
from swinkit.model.simmim import MaskGenerator

#: The issue's target: fine-tuning beats scratch at equal total time by at least this many points of top-1.
TARGET_POINTS = 3.0
#: The rows of the accuracy table, in order.
ROWS = ("scratch, equal fine-tuning time", "scratch, equal total time", "fine-tuned from pre-training")
#: The data-chosen settings of the scratch run at equal time that fine-tuning takes, with their flags: its epochs
#: (fitted to the time: same architecture, images and batch, so the same time), optimiser and augmentation.
FINETUNE_FLAGS = {
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "accum_steps": "--accum-steps",
    "warmup_epochs": "--warmup-epochs",
    "min_lr": "--min-lr",
    "clip_grad": "--clip-grad",
    "lr": "--lr",
    "weight_decay": "--weight-decay",
    "label_smoothing": "--smoothing",
    "hflip": "--hflip",
    "crop": "--crop",
    "pad": "--pad",
    "scale": "--scale",
    "auto_augment": "--auto-augment",
    "mixup": "--mixup",
    "cutmix": "--cutmix",
    "re_prob": "--re-prob",
}
#: The speed test's configurations: the full run's (the official pre-training input and window) and --quick's.
SPEED_MODELS = {"full": ("simmim_swin_t", 192, 8), "quick": ("simmim_swin_atto", 32, 32)}


def build_cluttered(root: Path, train: int, val: int) -> Path:
    """The small-data benchmark's cluttered digits as image folders ``root/train`` and ``root/val``."""
    images = cluttered_set(train, val)
    write_folder(root / "train", images.train_images, images.train_labels)
    write_folder(root / "val", images.val_images, images.val_labels)
    return root


def labelled_subset(train: Path, out: Path, fraction: float, seed: int) -> int:
    """Write ``fraction`` of the image folder ``train`` (stratified by class, seed ``seed``) to ``out``; its size."""
    images, labels = load_folder(train)
    _, chosen = stratified_split(labels.tolist(), fraction, seed=seed)
    for index in chosen:
        folder = out / str(int(labels[index]))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[index]).save(folder / f"{index:05d}.png")
    return len(chosen)


def finetune_flags(settings: dict) -> list[str]:
    """The flags giving a fine-tuning run the data-chosen settings of a scratch run (``config.json``'s ``train``)."""
    flags: list[str] = []
    for key, flag in FINETUNE_FLAGS.items():
        value = settings.get(key)
        if value is None:
            continue
        flags += [flag, *(f"{v:g}" for v in value)] if isinstance(value, list) else [flag, f"{value}"]
    return flags


def run(command: str, *arguments: str) -> tuple[dict, float]:
    """``swinkit COMMAND ARGUMENTS`` in a fresh process: its run's last metrics row and its wall-clock seconds."""
    began = time.monotonic()
    done = subprocess.run(
        measure.swinkit_command(command, *arguments), capture_output=True, text=True, env=measure.child_env()
    )
    seconds = time.monotonic() - began
    if done.returncode:
        raise SystemExit(f"swinkit {command} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    folder = Path(arguments[arguments.index("--output") + 1]) / arguments[arguments.index("--name") + 1]
    rows = (folder / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    return dict(zip(header, rows[-1].split(","))) | {"epochs": len(rows) - 1}, seconds


def one_seed(
    data: Path, root: Path, seed: int, model: Sequence[str], pretrain: float, finetune: float
) -> dict[str, dict]:
    """The three rows of one seed, each its own process: scratch at ``finetune`` and at the total, the fine-tune.

    ``model`` is the flags naming the architecture (``--model M`` and any ``--set``), given to the pre-training and
    to both scratch runs.
    """
    ten = root / f"ten-seed{seed}"
    count = labelled_subset(data / "train", ten, 0.1, seed)
    runs = root / "runs"
    common = ["--data", str(ten), "--val", str(data / "val"), "--seed", str(seed), "--output", str(runs)]
    out: dict[str, dict] = {}

    def classified(label: str, *arguments: str) -> dict:
        print(f"seed {seed}: {label} ...", flush=True)
        row, seconds = run("train", *common, *arguments)
        result = {"top1": float(row["val_top1"]), "epochs": row["epochs"], "seconds": seconds}
        print(f"  top-1 {result['top1']:.2f}%, {result['epochs']} epochs, {seconds:.0f}s", flush=True)
        return result

    name = f"scratch-f-{seed}"
    out[ROWS[0]] = classified(ROWS[0], "--time", f"{finetune:g}s", *model, "--name", name)
    chosen = json.loads((runs / name / "config.json").read_text())["train"]
    images = len(list((data / "train").rglob("*.png")))
    print(f"seed {seed}: pre-training on the {images} training images (10% held out for its loss) ...", flush=True)
    row, seconds = run(
        "pretrain", "--data", str(data / "train"), "--time", f"{pretrain:g}s", *model, "--seed", str(seed),
        "--output", str(runs), "--name", f"pretrain-{seed}",
    )  # fmt: skip
    pretrained = {"val_loss": float(row["val_loss"]), "epochs": row["epochs"], "seconds": seconds}
    print(f"  masked L1 {pretrained['val_loss']:.4f}, {pretrained['epochs']} epochs, {seconds:.0f}s", flush=True)
    out[ROWS[2]] = classified(
        ROWS[2], "--pretrained", str(runs / f"pretrain-{seed}"), *finetune_flags(chosen), "--name", f"finetune-{seed}",
    )  # fmt: skip
    out[ROWS[2]]["pretraining"] = pretrained
    out[ROWS[1]] = classified(
        ROWS[1], "--time", f"{pretrain + finetune:g}s", *model, "--name", f"scratch-total-{seed}"
    )
    out["labelled"] = {"images": count}
    return out


def build_pair(name: str, size: int, folder: Path, seed: int = 0) -> tuple[SimMIM, nn.Module]:
    """swinkit's SimMIM ``name`` at ``size`` pixels and transformers' model of it with the same weights."""
    import transformers

    torch.manual_seed(seed)
    ours = swinkit.create_model(name, img_size=size)
    save_simmim(ours, folder, format="hf")
    theirs = transformers.SwinForMaskedImageModeling.from_pretrained(folder)
    return ours.train(), theirs.train()


def pretraining_step(model: nn.Module, images: torch.Tensor, mask: torch.Tensor, hf: bool) -> Callable[[], float]:
    """One pre-training step: forward with the boolean ``mask``, the masked L1 loss, backward, AdamW; its loss."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> float:
        if hf:
            loss = model(images, bool_masked_pos=mask.flatten(1)).loss
        else:
            loss = model.loss(images, model(images, mask), mask)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    return step


def inputs(model: SimMIM, batch: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of random images for ``model`` and SimMIM masks drawn for its input."""
    generator = torch.Generator().manual_seed(seed)
    size = model.config.img_size
    images = torch.randn(batch, model.config.in_chans, *size, generator=generator)
    return images, MaskGenerator.for_model(model.config)(batch, generator)


def equal_loss(ours: SimMIM, theirs: nn.Module, images: torch.Tensor, mask: torch.Tensor) -> float:
    """The absolute difference of the two models' losses on the same images and mask (evaluation mode)."""
    ours.eval(), theirs.eval()
    with torch.no_grad():
        mine = ours.loss(images, ours(images, mask), mask)
        reference = theirs(images, bool_masked_pos=mask.flatten(1)).loss
    ours.train(), theirs.train()
    return float((mine - reference).abs())


def memory_worker(system: str, name: str, size: int, batch: int) -> dict:
    """In a fresh process: the peak resident memory two pre-training steps of ``system``'s model add, MB."""
    with tempfile.TemporaryDirectory(prefix="swinkit-simmim-memory-") as folder:
        ours, theirs = build_pair(name, size, Path(folder))
    images, mask = inputs(ours, batch)
    model = theirs if system == "transformers" else ours
    step = pretraining_step(model, images, mask, hf=system == "transformers")
    before = measure.resident_mb()
    step()
    step()
    return {"peak_mb": measure.peak_resident_mb() - before}


def speed(name: str, size: int, batch: int, rounds: int, repeats: int) -> dict:
    """Images per second of a pre-training step, swinkit against transformers, interleaved; peak memory of each."""
    import transformers

    with tempfile.TemporaryDirectory(prefix="swinkit-simmim-speed-") as folder:
        ours, theirs = build_pair(name, size, Path(folder))
    images, mask = inputs(ours, batch)
    difference = equal_loss(ours, theirs, images, mask)
    if difference > 1e-4:
        raise SystemExit(f"swinkit's and transformers' losses differ by {difference:.2e}: not the same model")
    steps = {
        "swinkit": pretraining_step(ours, images, mask, hf=False),
        "transformers": pretraining_step(theirs, images, mask, hf=True),
    }
    seconds = measure.interleaved(steps, rounds=rounds, repeats=repeats)
    throughput = {system: batch / statistics.median(values) for system, values in seconds.items()}
    memory = {
        system: measure.worker_result(
            ["bench", "simmim", "--memory-worker", system, "--speed-model", name, "--speed-size", str(size),
             "--speed-batch", str(batch)]
        )["peak_mb"]
        for system in steps
    }  # fmt: skip
    print("  images/s", {k: f"{v:.1f}" for k, v in throughput.items()}, "peak MB", memory, flush=True)
    return {
        "model": name,
        "img_size": size,
        "batch": batch,
        "loss_difference": difference,
        "images_per_second": throughput,
        "seconds": seconds,
        "peak_mb": memory,
        "transformers": transformers.__version__,
    }


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(seeds: dict[str, dict]) -> dict:
    """Mean and standard deviation of each row's top-1 over the seeds, and of the fine-tune's gain over each scratch
    row (paired by seed); whether the gain at equal total time meets :data:`TARGET_POINTS`."""
    top1 = {row: [entry[row]["top1"] for entry in seeds.values()] for row in ROWS}
    gains = {
        row: [tuned - scratch for tuned, scratch in zip(top1[ROWS[2]], top1[row])] for row in ROWS[:2]
    }  # fmt: skip
    total_gain = _mean_sd(gains[ROWS[1]])[0]
    return {
        "top1": {row: _mean_sd(values) for row, values in top1.items()},
        "gain": {row: _mean_sd(values) for row, values in gains.items()},
        "target_met": total_gain >= TARGET_POINTS,
    }


def to_markdown(results: dict) -> str:
    """The tables the README quotes: top-1 of the three rows with the gains and the target; the speed and memory."""
    lines = [f"Machine: {results['machine']}, torch {results['torch']}, transformers {results['transformers']}.", ""]
    if results.get("seeds"):
        summary = results["summary"]
        train, val = results["images"]["train"], results["images"]["val"]
        lines += [
            f"Cluttered digits (32x32, grey), 10% of the {train:,} training labels, {val:,} validation images; model "
            f"{results['model']} for every run; pre-training {results['pretrain_time']:g} s on the {train:,} training "
            f"images, fine-tuning {results['finetune_time']:g} s; seeds {results['seed_list']}; val top-1 % of the "
            "last epoch, mean ± sd over the seeds.",
            "",
        ]
        rows = []
        for row in ROWS:
            mean, spread = summary["top1"][row]
            runs = [entry[row] for entry in results["seeds"].values()]
            gain = (
                f"{summary['gain'][row][0]:+.2f} ± {summary['gain'][row][1]:.2f}" if row in summary["gain"] else ""
            )
            seconds = f"{statistics.mean(r['seconds'] for r in runs):.0f}"
            if all("pretraining" in r for r in runs):
                seconds += f" + {statistics.mean(r['pretraining']['seconds'] for r in runs):.0f} pre-training"
            rows.append([
                row, f"{mean:.2f} ± {spread:.2f}", gain, f"{statistics.mean(r['epochs'] for r in runs):.1f}", seconds,
            ])  # fmt: skip
        header = ["run", "val top-1 %", "fine-tuned minus this row", "epochs", "wall time s"]
        lines += tables.markdown_table(header, rows)
        met = "met" if summary["target_met"] else "not met"
        lines += [
            "",
            f"Target (fine-tuned at least {TARGET_POINTS:g} points over scratch at equal total time): **{met}**.",
        ]
    if "speed" in results:
        entry = results["speed"]
        rate, memory = entry["images_per_second"], entry["peak_mb"]
        lines += [
            "",
            f"One pre-training step of {entry['model']} at {entry['img_size']} px, batch {entry['batch']} (forward "
            "with the same mask, masked L1, backward, AdamW), same weights (losses differ by "
            f"{entry['loss_difference']:.1e}); medians of interleaved rounds; peak memory of two steps in a fresh "
            "process:",
            "",
        ]
        rows = [
            [system, f"{rate[system]:.2f}", f"{rate[system] / rate['transformers']:.3f}", f"{memory[system]:.0f}"]
            for system in rate
        ]
        lines += tables.markdown_table(["system", "images/s", "speed relative to transformers", "peak MB"], rows)
        met = "met" if rate["swinkit"] >= rate["transformers"] else "not met"
        lines += ["", f"Target (swinkit at least as fast as transformers): **{met}**."]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    """The options of ``swinkit bench simmim``."""
    parser = argparse.ArgumentParser(prog="swinkit bench simmim", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pretrain-time", type=float, default=80.0, help="seconds of pre-training (default 80)")
    parser.add_argument("--finetune-time", type=float, default=35.0, help="seconds of fine-tuning (default 35)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--model", default="swin_atto", help="the architecture of every run (default swin_atto)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a model field for every run, as train's --set"
    )
    parser.add_argument("--train-images", type=int, default=3000, help="training images of the set (default 3000)")
    parser.add_argument("--val-images", type=int, default=1000, help="validation images of the set (default 1000)")
    parser.add_argument("--speed-rounds", type=int, default=5)
    parser.add_argument("--speed-repeats", type=int, default=2, help="timed steps per system and round")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: seed 0, 600 + 200 images, 20 s + 10 s, a compact speed test"
    )
    parser.add_argument("--speed-only", action="store_true", help="only the speed and memory against transformers")
    parser.add_argument("--output", type=Path, default=tables.RESULTS, help="where simmim.json and .md go")
    parser.add_argument("--memory-worker", choices=("swinkit", "transformers"), help=argparse.SUPPRESS)
    parser.add_argument("--speed-model", default=SPEED_MODELS["full"][0], help=argparse.SUPPRESS)
    parser.add_argument("--speed-size", type=int, default=SPEED_MODELS["full"][1], help=argparse.SUPPRESS)
    parser.add_argument("--speed-batch", type=int, default=SPEED_MODELS["full"][2], help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``swinkit bench simmim``: pre-train, fine-tune, compare with scratch, time a step; write ``simmim.{json,md}``."""
    args = build_parser().parse_args(argv)
    if args.memory_worker:
        print(json.dumps(memory_worker(args.memory_worker, args.speed_model, args.speed_size, args.speed_batch)))
        return 0
    if args.quick:
        args.pretrain_time, args.finetune_time, args.seeds, args.speed_rounds = 20.0, 10.0, [0], 2
        args.train_images, args.val_images = 600, 200
        args.speed_model, args.speed_size, args.speed_batch = SPEED_MODELS["quick"]
    import transformers

    machine = measure.machine()
    results: dict = {
        "machine": f"{machine['cpu']}, {machine['cores']} cores, {machine['threads']} threads",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "quick": args.quick,
        "model": " ".join([args.model, *args.set]),
        "pretrain_time": args.pretrain_time,
        "finetune_time": args.finetune_time,
        "images": {"train": args.train_images, "val": args.val_images},
        "seed_list": [] if args.speed_only else args.seeds,
        "seeds": {},
    }
    began = time.monotonic()
    if not args.speed_only:
        with tempfile.TemporaryDirectory(prefix="swinkit-bench-simmim-") as scratch:
            root = Path(scratch)
            data = build_cluttered(root / "cluttered", args.train_images, args.val_images)
            for seed in args.seeds:
                model = ["--model", args.model, *(flag for field in args.set for flag in ("--set", field))]
                results["seeds"][str(seed)] = one_seed(data, root, seed, model, args.pretrain_time, args.finetune_time)
        results["summary"] = summarise(results["seeds"])
    if args.speed_rounds:
        print(f"speed: {args.speed_model} at {args.speed_size} px, batch {args.speed_batch}, interleaved ...")
        results["speed"] = speed(
            args.speed_model, args.speed_size, args.speed_batch, args.speed_rounds, args.speed_repeats
        )
    results["seconds"] = time.monotonic() - began
    suffix = ("_quick" if args.quick else "") + ("_speed" if args.speed_only else "")
    table = to_markdown(results)
    tables.write_results(args.output, f"simmim{suffix}", results, table)
    print(table)
    print(f"took {results['seconds']:.0f}s")
    return 0
