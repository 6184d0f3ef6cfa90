"""Training from scratch on small images: ``swinkit train`` with the data-chosen recipe against timm's Swin,
ResNet-18 and ResNet-10-T in a plain loop, and a logistic regression on the pixels as the floor.

    swinkit bench small-data              # the full run: 3 sets x 3 sizes x 3 seeds x 4 systems (~50 min)
    swinkit bench small-data --quick      # a smoke run: seed 0, 20 images a class, 20 s budgets (~4 min)
    swinkit bench small-data --sets photos --sizes 20 60 --seeds 0 --systems swinkit resnet18 logreg
    swinkit bench small-data --budget full=45 60=25 20=15     # budgets per size (--budget 45: every size)
    swinkit bench small-data --variant ema="--ema"            # an extra row: swinkit train --ema
    swinkit bench small-data --speed-only # only the per-step speed comparison

Three data sets, built here without any download (:mod:`swinkit.bench.small_sets`), each as
image folders (``train/``, ``val/``):

- ``digits``: scikit-learn's 8x8 handwritten digits (1,797), 10% held out, stratified;
- ``cluttered``: those digits enlarged to 32x32 with a random rotation (up to 15 degrees),
  scale, shear and shift, among one to three fragments of other digits, on a random
  background level with pixel noise; 3,000 training and 1,000 validation images drawn
  from disjoint source digits (75% / 25%), so that no validation image shares its digit
  with a training image;
- ``photos``: natural-looking 32x32 colour images, 10 classes: crops of the ten photographs
  that ship inside scikit-learn (china, flower) and scikit-image (astronaut, chelsea,
  coffee, rocket, Hubble deep field, immunohistochemistry, retina, motorcycle), the class
  being the photograph; each crop a random square of 24 to 60 pixels (the photograph's
  shorter side scaled to 300), rotated by up to 30 degrees, mirrored half the time, with
  random brightness, contrast and saturation and pixel noise; 300 training and 100
  validation crops a class, the training crops from the first 70% of each photograph's
  longer side and the validation crops from the last 30% (no pixel in both).

Each set at three sizes (``--sizes``): its full training part, and cut to 60 and to 20
training images per class (stratified, drawn with the run's seed, so that every system of a
seed trains on the same images); the validation part stays whole. Each size has its own
time budget (``--budget``, default full 45 s, 60 a class 30 s, 20 a class 20 s: starting Python and
importing PyTorch take about 6 s of each on a 2-core CPU).

For each set, size and seed, every system (``--systems``), each in a fresh process with the
same wall-clock budget:

- ``swinkit``: ``swinkit train --data train/ --val val/ --time BUDGET --seed S`` (with
  ``--swinkit-args``, if given): every other setting chosen from the data (model, input
  size, batch, lr, epochs from timed steps, augmentation). Each ``--variant NAME=ARGS``
  adds a row ``swinkit NAME``: ``swinkit train`` with ``ARGS`` added;
- each baseline of :data:`BASELINES`, in a plain PyTorch loop over the decoded images with
  a typical small-image recipe: zero-pad 1/8 of the side and random crop, horizontal flip,
  AdamW (lr 1e-3, weight decay 0.05 on weights), 5% linear warm-up then cosine, label
  smoothing 0.1, batch 64, the set's mean and std per channel; its epochs fitted to the same
  budget from five timed steps, as a user would, evaluated after every epoch. The baselines:
  ``timm-swin``, timm's ``SwinTransformer`` with the architecture swinkit chose (same input,
  patch, window, width, depths, heads, channels; drop path 0.1; it needs the swinkit run of
  the same seed); ``resnet18`` and ``resnet10t``, ``timm.create_model(name, in_chans=C,
  num_classes=K)`` at the images' own size, with timm's ImageNet stem kept as timm builds it
  (stride-2 convolution and max-pool, as a user typically keeps it at 32x32), no drop path.
  A baseline's budget counts from its process's start (Python and imports included), as
  ``swinkit train --time`` counts it: both get the same wall-clock time;
- ``logreg``, the floor: scikit-learn's ``LogisticRegression`` (L2, C=1, lbfgs, up to
  5,000 iterations) on the standardised raw pixels, without a time budget; its fit time is
  reported.

All timed systems run as separate processes; the time reported is each process's wall-clock
time from start to exit (start-up, data loading and the final evaluation included).
Validation top-1 is the last epoch's, not the best epoch's. The tables give, per set and
size, each system's mean and sample standard deviation over the seeds, its difference to
ResNet-18's mean, and whether swinkit meets the target: a mean top-1 no lower than ResNet-18's
mean less the larger of the two standard deviations, in a mean wall time at most 5% above
ResNet-18's, and a mean top-1 above the floor's.

With ``--speed-rounds N``, a per-step speed comparison, interleaved in one process, on the
cluttered set with the model and batch the recipe picks before any timing (swin_femto,
patch 2, batch 64): (a) ``swinkit train``'s own loop (``swinkit.tasks.train``, the code the
command runs; its epochs after the first), (b) the same swinkit model in a plain loop over
decoded tensors with the same augmentation, optimiser and clipping, (c) timm's Swin of the
same configuration in that plain loop.

Writes ``small_data.json`` (every run) and ``small_data.md`` to ``--output``
(``benchmarks/results``; ``small_data_quick.*`` with ``--quick``), and, after a run that is not
``--quick``, without ``--swinkit-args`` and with swinkit, ResNet-18 and the floor, the summary
``swinkit train`` reads, :data:`MEASURED` (``--measured`` to put it elsewhere).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import math
import shlex
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

import swinkit
from swinkit.bench import measure, tables
from swinkit.bench.plain_loop import PlainLoop, channel_stats
from swinkit.bench.small_sets import SETS, SmallSet, load_folder, per_class_cut, write_folder
from swinkit.train.config import TrainConfig
from swinkit.train.timing import process_age
from swinkit.tasks import train

#: The machine-readable summary ``swinkit train`` reads: per set and size, what the recipe chose and measured.
MEASURED = Path(swinkit.__file__).parent / "train" / "small_data_measured.json"
#: Training images per class of each size (``None``: the full training part), and the default budgets, seconds.
BUDGETS: dict[str, float] = {"full": 45.0, "60": 30.0, "20": 20.0}
QUICK_BUDGET = 20.0
#: Seconds a timed run takes beyond its budget (the process start and exit), for the estimate printed at the start.
OVERHEAD = 2.0


def timm_swin(model_config: dict, drop_path: float) -> nn.Module:
    """timm's SwinTransformer with the architecture of a swinkit model config (``config.json``'s ``model``)."""
    from timm.models.swin_transformer import SwinTransformer

    size = model_config["img_size"]
    return SwinTransformer(
        img_size=tuple(size),
        patch_size=model_config["patch_size"],
        in_chans=model_config["in_chans"],
        num_classes=model_config["num_classes"],
        embed_dim=model_config["embed_dim"],
        depths=tuple(model_config["depths"]),
        num_heads=tuple(model_config["num_heads"]),
        window_size=model_config["window_size"],
        mlp_ratio=model_config["mlp_ratio"],
        drop_path_rate=drop_path,
    )


def timm_cnn(name: str, model_config: dict, drop_path: float) -> nn.Module:
    """timm's CNN ``name`` for the data's channels and classes, its stem as timm builds it; no stochastic depth
    (``drop_path`` is for the transformers: a user training a ResNet-18 from scratch typically has none)."""
    import timm

    return timm.create_model(name, in_chans=model_config["in_chans"], num_classes=model_config["num_classes"])


class Baseline(NamedTuple):
    """A system trained in the plain loop: how its model is built from a model config and a stochastic depth,
    and whether it takes the architecture swinkit chose (then it needs swinkit's run of the same seed; otherwise
    the config holds only the data's ``in_chans``, ``num_classes`` and ``img_size``)."""

    build: Callable[[dict, float], nn.Module]
    follows_swinkit: bool


#: The systems trained in the plain loop against ``swinkit train``. Each adds its rows to the tables.
BASELINES: dict[str, Baseline] = {
    "timm-swin": Baseline(timm_swin, follows_swinkit=True),
    "resnet18": Baseline(functools.partial(timm_cnn, "resnet18"), follows_swinkit=False),
    "resnet10t": Baseline(functools.partial(timm_cnn, "resnet10t"), follows_swinkit=False),
}
#: Every system, in the order of the tables: swinkit, the baselines, the floor.
SYSTEMS = ("swinkit", *BASELINES, "logreg")
REFERENCE = "resnet18"


def swinkit_model(model_config: dict, drop_path: float) -> nn.Module:
    """swinkit's model of a run's model config (``config.json``'s ``model``), with stochastic depth ``drop_path``."""
    fields = {k: v for k, v in model_config.items() if k != "labels"} | {"drop_path_rate": drop_path}
    return swinkit.create_model("swin_t", **fields)


def data_config(images: np.ndarray, labels: np.ndarray) -> dict:
    """The part of a model config a baseline that does not follow swinkit reads: channels, classes, input size."""
    return {
        "in_chans": 1 if images.ndim == 3 else images.shape[3],
        "num_classes": int(labels.max()) + 1,
        "img_size": list(images.shape[1:3]),
    }


def run_baseline(train_dir: Path, val_dir: Path, run: Path | None, budget: float, seed: int, system: str) -> dict:
    """``system``'s model (:data:`BASELINES`) in the plain loop, fitted to ``budget``; ``run`` is swinkit's run of
    the same seed, read by a baseline that follows swinkit's architecture."""
    start = time.monotonic() - process_age()  # the budget counts from the process start, as swinkit train's does
    torch.manual_seed(seed)
    baseline = BASELINES[system]
    train_images, train_labels = load_folder(train_dir)
    val_images, val_labels = load_folder(val_dir)
    if baseline.follows_swinkit:
        if run is None:
            raise SystemExit(f"{system} takes the architecture of swinkit's run: give --run")
        model_config = json.loads((run / "config.json").read_text())["model"]
        if train_images.shape[1] != model_config["img_size"][0]:
            raise SystemExit(
                f"{system} expects images of the model's input size {model_config['img_size'][0]}, "
                f"got {train_images.shape[1:]}"
            )
    else:
        model_config = data_config(train_images, train_labels)
    mean, std = channel_stats(train_images)
    side = train_images.shape[1]

    def fresh_loop() -> PlainLoop:
        torch.manual_seed(seed)
        return PlainLoop(
            baseline.build(model_config, 0.1), train_images, train_labels, batch=64, lr=1e-3, mean=mean, std=std,
            pad=max(1, side // 8), flip=True, clip=0.0, seed=seed,
        )  # fmt: skip

    # Fit the epochs to the budget from five timed steps (after one untimed), as a user would.
    loop = fresh_loop()
    batches = loop.endless()
    loop.step(*next(batches))
    began = time.perf_counter()
    for _ in range(5):
        loop.step(*next(batches))
    per_step = (time.perf_counter() - began) / 5
    eval_seconds = len(val_images) * per_step / loop.batch / 3
    per_epoch = loop.steps_per_epoch * per_step + eval_seconds
    epochs = max(1, math.floor((budget - (time.monotonic() - start)) / per_epoch))
    # The timing steps were real steps: start the schedule afresh with a new model and optimiser.
    loop = fresh_loop()
    loop.total = epochs * loop.steps_per_epoch
    top1 = []
    for _ in range(epochs):
        for images, labels in loop.batches():
            loop.step(images, labels)
        top1.append(loop.evaluate(val_images, val_labels))
    return {"top1": top1[-1], "best_top1": max(top1), "epochs": epochs, "seconds_in_loop": time.monotonic() - start}


def chosen_model(run: Path) -> str:
    """What swinkit's recipe chose in run folder ``run``, as ``swinkit train`` prints it: ``swin_atto (patch 4)``."""
    config = json.loads((run / "config.json").read_text())
    return f"{config['train']['model']} (patch {config['model']['patch_size']})"


def run_swinkit(
    train_dir: Path, val_dir: Path, output: Path, name: str, budget: float, seed: int, extra: Sequence[str] = ()
) -> dict:
    """``swinkit train`` in a fresh process, every setting not in ``extra`` chosen from the data: its accuracy, time
    and chosen model."""
    command = measure.swinkit_command(
        "train", "--data", str(train_dir), "--val", str(val_dir), "--time", f"{budget:g}s",
        "--seed", str(seed), "--output", str(output), "--name", name, *extra,
    )  # fmt: skip
    began = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, env=measure.child_env())
    seconds = time.monotonic() - began
    if result.returncode:
        raise SystemExit(f"swinkit train failed:\n{result.stdout}\n{result.stderr}")
    rows = (output / name / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    values = [dict(zip(header, row.split(","))) for row in rows[1:]]
    plan = [line for line in result.stdout.splitlines() if line.startswith(("  ", "time:", "data:", "epochs take"))]
    return {
        "top1": float(values[-1]["val_top1"]),
        "best_top1": max(float(v["val_top1"]) for v in values),
        "epochs": len(values),
        "seconds": seconds,
        "model": chosen_model(output / name),
        "plan": plan,
    }


def logistic_floor(data: SmallSet) -> dict:
    """The floor: scikit-learn's logistic regression on the standardised pixels (L2, C=1, lbfgs, up to 5,000
    iterations); its validation top-1 (percent), fit seconds (standardising included) and iterations."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    began = time.monotonic()
    train_pixels = data.train_images.reshape(len(data.train_images), -1).astype(np.float64)
    scaler = StandardScaler().fit(train_pixels)
    classifier = LogisticRegression(max_iter=5000).fit(scaler.transform(train_pixels), data.train_labels)
    seconds = time.monotonic() - began
    val_pixels = scaler.transform(data.val_images.reshape(len(data.val_images), -1).astype(np.float64))
    top1 = 100.0 * float((classifier.predict(val_pixels) == data.val_labels).mean())
    return {"top1": top1, "seconds": seconds, "iterations": int(classifier.n_iter_.max())}


class Plan(NamedTuple):
    """What a run measures: sets, sizes with their budgets, seeds, systems, the swinkit variants and arguments."""

    sets: list[str]
    budgets: dict[str, float]
    seeds: list[int]
    systems: list[str]
    variants: dict[str, list[str]]
    swinkit_args: list[str]

    def runs(self) -> int:
        """Timed runs (swinkit, its variants, the baselines), each in its own process."""
        timed = [s for s in self.systems if s != "logreg"] + list(self.variants)
        return len(self.sets) * len(self.budgets) * len(self.seeds) * len(timed)

    def estimate(self) -> float:
        """Seconds the whole run should take: every timed run's budget and start-up; the floors not counted."""
        timed = len([s for s in self.systems if s != "logreg"]) + len(self.variants)
        per_set = sum(len(self.seeds) * timed * (budget + OVERHEAD) for budget in self.budgets.values())
        return len(self.sets) * per_set


def measure_size(plan: Plan, set_name: str, data: SmallSet, size: str, root: Path) -> dict:
    """Every system of ``plan`` on one set cut to ``size`` images a class (``full``: not cut), each seed."""
    budget = plan.budgets[size]
    val_dir = root / set_name / "val"
    if not val_dir.exists():
        write_folder(val_dir, data.val_images, data.val_labels)
    runs: dict[str, list[dict]] = {}
    floors: dict[bytes, dict] = {}
    classes = len(np.unique(data.train_labels))
    counts = []
    for seed in plan.seeds:
        cut = np.arange(len(data.train_labels)) if size == "full" else per_class_cut(data.train_labels, int(size), seed)
        counts.append(len(cut))
        train_dir = root / set_name / ("full" if size == "full" else f"{size}-seed{seed}") / "train"
        if not train_dir.exists():
            write_folder(train_dir, data.train_images[cut], data.train_labels[cut])
        name = f"{set_name}-{size}-seed{seed}"
        swinkit_runs = ({"swinkit": plan.swinkit_args} if "swinkit" in plan.systems else {}) | {
            f"swinkit {variant}": plan.swinkit_args + args for variant, args in plan.variants.items()
        }
        for system, extra in swinkit_runs.items():
            print(f"{set_name}, {size}, seed {seed}: {system} ...", flush=True)
            run_name = name + system.removeprefix("swinkit").replace(" ", "-")
            ours = run_swinkit(train_dir, val_dir, root / "runs", run_name, budget, seed, extra)
            runs.setdefault(system, []).append(ours)
            _report(runs[system][-1])
        for system in (s for s in plan.systems if s in BASELINES):
            print(f"{set_name}, {size}, seed {seed}: {system} in a plain loop ...", flush=True)
            began = time.monotonic()
            theirs = measure.worker_result(
                ["bench", "small-data", "--baseline", str(train_dir), "--baseline-val", str(val_dir),
                 "--run", str(root / "runs" / name), "--system", system, "--budget", str(budget), "--seed", str(seed)]
            )  # fmt: skip
            runs.setdefault(system, []).append(theirs | {"seconds": time.monotonic() - began})
            _report(runs[system][-1])
        if "logreg" in plan.systems:
            key = cut.tobytes()
            if key not in floors:
                print(f"{set_name}, {size}, seed {seed}: logistic regression on the pixels ...", flush=True)
                part = SmallSet(data.train_images[cut], data.train_labels[cut], data.val_images, data.val_labels)
                floors[key] = logistic_floor(part)
            runs.setdefault("logreg", []).append(floors[key])
            print(f"  top-1 {floors[key]['top1']:.2f}%, fit in {floors[key]['seconds']:.1f}s", flush=True)
    chosen = [run["model"] for run in runs.get("swinkit", [])]
    first = root / "runs" / f"{set_name}-{size}-seed{plan.seeds[0]}" / "config.json"
    return {
        "set": set_name,
        "size": size,
        "images_per_class": round(statistics.mean(counts) / classes),
        "train_images": round(statistics.mean(counts)),
        "budget_s": budget,
        "swinkit_model": Counter(chosen).most_common(1)[0][0] if chosen else None,
        "swinkit_config": json.loads(first.read_text()) if chosen else None,  # the first seed's config.json
        "runs": runs,
    }


def _report(run: dict) -> None:
    print(f"  top-1 {run['top1']:.2f}%, {run['epochs']} epochs, {run['seconds']:.1f}s", flush=True)


def speed(train_dir: Path, val_dir: Path, output: Path, rounds: int, steps: int) -> dict:
    """Seconds per training step, interleaved: swinkit train's loop, a plain loop with swinkit's model, with each
    baseline's that follows swinkit's architecture."""
    probe = output / "speed-probe"
    subprocess.run(
        measure.swinkit_command(
            "train", "--data", str(train_dir), "--val", str(val_dir), "--epochs", "1", "--quiet",
            "--output", str(output), "--name", probe.name,
        ),
        check=True, env=measure.child_env(),
    )  # fmt: skip
    chosen = json.loads((probe / "config.json").read_text())
    settings, model_config = chosen["train"], chosen["model"]
    train_images, train_labels = load_folder(train_dir)
    batch = settings["batch_size"]
    epochs = 1 + math.ceil(steps * batch / len(train_images))
    plain = {"swinkit": swinkit_model, **{name: b.build for name, b in BASELINES.items() if b.follows_swinkit}}
    times: dict[str, list[float]] = {"swinkit train": [], **{f"plain loop, {system} model": [] for system in plain}}
    for index in range(rounds):
        config = TrainConfig.from_dict(settings | {
            "epochs": epochs, "time_budget": 0.0, "quiet": True, "output": str(output), "name": f"speed-{index}",
            "val": None, "val_split": 0.0,
        })  # fmt: skip
        result = train(config)
        later = result.metrics[1:]
        steps_per_epoch = math.ceil(len(train_images) / batch)
        times["swinkit train"].append(sum(r["seconds"] for r in later) / (len(later) * steps_per_epoch))
        for system, build in plain.items():
            torch.manual_seed(index)
            loop = PlainLoop(
                build(model_config, model_config["drop_path_rate"]), train_images, train_labels, batch=batch,
                lr=settings["lr"], mean=settings["mean"], std=settings["std"], pad=settings["pad"] or 0,
                flip=settings["hflip"] > 0, clip=settings["clip_grad"], seed=index,
            )  # fmt: skip
            loop.total = 10**6
            batches = loop.endless()
            for _ in range(2):
                loop.step(*next(batches))
            began = time.perf_counter()
            for _ in range(steps):
                loop.step(*next(batches))
            times[f"plain loop, {system} model"].append((time.perf_counter() - began) / steps)
        print("  round", index + 1, {k: f"{1000 * v[-1]:.1f} ms" for k, v in times.items()}, flush=True)
    medians = {label: statistics.median(values) for label, values in times.items()}
    return {"batch": batch, "model": settings["model"], "seconds_per_step": medians, "rounds": times}


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _summary(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} ± {_spread(values):.2f}"


def top1(row: dict, system: str) -> tuple[float, float]:
    """Mean and sample standard deviation (0 with one seed) of ``system``'s top-1 over the seeds of ``row``."""
    values = [run["top1"] for run in row["runs"][system]]
    return statistics.mean(values), _spread(values)


def target(row: dict) -> str:
    """Whether swinkit meets the target on a set and size: a mean top-1 at least ResNet-18's less the larger of the
    two standard deviations, a mean wall time at most 5% above ResNet-18's, a mean top-1 above the floor's."""
    runs = row["runs"]
    if "swinkit" not in runs or REFERENCE not in runs:
        return f"not measured (needs swinkit and {REFERENCE})"
    (ours, our_sd), (theirs, their_sd) = top1(row, "swinkit"), top1(row, REFERENCE)
    our_time = statistics.mean(run["seconds"] for run in runs["swinkit"])
    their_time = statistics.mean(run["seconds"] for run in runs[REFERENCE])
    missed = []
    if ours < theirs - max(our_sd, their_sd):
        missed.append(f"{theirs - ours:.2f} points below {REFERENCE}, more than the spread {max(our_sd, their_sd):.2f}")
    if our_time > 1.05 * their_time:
        missed.append(f"{our_time / their_time:.2f}x {REFERENCE}'s time")
    if "logreg" in runs and ours <= top1(row, "logreg")[0]:
        missed.append(f"not above the floor ({top1(row, 'logreg')[0]:.2f})")
    return "missed: " + "; ".join(missed) if missed else "met"


def _size(row: dict) -> str:
    label = "full" if row["size"] == "full" else f"{row['size']} a class"
    return f"{label}: {row['train_images']:,}"


def _model(system: str, runs: list[dict]) -> str:
    if system.startswith("swinkit"):
        return " / ".join(dict.fromkeys(run["model"] for run in runs))  # what the recipe chose, each seed's
    return {"timm-swin": "swinkit's, in timm", "logreg": "pixels"}.get(system, system)


def to_markdown(results: dict) -> str:
    """The tables the README quotes: every system on every set and size, whether swinkit meets the target against
    ResNet-18 and the floor, then the speed per step if measured."""
    budgets = ", ".join(
        f"{'full' if size == 'full' else size + ' a class'} {budget:g} s" for size, budget in results["budgets"].items()
    )
    lines = [
        f"Machine: {results['machine']}, torch {results['torch']}, timm {results['timm']}; seeds {results['seeds']}; "
        f"budget per run: {budgets}.",
    ]
    if results.get("note"):  # how the committed figures were put together, when not by one run
        lines += ["", results["note"]]
    rows, verdicts = [], []
    for row in results["rows"]:
        runs = row["runs"]
        reference = top1(row, REFERENCE)[0] if REFERENCE in runs else None
        for system, done in runs.items():
            versus = "" if reference is None or system == REFERENCE else f"{top1(row, system)[0] - reference:+.2f}"
            rows.append([
                row["set"], _size(row), f"{row['budget_s']:g}", system, _model(system, done),
                _summary([run["top1"] for run in done]), versus,
                _summary([run["epochs"] for run in done]) if system != "logreg" else "",
                f"{statistics.mean(run['seconds'] for run in done):.1f}",
            ])  # fmt: skip
        ours, theirs = (_summary([run["top1"] for run in runs[s]]) if s in runs else "" for s in ("swinkit", REFERENCE))
        floor = f"{top1(row, 'logreg')[0]:.2f}" if "logreg" in runs else ""
        verdicts.append([row["set"], _size(row), ours, theirs, floor, target(row)])
    if rows:
        header = ["data", "training images", "budget s", "system", "model", "val top-1 % (mean ± sd)",
                  f"vs {REFERENCE}, points", "epochs", "wall time s (mean)"]  # fmt: skip
        lines += ["", *tables.markdown_table(header, rows), ""]
        lines.append(
            "± is the sample standard deviation over the seeds (0.00 with one seed); logreg, the floor, has no "
            f"budget: its time is the fit's. The target: swinkit's mean top-1 at least {REFERENCE}'s less the larger "
            f"standard deviation, in a mean wall time at most 5% above {REFERENCE}'s, and above the floor."
        )
        header = ["data", "training images", "swinkit", REFERENCE, "floor", "swinkit meets the target"]
        lines += ["", *tables.markdown_table(header, verdicts)]
    if "speed" in results:
        speed_result = results["speed"]
        per_step = speed_result["seconds_per_step"]
        plain = per_step["plain loop, swinkit model"]
        lines += [
            "",
            f"Per training step, {speed_result['model']} at batch {speed_result['batch']} on the cluttered set "
            "(medians of interleaved rounds):",
            "",
        ]
        lines += tables.markdown_table(
            ["loop", "ms per step", "relative to the plain loop with swinkit's model"],
            [[label, f"{1000 * seconds:.1f}", f"{seconds / plain:.3f}"] for label, seconds in per_step.items()],
        )
    return "\n".join(lines) + "\n"


def measured_summary(results: dict) -> dict:
    """The summary ``swinkit train`` reads (:data:`MEASURED`): per set and size, what swinkit's recipe chose, its
    top-1 and ResNet-18's as ``[mean, sample sd]``, and the floor's mean top-1."""
    return {
        "machine": results["machine"],
        "date": results["date"],
        "rows": [
            {
                "set": row["set"],
                "images_per_class": row["images_per_class"],
                "budget_s": row["budget_s"],
                "swinkit_model": row["swinkit_model"],
                "swinkit_top1": list(top1(row, "swinkit")),
                "resnet18_top1": list(top1(row, REFERENCE)),
                "floor_top1": top1(row, "logreg")[0],
            }
            for row in results["rows"]
        ],
    }


def _size_name(text: str) -> str:
    if text == "full" or (text.isdigit() and int(text) > 0):
        return text
    raise argparse.ArgumentTypeError(f"a size is 'full' or a number of images per class, got {text!r}")


def _variant(text: str) -> tuple[str, list[str]]:
    name, equals, arguments = text.partition("=")
    if not equals or not name or " " in name:
        raise argparse.ArgumentTypeError(f'a variant is NAME="ARGUMENTS of swinkit train", got {text!r}')
    return name, shlex.split(arguments)


def budgets_for(entries: Sequence[str] | None, sizes: Sequence[str], default: dict[str, float]) -> dict[str, float]:
    """Each size's budget in seconds from ``--budget`` entries: ``45`` (every size) or ``SIZE=45``; the rest from
    ``default``. Raises ``ValueError`` for a size without one."""
    given: dict[str, float] = {}
    for entry in entries or ():
        size, equals, seconds = entry.rpartition("=")
        try:
            value = float(seconds)
        except ValueError:
            raise ValueError(f"a budget is SECONDS or SIZE=SECONDS (45, full=45, 20=15), got {entry!r}") from None
        if equals:
            given[_size_name(size)] = value
        else:
            given |= dict.fromkeys(sizes, value)
    budgets = {}
    for size in sizes:
        if size not in given and size not in default:
            raise ValueError(f"no budget for {size} images a class: give --budget {size}=SECONDS")
        budgets[size] = given.get(size, default.get(size))
    return budgets


def build_parser() -> argparse.ArgumentParser:
    """The options of ``swinkit bench small-data``."""
    parser = argparse.ArgumentParser(prog="swinkit bench small-data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", choices=tuple(SETS), default=list(SETS))
    parser.add_argument(
        "--sizes", nargs="+", type=_size_name, help="training images per class, or full (default: full 60 20)"
    )
    parser.add_argument(
        "--budget", nargs="+", metavar="[SIZE=]SECONDS",
        help="seconds per run: one number for every size, or SIZE=SECONDS (default: full=30 60=18 20=12)",
    )  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", help="default: 0 1 2")
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument(
        "--variant", type=_variant, action="append", default=[], metavar='NAME="ARGS"',
        help='an extra row "swinkit NAME": swinkit train with ARGS added (repeatable)',
    )  # fmt: skip
    parser.add_argument(
        "--swinkit-args", default="", metavar='"ARGS"', help='added to each swinkit train (--swinkit-args="--ema")'
    )
    parser.add_argument("--speed-rounds", type=int, default=0, help="rounds of the per-step speed comparison")
    parser.add_argument("--speed-steps", type=int, default=30, help="timed steps per loop and round")
    parser.add_argument("--quick", action="store_true", help="smoke run: seed 0, 20 images a class, 20 s budgets")
    parser.add_argument("--speed-only", action="store_true", help="only the per-step speed comparison (5 rounds)")
    parser.add_argument("--output", type=Path, default=tables.RESULTS, help="where small_data.json and .md go")
    parser.add_argument("--measured", type=Path, default=MEASURED, help="where the summary swinkit train reads goes")
    parser.add_argument("--baseline", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--baseline-val", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--system", choices=tuple(BASELINES), default="timm-swin", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    return parser


def plan_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Plan:
    """The sets, sizes, budgets, seeds and systems the options ask for (``--quick`` filling what is not given)."""
    sizes = args.sizes or (["20"] if args.quick else list(BUDGETS))
    default = dict.fromkeys(sizes, QUICK_BUDGET) if args.quick else BUDGETS
    try:
        budgets = budgets_for(args.budget, sizes, default)
    except ValueError as error:
        parser.error(str(error))
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    systems = [system for system in SYSTEMS if system in args.systems]
    if any(BASELINES[s].follows_swinkit for s in systems if s in BASELINES) and "swinkit" not in systems:
        parser.error("timm-swin takes the architecture swinkit chose: add swinkit to --systems")
    names = [name for name, _ in args.variant]
    if len(set(names)) < len(names):
        parser.error(f"two variants with one name: {names}")
    sets = [] if args.speed_only else args.sets
    return Plan(sets, budgets, seeds, systems, dict(args.variant), shlex.split(args.swinkit_args))


def main(argv: Sequence[str] | None = None) -> int:
    """``swinkit bench small-data``: train, compare, write ``small_data.{json,md}`` (``_quick``, ``_speed`` added)
    and, after a full run, the summary :data:`MEASURED`."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.baseline:
        budget = float(args.budget[0])
        print(json.dumps(run_baseline(args.baseline, args.baseline_val, args.run, budget, args.seed, args.system)))
        return 0
    if args.speed_only:
        args.speed_rounds = args.speed_rounds or 5
    plan = plan_from(args, parser)
    import sklearn
    import timm

    from swinkit.train.timing import format_duration

    print(f"{plan.runs()} timed runs: about {format_duration(plan.estimate())} in all (budgets and start-up; the "
          "floors' fits and the speed rounds on top)", flush=True)  # fmt: skip
    machine = measure.machine()
    results = {
        "machine": f"{machine['cpu']}, {machine['cores']} cores, {machine['threads']} threads",
        "date": datetime.datetime.now(datetime.UTC).date().isoformat(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "sklearn": sklearn.__version__,
        "seeds": plan.seeds,
        "budgets": plan.budgets,
        "systems": plan.systems,
        "variants": plan.variants,
        "swinkit_args": plan.swinkit_args,
        "quick": args.quick,
        "rows": [],
    }
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="swinkit-small-data-") as scratch:
        root = Path(scratch)
        for set_name in plan.sets:
            data = SETS[set_name]()
            for size in plan.budgets:
                results["rows"].append(measure_size(plan, set_name, data, size, root))
        if args.speed_rounds:
            train_dir, val_dir = root / "cluttered" / "full" / "train", root / "cluttered" / "val"
            if not train_dir.exists():
                data = SETS["cluttered"]()
                write_folder(train_dir, data.train_images, data.train_labels)
                write_folder(val_dir, data.val_images, data.val_labels)
            print("speed: interleaved rounds ...", flush=True)
            results["speed"] = speed(train_dir, val_dir, root / "runs", args.speed_rounds, args.speed_steps)
    results["seconds"] = time.monotonic() - began
    suffix = ("_quick" if args.quick else "") + ("_speed" if args.speed_only else "")
    table = to_markdown(results)
    tables.write_results(args.output, f"small_data{suffix}", results, table)
    print(table)
    measured = {"swinkit", REFERENCE, "logreg"} <= set(plan.systems) and plan.sets
    if measured and not (args.quick or plan.swinkit_args):
        args.measured.write_text(json.dumps(measured_summary(results), indent=2) + "\n")
        print(f"wrote {args.measured}")
    print(f"took {results['seconds']:.0f}s")
    return 0
