"""Training from scratch on small images: ``swinkit train`` with the data-chosen recipe against timm.

    python benchmarks/small_data.py              # the full run: 2 sets x 3 seeds x 2 systems, 75 s each (~18 min)
    python benchmarks/small_data.py --quick      # a smoke run: seed 0, 20 s budgets, a short speed test
    python benchmarks/small_data.py --budget 90 --seeds 0 1 2 --sets digits cluttered
    python benchmarks/small_data.py --speed-only # only the per-step speed comparison

Two data sets, both built here without any download, as image folders (``train/``, ``val/``):

- ``digits``: scikit-learn's 8x8 handwritten digits (1,797), 10% held out, stratified;
- ``cluttered``: those digits enlarged to 32x32 with a random rotation (up to 15 degrees),
  scale, shear and shift, among one to three fragments of other digits, on a random
  background level with pixel noise; 3,000 training and 1,000 validation images drawn
  from disjoint source digits (75% / 25%), so that no validation image shares its digit
  with a training image.

For each set and seed, in turn:

- ``swinkit train --data train/ --val val/ --time BUDGET --seed S``: every other setting
  chosen from the data (model, input size, batch, lr, epochs from timed steps, augmentation);
- timm's ``SwinTransformer`` with the architecture swinkit chose (same input, patch,
  window, width, depths, heads, channels), in a plain PyTorch loop over the decoded images
  with a typical small-image recipe: zero-pad 1/8 of the side and random crop, horizontal
  flip, AdamW (lr 1e-3, weight decay 0.05 on weights), 5% linear warm-up then cosine, label
  smoothing 0.1, drop path 0.1, batch 64, the set's mean and std; its epochs fitted to the
  same budget from five timed steps, as a user would, evaluated after every epoch.

Both run as separate processes; the time reported is each process's wall-clock time from
start to exit (start-up, data loading and the final evaluation included). Validation
top-1 is the last epoch's, not the best epoch's.

Then a per-step speed comparison (``--speed-rounds``), interleaved in one process, on the
cluttered set with the model and batch the recipe picks before any timing (swin_femto,
patch 2, batch 64, the issue's configuration): (a) ``swinkit train``'s own loop
(``swinkit.tasks.train``, the code the command runs; its epochs after the first),
(b) the same swinkit model in a plain loop over decoded tensors with the same
augmentation, optimiser and clipping, (c) timm's model of the same configuration in that
plain loop.

Writes ``small_data.json`` and ``small_data.md`` to ``--output`` (``benchmarks/results``;
``small_data_quick.*`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SETS = ("digits", "cluttered")


# --- data -------------------------------------------------------------------------------------


def _write_folder(root: Path, images: list[np.ndarray], labels: list[int]) -> None:
    for index, (image, label) in enumerate(zip(images, labels)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index:05d}.png")


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8), bunch.target.astype(np.int64)


def build_digits(root: Path) -> Path:
    """The bundled digits as ``root/train`` and ``root/val`` folders (10% held out, stratified, seed 0)."""
    from swinkit.data import stratified_split

    pixels, labels = _digits()
    train, val = stratified_split(labels.tolist(), 0.1, seed=0)
    _write_folder(root / "train", [pixels[i] for i in train], [int(labels[i]) for i in train])
    _write_folder(root / "val", [pixels[i] for i in val], [int(labels[i]) for i in val])
    return root


def cluttered_digits(sources: np.ndarray, labels: np.ndarray, count: int, rng: np.random.Generator, side: int = 32):
    """``count`` 32x32 grey images: a random source digit, distorted, among clutter, on a noisy background."""
    images, out = [], []
    for _ in range(count):
        pick = rng.integers(len(sources))
        digit = Image.fromarray(sources[pick]).resize((20, 20), Image.BICUBIC)
        canvas = np.zeros((side, side))
        for _ in range(rng.integers(1, 4)):
            other = np.asarray(Image.fromarray(sources[rng.integers(len(sources))]).resize((20, 20), Image.BICUBIC))
            top, left = rng.integers(0, 14, 2)
            fragment = other[top : top + 6, left : left + 6] * rng.uniform(0.3, 0.7)
            y, x = rng.integers(0, side - 6, 2)
            canvas[y : y + 6, x : x + 6] = np.maximum(canvas[y : y + 6, x : x + 6], fragment)
        angle, scale, shear = math.radians(rng.uniform(-15, 15)), rng.uniform(0.9, 1.2), rng.uniform(-0.15, 0.15)
        shift = rng.uniform(-3, 3, 2)
        rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        inverse = np.linalg.inv(rotation @ np.array([[1.0, shear], [0.0, 1.0]]) * scale)
        offset = np.array([9.5, 9.5]) - inverse @ (np.array([side / 2 - 0.5, side / 2 - 0.5]) + shift)
        coefficients = (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1])
        warped = digit.transform((side, side), Image.AFFINE, coefficients, Image.BILINEAR)
        canvas = np.maximum(canvas, np.asarray(warped, dtype=np.float64))
        canvas = rng.uniform(0, 40) + rng.uniform(0.7, 1.0) * canvas + rng.normal(0, 12, canvas.shape)
        images.append(np.clip(canvas, 0, 255).astype(np.uint8))
        out.append(int(labels[pick]))
    return images, out


def build_cluttered(root: Path, train: int = 3000, val: int = 1000) -> Path:
    """The cluttered 32x32 digits as ``root/train`` and ``root/val`` (disjoint source digits)."""
    pixels, labels = _digits()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(pixels))
    cut = int(0.75 * len(pixels))
    _write_folder(root / "train", *cluttered_digits(pixels[order[:cut]], labels[order[:cut]], train, rng))
    _write_folder(root / "val", *cluttered_digits(pixels[order[cut:]], labels[order[cut:]], val, rng))
    return root


def load_folder(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """An image folder of equally sized grey images as ``(N, H, W)`` uint8 and ``(N,)`` labels."""
    classes = sorted((p.name for p in root.iterdir() if p.is_dir()), key=int)
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((root / name).iterdir()):
            with Image.open(path) as image:
                images.append(np.asarray(image.convert("L")))
            labels.append(label)
    return np.stack(images), np.asarray(labels)


# --- the plain loop ---------------------------------------------------------------------------


def timm_model(model_config: dict, drop_path: float):
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


def swinkit_model(model_config: dict):
    import swinkit

    fields = {k: v for k, v in model_config.items() if k != "labels"}
    return swinkit.create_model("swin_t", **fields)


def pad_crop_flip(images, pad: int, flip: bool, generator):
    """The typical small-image augmentation on a float batch: zero-pad, random crop, random flip."""
    import torch
    import torch.nn.functional as F

    batch, _, height, width = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    tops = torch.randint(0, 2 * pad + 1, (batch,), generator=generator)
    lefts = torch.randint(0, 2 * pad + 1, (batch,), generator=generator)
    out = torch.stack([padded[i, :, t : t + height, l : l + width] for i, (t, l) in enumerate(zip(tops, lefts))])
    if flip:
        mirrored = torch.rand(batch, generator=generator) < 0.5
        out = torch.where(mirrored[:, None, None, None], out.flip(3), out)
    return out


class PlainLoop:
    """A plain PyTorch training loop over uint8 tensors (what a user writes for small images)."""

    def __init__(self, model, images, labels, batch, lr, mean, std, pad, flip, clip, seed, warmup=0.05):
        import torch

        self.torch = torch
        self.model = model
        self.images, self.labels = torch.as_tensor(images), torch.as_tensor(labels)
        if self.images.ndim == 3:
            self.images = self.images[:, None]
        self.batch, self.lr, self.pad, self.flip, self.clip, self.warmup = batch, lr, pad, flip, clip, warmup
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        decay = [p for n, p in model.named_parameters() if p.ndim > 1 and "relative_position_bias_table" not in n]
        rest = [p for n, p in model.named_parameters() if not (p.ndim > 1 and "relative_position_bias_table" not in n)]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0}], lr=lr
        )
        self.generator = torch.Generator().manual_seed(seed)
        self.steps_per_epoch = math.ceil(len(self.images) / batch)
        self.total = 1
        self.done = 0

    def batches(self):
        torch = self.torch
        order = torch.randperm(len(self.images), generator=self.generator)
        for start in range(0, len(order), self.batch):
            rows = order[start : start + self.batch]
            images = (self.images[rows].float() / 255.0 - self.mean) / self.std
            yield pad_crop_flip(images, self.pad, self.flip, self.generator), self.labels[rows]

    def rate(self) -> float:
        warm = max(1, round(self.warmup * self.total))
        if self.done < warm:
            return self.lr * (self.done + 1) / warm
        progress = (self.done - warm) / max(1, self.total - warm)
        return self.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def step(self, images, labels) -> float:
        torch = self.torch
        for group in self.optimizer.param_groups:
            group["lr"] = self.rate()
        loss = torch.nn.functional.cross_entropy(self.model(images), labels, label_smoothing=0.1)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        self.done += 1
        return loss.item()

    def evaluate(self, images, labels) -> float:
        torch = self.torch
        images = torch.as_tensor(images)
        images = images[:, None] if images.ndim == 3 else images
        self.model.eval()
        correct = 0
        with torch.no_grad():
            for start in range(0, len(images), 256):
                batch = (images[start : start + 256].float() / 255.0 - self.mean) / self.std
                correct += int((self.model(batch).argmax(1) == torch.as_tensor(labels[start : start + 256])).sum())
        self.model.train()
        return 100.0 * correct / len(images)


def run_baseline(data: Path, run: Path, budget: float, seed: int) -> dict:
    """timm's Swin with the architecture of swinkit's run ``run``, in the plain loop, fitted to ``budget``."""
    start = time.monotonic()
    import torch

    torch.manual_seed(seed)
    model_config = json.loads((run / "config.json").read_text())["model"]
    train_images, train_labels = load_folder(data / "train")
    val_images, val_labels = load_folder(data / "val")
    values = train_images.astype(np.float64) / 255.0
    model = timm_model(model_config, drop_path=0.1)
    side = model_config["img_size"][0]
    if train_images.shape[1] != side:
        raise SystemExit(f"the baseline expects images of the model's input size {side}, got {train_images.shape[1:]}")
    loop = PlainLoop(
        model, train_images, train_labels, batch=64, lr=1e-3, mean=[values.mean()], std=[values.std()],
        pad=max(1, side // 8), flip=True, clip=0.0, seed=seed,
    )  # fmt: skip
    # Fit the epochs to the budget from five timed steps (after one untimed), as a user would.
    batches = loop.batches()
    loop.step(*next(batches))
    began = time.perf_counter()
    for _ in range(5):
        loop.step(*next(batches))
    per_step = (time.perf_counter() - began) / 5
    eval_seconds = len(val_images) * per_step / loop.batch / 3
    per_epoch = loop.steps_per_epoch * per_step + eval_seconds
    epochs = max(1, math.floor((budget - (time.monotonic() - start)) / per_epoch))
    # The timing steps were real steps: start the schedule afresh with a new model and optimiser.
    torch.manual_seed(seed)
    loop = PlainLoop(
        timm_model(model_config, drop_path=0.1), train_images, train_labels, batch=64, lr=1e-3,
        mean=[values.mean()], std=[values.std()], pad=max(1, side // 8), flip=True, clip=0.0, seed=seed,
    )  # fmt: skip
    loop.total = epochs * loop.steps_per_epoch
    top1 = []
    for _ in range(epochs):
        for images, labels in loop.batches():
            loop.step(images, labels)
        top1.append(loop.evaluate(val_images, val_labels))
    return {"top1": top1[-1], "best_top1": max(top1), "epochs": epochs, "seconds_in_loop": time.monotonic() - start}


# --- the comparison ---------------------------------------------------------------------------


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(HERE.parent / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_swinkit(data: Path, output: Path, name: str, budget: float, seed: int) -> dict:
    command = [sys.executable, "-m", "swinkit", "train", "--data", str(data / "train"), "--val", str(data / "val"),
               "--time", f"{budget:g}s", "--seed", str(seed), "--output", str(output), "--name", name]  # fmt: skip
    began = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, env=_env())
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
        "plan": plan,
    }


def compare(data: Path, output: Path, set_name: str, budget: float, seeds: list[int]) -> dict:
    runs = {"swinkit": [], "timm": []}
    for seed in seeds:
        name = f"{set_name}-seed{seed}"
        print(f"{set_name}, seed {seed}: swinkit train ...", flush=True)
        ours = run_swinkit(data, output, name, budget, seed)
        print(f"  top-1 {ours['top1']:.2f}%, {ours['epochs']} epochs, {ours['seconds']:.1f}s", flush=True)
        print(f"{set_name}, seed {seed}: timm in a plain loop ...", flush=True)
        command = [sys.executable, __file__, "--baseline", str(data), "--run", str(output / name),
                   "--budget", str(budget), "--seed", str(seed)]  # fmt: skip
        began = time.monotonic()
        result = subprocess.run(command, capture_output=True, text=True, env=_env())
        if result.returncode:
            raise SystemExit(f"baseline failed:\n{result.stdout}\n{result.stderr}")
        theirs = json.loads(result.stdout.strip().splitlines()[-1]) | {"seconds": time.monotonic() - began}
        print(f"  top-1 {theirs['top1']:.2f}%, {theirs['epochs']} epochs, {theirs['seconds']:.1f}s", flush=True)
        runs["swinkit"].append(ours)
        runs["timm"].append(theirs)
    model = json.loads((output / f"{set_name}-seed{seeds[0]}" / "config.json").read_text())
    return {"runs": runs, "model": model["model"], "train": model["train"]}


def speed(data: Path, output: Path, rounds: int, steps: int) -> dict:
    """Seconds per training step, interleaved: swinkit train's loop, a plain loop with swinkit's model, with timm's."""
    import torch

    from swinkit.train.config import TrainConfig
    from swinkit.tasks import train

    probe = output / "speed-probe"
    subprocess.run(
        [sys.executable, "-m", "swinkit", "train", "--data", str(data / "train"), "--val", str(data / "val"),
         "--epochs", "1", "--quiet", "--output", str(output), "--name", probe.name],
        check=True, env=_env(),
    )  # fmt: skip
    chosen = json.loads((probe / "config.json").read_text())
    settings, model_config = chosen["train"], chosen["model"]
    train_images, train_labels = load_folder(data / "train")
    batch = settings["batch_size"]
    epochs = 1 + math.ceil(steps * batch / len(train_images))
    times: dict[str, list[float]] = {"swinkit train": [], "plain loop, swinkit model": [], "plain loop, timm model": []}
    for index in range(rounds):
        config = TrainConfig.from_dict(settings | {
            "epochs": epochs, "time_budget": 0.0, "quiet": True, "output": str(output), "name": f"speed-{index}",
            "val": None, "val_split": 0.0,
        })  # fmt: skip
        result = train(config)
        later = result.metrics[1:]
        steps_per_epoch = math.ceil(len(train_images) / batch)
        times["swinkit train"].append(sum(r["seconds"] for r in later) / (len(later) * steps_per_epoch))
        for label, build in (("plain loop, swinkit model", swinkit_model), ("plain loop, timm model", None)):
            torch.manual_seed(index)
            model = build(model_config) if build else timm_model(model_config, model_config["drop_path_rate"])
            loop = PlainLoop(
                model, train_images, train_labels, batch=batch, lr=settings["lr"], mean=settings["mean"],
                std=settings["std"], pad=settings["pad"] or 0, flip=settings["hflip"] > 0, clip=settings["clip_grad"],
                seed=index,
            )  # fmt: skip
            loop.total = 10**6
            batches = loop.batches()
            for _ in range(2):
                loop.step(*next(batches))
            began = time.perf_counter()
            for _ in range(steps):
                try:
                    images, labels = next(batches)
                except StopIteration:
                    batches = loop.batches()
                    images, labels = next(batches)
                loop.step(images, labels)
            times[label].append((time.perf_counter() - began) / steps)
        print("  round", index + 1, {k: f"{1000 * v[-1]:.1f} ms" for k, v in times.items()}, flush=True)
    medians = {label: statistics.median(values) for label, values in times.items()}
    return {"batch": batch, "model": settings["model"], "seconds_per_step": medians, "rounds": times}


def _summary(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {spread:.2f}"


def write_results(results: dict) -> str:
    lines = [
        f"Machine: {results['machine']}, torch {results['torch']}, timm {results['timm']}; budget "
        f"{results['budget']:g} s per run, seeds {results['seeds']}.",
        "",
        "| data | model (chosen by swinkit) | system | val top-1 % (mean ± sd) | epochs | wall time s (mean) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for set_name, entry in results["sets"].items():
        model = entry["model"]
        described = (
            f"{entry['train']['model']} (C {model['embed_dim']}, depths {model['depths']}, {model['img_size'][0]} px, "
            f"patch {model['patch_size']}, window {model['window_size']})"
        )
        for system, runs in entry["runs"].items():
            lines.append(
                f"| {set_name} | {described} | {system} | {_summary([r['top1'] for r in runs])} | "
                f"{_summary([r['epochs'] for r in runs])} | {statistics.mean(r['seconds'] for r in runs):.1f} |"
            )
    if "speed" in results:
        speed_result = results["speed"]
        per_step = speed_result["seconds_per_step"]
        plain = per_step["plain loop, swinkit model"]
        lines += [
            "",
            f"Per training step, {speed_result['model']} at batch {speed_result['batch']} on the cluttered set "
            "(medians of interleaved rounds):",
            "",
            "| loop | ms per step | relative to the plain loop with swinkit's model |",
            "| --- | --- | --- |",
        ]
        for label, seconds in per_step.items():
            lines.append(f"| {label} | {1000 * seconds:.1f} | {seconds / plain:.3f} |")
    text = "\n".join(lines) + "\n"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=75.0, help="seconds per training run (default 75)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    parser.add_argument("--speed-rounds", type=int, default=5)
    parser.add_argument("--speed-steps", type=int, default=30, help="timed steps per loop and round")
    parser.add_argument("--quick", action="store_true", help="smoke run: seed 0, 20 s budgets, 2 short speed rounds")
    parser.add_argument("--speed-only", action="store_true", help="only the per-step speed comparison")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where small_data.json and .md go")
    parser.add_argument("--baseline", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline:
        print(json.dumps(run_baseline(args.baseline, args.run, args.budget, args.seed)))
        return 0
    if args.quick:
        args.budget, args.seeds, args.speed_rounds, args.speed_steps = 20.0, [0], 2, 10
    import timm
    import torch

    results = {
        "machine": (
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
        ),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "budget": args.budget,
        "seeds": args.seeds,
        "quick": args.quick,
        "sets": {},
    }
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="swinkit-small-data-") as scratch:
        root = Path(scratch)
        builders = {"digits": build_digits, "cluttered": build_cluttered}
        for set_name in [] if args.speed_only else args.sets:
            data = builders[set_name](root / set_name)
            results["sets"][set_name] = compare(data, root / "runs", set_name, args.budget, args.seeds)
        if args.speed_rounds:
            data = root / "cluttered" if (root / "cluttered").exists() else build_cluttered(root / "cluttered")
            print("speed: interleaved rounds ...", flush=True)
            results["speed"] = speed(data, root / "runs", args.speed_rounds, args.speed_steps)
    results["seconds"] = time.monotonic() - began
    args.output.mkdir(parents=True, exist_ok=True)
    suffix = ("_quick" if args.quick else "") + ("_speed" if args.speed_only else "")
    (args.output / f"small_data{suffix}.json").write_text(json.dumps(results, indent=2) + "\n")
    table = write_results(results)
    (args.output / f"small_data{suffix}.md").write_text(table)
    print(table)
    print(f"took {results['seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
