"""Training from scratch on small images: the data-chosen recipe, time budgets, progress, the in-memory data path."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DistributedSampler
from PIL import Image

from swinkit.cli import main
from swinkit.data import AugmentConfig, Preprocessing, build_transforms, load_data
from swinkit.data.images import DataError
from swinkit.data.memory import DecodedImageDataset, decode_into_memory, format_size, parse_size
from swinkit.data.profile import DataProfile, MirrorTest, mirror_test, profile_data
from swinkit.data.tensors import BatchAugment, TensorBatches, fits_as_tensor, resized_crop_boxes, stack_images
from swinkit import tasks
from swinkit.train import loop, recipe
from swinkit.train.config import TrainConfig
from swinkit.train.distributed import RepeatedSampler
from swinkit.train.timing import (
    ProgressLog,
    epoch_seconds,
    fit_epochs,
    format_duration,
    parse_duration,
    refit,
    time_calls,
)


def profile(count: int, side: int, channels: int = 3, mirror: MirrorTest | None = None) -> DataProfile:
    return DataProfile(
        count=count,
        num_classes=10,
        smallest_class=count // 10,
        height=side,
        width=side,
        channels=channels,
        mean=(0.5,) * channels,
        std=(0.25,) * channels,
        mirror=mirror or MirrorTest(accuracy=0.6, mirrored=0.58, chance=0.1),
    )


def shapes_folder(root: Path, per_class: int = 12, size: int = 20, seed: int = 0) -> Path:
    """Three classes that mirroring does not change: a bright disc, a bright ring, a bright square, on noise."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size]
    for name in ("disc", "ring", "square"):
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            centre = (size - 1) / 2 + rng.uniform(-2, 2, 2)
            radius = np.hypot(rows - centre[0], cols - centre[1])
            shape = {
                "disc": radius < size / 4,
                "ring": (radius > size / 5) & (radius < size / 3),
                "square": (np.abs(rows - centre[0]) < size / 4) & (np.abs(cols - centre[1]) < size / 4),
            }[name]
            pixels = rng.normal(40, 20, (size, size, 3)) + 180 * shape[..., None]
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(root / name / f"{index}.png")
    return root


# --- the recipe's choices --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "expected", "maps"),
    [
        (8, (8, 1, 4, 3), (8, 4, 2)),  # the built-in digits: one token per pixel; stage 3's window shrinks to 2x2
        (28, (32, 2, 4, 3), (16, 8, 4)),  # MNIST-sized: rounded up to 32
        (32, (32, 2, 4, 3), (16, 8, 4)),
        (36, (32, 2, 4, 3), (16, 8, 4)),
        (48, (48, 2, 6, 3), (24, 12, 6)),
        (64, (64, 4, 4, 3), (16, 8, 4)),
        (96, (96, 4, 6, 3), (24, 12, 6)),
        (500, (224, 4, 7, 4), (56, 28, 14, 7)),  # large images: at most 224, as Swin-T
    ],
)
def test_input_size_is_the_data_size_rounded_to_what_patch_and_window_tile(side, expected, maps):
    geometry = recipe.choose_geometry(side)
    assert (geometry.img_size, geometry.patch, geometry.window, geometry.stages) == expected
    assert geometry.maps == maps
    assert recipe.tiles(geometry.maps, geometry.window, fixed_stages=False)


def test_geometry_keeps_what_a_named_model_fixes():
    assert recipe.choose_geometry(200, patch=4, window=7, stages=4) == recipe.Geometry(224, 4, 7, 4)
    # A given --img-size stays; only patch, window and stages are chosen for it.
    assert recipe.choose_geometry(30, fixed_size=True) == recipe.Geometry(30, 2, 4, 3)


def test_ladder_batch_lr_warmup_and_regularisation_follow_the_data():
    assert [recipe.choose_rung(n) for n in (300, 1617, 9999, 10000, 50000)] == [
        "swin_atto", "swin_femto", "swin_femto", "swin_pico", "swin_nano",
    ]  # fmt: skip
    assert [recipe.choose_batch(n) for n in (48, 1617, 3000, 5000, 50000)] == [16, 32, 64, 64, 128]
    assert recipe.choose_lr(64) == 2e-3 and recipe.choose_lr(16) == pytest.approx(2e-3 / 2**0.5)
    assert recipe.choose_warmup(40, 51) == 2.0  # 5% of 40 epochs = 2 epochs >= 100 steps
    assert recipe.choose_warmup(10, 20) == 2.0  # 100 steps would be 5 epochs: capped at a fifth of the run
    # By images a class and the model's size, not by passes: atto (0.57 M) is light below 113 a class, strong from 1132.
    atto = 566_790
    level, light = recipe.choose_regularisation(60, atto, 32)
    assert level == "light" and light == {
        "pad": 2, "scale": (0.6, 1.0), "auto_augment": "none", "mixup": 0.0, "cutmix": 0.0, "re_prob": 0.0,
        "label_smoothing": 0.0, "drop_path": 0.0,
    }  # fmt: skip
    level, medium = recipe.choose_regularisation(600, atto, 32)
    assert level == "medium" and medium["auto_augment"] == "rand-m5-n2" and medium["mixup"] == 0.2
    assert medium["pad"] == 4 and medium["label_smoothing"] == 0.1 and medium["drop_path"] == 0.5
    assert recipe.choose_regularisation(5000, atto, 32)[1] == {
        "pad": 4, "scale": (0.35, 1.0), "auto_augment": "rand-m9-n2", "mixup": 0.8, "cutmix": 1.0, "re_prob": 0.25,
        "label_smoothing": 0.1, "drop_path": 1.0,
    }  # fmt: skip
    # A larger model fits more: for swin_nano (12 M) the limits are 520 and 5,200 a class; below 1 M they shrink.
    assert recipe.choose_regularisation(600, 12_000_000, 32)[0] == "medium"
    assert recipe.choose_regularisation(400, 12_000_000, 32)[0] == "light"
    assert recipe.choose_regularisation(80, 250_000, 32)[0] == "medium"
    assert recipe.choose_regularisation(60, atto, 8)[1]["pad"] == 1
    assert recipe.rung_overrides("swin_femto", 2) == {"depths": (2, 2), "num_heads": (3, 6)}
    assert recipe.rung_overrides("swin_atto", 4) == {"depths": (2, 2, 2, 2), "num_heads": (2, 4, 8, 16)}


def test_a_short_run_keeps_the_regularisation_light_whatever_the_data():
    atto = 566_790
    # 5,000 images a class allow the paper's level, but only for a run of 100 epochs or more.
    assert [recipe.regularisation_level(5000, atto, epochs) for epochs in (None, 300, 100, 99, 30, 29, 1)] == [
        "strong", "strong", "strong", "medium", "medium", "light", "light",
    ]  # fmt: skip
    # Few images a class stay light however long the run.
    assert recipe.regularisation_level(60, atto, 300) == "light"
    level, settings = recipe.choose_regularisation(600, atto, 32, epochs=5)
    assert level == "light" and settings["auto_augment"] == "none" and settings["mixup"] == 0.0
    assert settings["label_smoothing"] == 0.0 and settings["pad"] == 2
    config = dataclasses.replace(TrainConfig(data="d").resolved(), model="swin_atto", img_size=32, crop="pad")
    config, choices = recipe.regularisation_choices(config, 600, epochs=5)
    lines = {choice.setting: str(choice) for choice in choices}
    assert config.auto_augment == "none" and config.mixup == 0.0 and config.drop_path == 0.0
    assert "medium for the data, but 5 passes over it are too few (light below 30, the paper's from 100)" in (
        lines["augment"]
    )
    assert "none: a short run should fit" in lines["regularise"]
    longer, _ = recipe.regularisation_choices(
        dataclasses.replace(TrainConfig(data="d").resolved(), model="swin_atto", img_size=32, crop="pad"), 600, 40
    )
    assert longer.auto_augment == "rand-m5-n2" and longer.mixup == 0.2


def test_recipe_from_grey_digit_sized_data_prints_a_reason_for_every_choice():
    grey_digits = profile(1617, 8, channels=1, mirror=MirrorTest(accuracy=0.89, mirrored=0.35, chance=0.1, tested=809))
    config, choices, candidates = recipe.from_data(TrainConfig(data="d").resolved(), grey_digits)
    assert config.model == "swin_femto"
    # No coarser patch for 8x8 images: stage 1 would have fewer than 8 tokens a side.
    assert [c.describe() for c in candidates] == ["swin_femto (patch 1)", "swin_atto (patch 1)"]
    assert config.img_size == 8 and config.batch_size == 32 and config.lr == 2e-3
    overrides = config.model_overrides
    assert (overrides["patch_size"], overrides["window_size"], overrides["in_chans"]) == (1, 4, 1)
    assert overrides["depths"] == (2, 2, 2) and overrides["num_heads"] == (3, 6, 12)  # three stages: 8, 4, 2 tokens
    assert config.crop == "pad" and config.pad is None and config.hflip == 0.0  # how far: after the timing
    assert config.mean == (0.5,) and config.std == (0.25,)
    lines = {choice.setting: str(choice) for choice in choices}
    assert set(lines) == {"recipe", "input size", "patch, window", "stem", "channels", "normalise", "model", "batch",
                          "learning rate", "flip"}  # fmt: skip
    assert overrides["stem"] == "conv" and "small inputs (8 px, at most 64) trained from scratch" in lines["stem"]
    assert "89% on the images, 35% mirrored" in lines["flip"] and lines["flip"].endswith("[--hflip]")
    assert "token maps 8x8, 4x4, 2x2 over 3 stages" in lines["patch, window"]
    for choice in choices:
        assert choice.reason and choice.flag.startswith("--")
    # 60 images a class for femto at 8x8 with two stages (0.32 M parameters): light, whatever the number of passes.
    for epochs in (30, 200):
        timed, more = recipe.after_timing(config, epochs, 51, "as many as fit in 1m15s", images_per_class=60)
        assert timed.epochs == epochs and timed.auto_augment == "none" and timed.mixup == 0.0 and timed.pad == 1
        assert timed.label_smoothing == 0.0 and timed.drop_path == 0.0
    assert timed.warmup_epochs == 10.0
    assert [c.setting for c in more] == ["epochs", "warm-up", "crop", "augment", "regularise"]
    assert str(more[2]).startswith("  crop          pad 1 + crop ") and "(light)" in str(more[2])
    assert str(more[3]).startswith("  augment       light ")
    assert "fitting 60 images a class for 1.29 M parameters (light below 170, the paper's from 1,705" in str(more[3])
    # Without images a class (masked-image pre-training): the epochs and warm-up only.
    assert [c.setting for c in recipe.after_timing(config, 30, 51, "given")[1]] == ["epochs", "warm-up"]


def test_recipe_for_larger_colour_photos_uses_mild_crops_and_flips():
    photos = profile(50000, 96, channels=3)
    config, choices, _ = recipe.from_data(TrainConfig(data="d").resolved(), photos)
    assert config.model == "swin_nano" and config.img_size == 96 and config.batch_size == 128
    assert config.model_overrides["window_size"] == 6 and config.model_overrides["in_chans"] == 3
    assert config.crop == "resized" and config.hflip == 0.5
    assert config.model_overrides["stem"] == "patch"  # 96 px: the paper's patch embedding
    medium, more = recipe.after_timing(config, 100, 390, "given", images_per_class=5000)
    assert medium.scale == (0.35, 1.0) and medium.mixup == 0.2 and "resized, area 0.35-1" in str(more[2])
    assert medium.drop_path == 0.1 and "half the model's drop-path 0.2" in str(more[4])


def test_step_down_goes_to_smaller_rungs_then_coarser_patches_by_cost():
    candidates = recipe.step_down_candidates("swin_femto", recipe.choose_geometry(32), in_chans=1)
    assert [c.describe() for c in candidates] == [
        "swin_femto (patch 2)", "swin_atto (patch 2)", "swin_femto (patch 4)", "swin_atto (patch 4)",
    ]  # fmt: skip
    assert [round(1000 * c.gflops, 1) for c in candidates] == [46.4, 21.0, 11.6, 5.2]
    coarse = candidates[2].overrides
    # 8x8, 4x4 and 2x2 tokens: the coarser patch keeps three stages.
    assert coarse == {"patch_size": 4, "window_size": 4, "depths": (2, 2, 2), "num_heads": (3, 6, 12)}


def test_given_settings_stay_and_are_reported_as_given():
    given = TrainConfig(data="d", model="swin_t", img_size=40, batch_size=8, lr=1e-4, hflip=1.0, crop="resized")
    config, choices, candidates = recipe.from_data(given.resolved(), profile(500, 36))
    assert (config.model, config.img_size, config.batch_size, config.lr, config.hflip) == ("swin_t", 40, 8, 1e-4, 1.0)
    assert candidates == [] and "patch_size" not in config.model_overrides  # the named model keeps its own
    reasons = {choice.setting: choice.reason for choice in choices}
    assert reasons["model"] == "given" and reasons["input size"] == "given"
    assert "batch" not in reasons and "flip" not in reasons


def test_mirror_test_tells_digits_from_symmetric_shapes(tmp_path):
    digits = profile_data(load_data("digits", val_split=0).train)
    assert digits.channels == 1 and (digits.height, digits.width) == (8, 8)
    assert digits.mean == pytest.approx((0.305,), abs=0.002) and digits.std == pytest.approx((0.376,), abs=0.002)
    assert digits.mirror.conclusive and not digits.mirror.keeps_classes
    shapes = profile_data(load_data(str(shapes_folder(tmp_path)), val_split=0).train)
    assert shapes.channels == 3 and shapes.count == 36 and shapes.smallest_class == 12
    assert shapes.mirror.conclusive and shapes.mirror.keeps_classes
    # Classes that are each other's mirror image: mirroring sends every image to the other class.
    arrow = np.zeros((8, 8), np.uint8)
    arrow[3:5, :6] = 255
    arrow[1:7, 5] = 255
    images = [np.roll(arrow, shift, axis=0) for shift in (-1, 0, 1)] * 4
    both = images + [image[:, ::-1] for image in images]
    test = mirror_test(both, [0] * 12 + [1] * 12)
    assert test.accuracy == 1.0 and test.mirrored == 0.0 and test.tested == 12 and not test.keeps_classes
    # The same drop on a handful of images is not enough to give up flips.
    assert MirrorTest(accuracy=0.75, mirrored=0.25, chance=1 / 3, tested=4).keeps_classes
    assert not MirrorTest(accuracy=0.75, mirrored=0.25, chance=1 / 3, tested=100).keeps_classes


# --- time -------------------------------------------------------------------------------------


def test_durations_parse_and_print():
    assert [parse_duration(t) for t in ("90s", "10m", "1h30m", "2h", "1d", "1.5m", "none")] == [
        90, 600, 5400, 7200, 86400, 90, 0,
    ]  # fmt: skip
    for bad in ("10", "10x", "m", "", "-5m"):
        with pytest.raises(ValueError, match="like 90s, 10m, 1h30m"):
            parse_duration(bad)
    assert [format_duration(s) for s in (4.2, 45, 185, 7800, 353000)] == ["4.2s", "45s", "3m05s", "2h10m", "4d02h"]
    assert parse_size("512MB") == 512 * 2**20 and parse_size("1.5GiB") == 3 * 2**29 and parse_size("0") == 0
    assert format_size(3 * 2**20) == "3.0 MB"
    with pytest.raises(DataError, match="500MB, 4GB"):
        parse_size("lots")


def test_epochs_fit_the_budget_and_shrink_when_epochs_are_slower():
    # 50 steps of 0.2 s, 500 validation images at 2 ms, 0.3 s to save: 11.3 s an epoch.
    per_epoch = epoch_seconds(50, 0.2, 500, 0.002, 0.3)
    assert per_epoch == pytest.approx(11.3)
    assert fit_epochs(600, elapsed=12, per_epoch=per_epoch, final_seconds=2, max_epochs=300) == 51
    assert fit_epochs(600, 12, per_epoch, 2, max_epochs=40) == 40
    assert fit_epochs(10, 12, per_epoch, 2, 300) == 1  # at least one epoch
    # On plan: nothing changes. 20% slower after 10 of 51 epochs: as many as still fit.
    assert refit(600, elapsed=125, done=10, planned=51, per_epoch=11.3, final_seconds=2) == 51
    assert refit(600, elapsed=150, done=10, planned=51, per_epoch=13.6, final_seconds=2) == 10 + 32
    assert refit(600, elapsed=599, done=45, planned=51, per_epoch=13.6, final_seconds=2) == 45  # stop now
    # Faster than timed: early on (a quarter of the run at most), as many as now fit, up to the most allowed.
    assert refit(600, elapsed=60, done=10, planned=51, per_epoch=5.0, final_seconds=2, most=300) == 10 + 107
    assert refit(600, elapsed=60, done=10, planned=51, per_epoch=5.0, final_seconds=2, most=80) == 80
    assert refit(600, elapsed=300, done=30, planned=51, per_epoch=5.0, final_seconds=2, most=300) == 51  # too late
    assert refit(600, elapsed=60, done=10, planned=51, per_epoch=5.0, final_seconds=2) == 51  # no most: never longer
    # A short run (3 epochs planned) may still be lengthened after its first epoch, not after its second.
    assert refit(20, elapsed=8, done=1, planned=3, per_epoch=1.5, final_seconds=2, most=300) == 1 + 6
    assert refit(20, elapsed=9.5, done=2, planned=3, per_epoch=1.5, final_seconds=2, most=300) == 3


def test_time_calls_takes_the_median_after_warmup():
    ticks = iter([0.0, 1.0, 10.0, 12.0, 20.0, 29.0])  # the warm-up call is not timed
    calls = []
    median = time_calls(lambda: calls.append(1), warmup=1, repeats=3, clock=lambda: next(ticks) * 0.1)
    assert median == pytest.approx(0.2) and len(calls) == 4  # the median of 0.1, 0.2, 0.9


def test_progress_lines_come_at_the_interval_away_from_a_terminal():
    now = [100.0]
    out = io.StringIO()
    log = ProgressLog(interactive=False, clock=lambda: now[0], start=100.0, interval=30.0, stream=out)
    log.planned_epoch, log.final_seconds = 60.0, 2.0
    log.epoch_started()
    for batch in range(1, 11):
        now[0] += 7.0  # 7 s a batch: lines after batches 5 (35 s) and 10 (70 s, 30 s or more after the first)
        log.batch_done(epoch=1, epochs=3, batch=batch, batches=10, loss=2.0 - batch / 10)
    lines = out.getvalue().splitlines()
    assert lines == [
        "epoch 1/3  batch 5/10  train loss 1.5000  elapsed 35s, remaining ~2m37s",
        "epoch 1/3  batch 10/10  train loss 1.0000  elapsed 1m10s, remaining ~2m02s",
    ]  # remaining: the rest of this epoch at its pace, 2 planned epochs of 60 s, 2 s after the last
    assert log.epoch_ended() == pytest.approx(70.0)
    assert log.per_epoch() == pytest.approx(70.0) and log.remaining(2) == pytest.approx(142.0)
    quiet_terminal = ProgressLog(interactive=True, clock=lambda: now[0], interval=1.0, stream=out)
    now[0] += 100
    quiet_terminal.batch_done(1, 1, 1, 2, 1.0)  # a terminal has its progress bar instead
    assert len(out.getvalue().splitlines()) == 2
    # Between batches (a long batch, an evaluation, the timing of steps) the heartbeat's beat says what runs.
    log.set_activity("epoch 1/3  evaluating")
    log.beat()  # 100 s since the last line
    now[0] += 29.0
    log.beat()
    assert out.getvalue().splitlines()[2:] == ["epoch 1/3  evaluating  elapsed 2m50s"]
    now[0] += 1.0
    log.beat()
    assert out.getvalue().splitlines()[3:] == ["epoch 1/3  evaluating  elapsed 3m20s"]
    log.set_activity(None)
    now[0] += 60.0
    log.beat()
    assert len(out.getvalue().splitlines()) == 4


def test_heartbeat_thread_prints_during_a_long_step():
    out = io.StringIO()
    log = ProgressLog(interactive=False, interval=0.05, stream=out)
    log.set_activity("timing a few training steps of swin_femto")
    log.start_heartbeat(period=0.01)
    try:
        deadline = time.monotonic() + 10
        while out.getvalue().count("timing a few") < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        log.stop_heartbeat()
    assert out.getvalue().count("timing a few training steps of swin_femto  elapsed") >= 2
    assert log._thread is None


# --- images in memory --------------------------------------------------------------------------


def test_decoded_once_images_equal_the_files_and_respect_the_limit(tmp_path):
    root = shapes_folder(tmp_path / "shapes", per_class=4)
    (root / "disc" / "grey.png").parent.mkdir(exist_ok=True)
    Image.fromarray(np.arange(400, dtype=np.uint8).reshape(20, 20)).save(root / "disc" / "grey.png")
    files = load_data(str(root), val_split=0).train
    kept = load_data(str(root), val_split=0, keep_in_memory=2**20).train
    assert isinstance(kept, DecodedImageDataset) and len(kept) == len(files) == 13
    assert kept.nbytes == 12 * 20 * 20 * 3 + 20 * 20
    for index in range(len(files)):
        expected, label = files[index]
        image, kept_label = kept[index]
        assert label == kept_label and image.mode == ("L" if expected.mode == "L" else "RGB")
        assert np.array_equal(np.asarray(image), np.asarray(expected))
    too_small = load_data(str(root), val_split=0, keep_in_memory=1000).train
    assert not isinstance(too_small, DecodedImageDataset)
    dataset, bad = decode_into_memory(files, 0)
    assert dataset is files and bad == []


def test_stored_tensors_equal_the_evaluation_transform_and_augment_like_it(tmp_path):
    root = shapes_folder(tmp_path / "shapes", per_class=3, size=18)
    data = load_data(str(root), val_split=0, keep_in_memory=2**20)
    pre = Preprocessing((3, 16, 16), mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3), crop_pct=1.0)
    assert fits_as_tensor(data.train, pre, 2**20) and not fits_as_tensor(data.train, pre, 1000)
    assert not fits_as_tensor(data.train, Preprocessing((3, 8, 8), crop_pct=1.0), 2**20)  # 18 px > 1.25 x 8
    stored = stack_images(data.train, pre)
    evaluation = build_transforms(False, pre)
    expected = torch.stack([evaluation(data.train[i][0]) for i in range(len(data.train))])
    torch.testing.assert_close(BatchAugment(pre, None)(stored), expected, rtol=0, atol=1e-6)
    # Switched-off augmentation is the evaluation transform; a whole-image resized crop too.
    plain = AugmentConfig(scale=(1, 1), ratio=(1, 1), hflip=0.0, auto_augment="none", re_prob=0, mixup=0, cutmix=0)
    torch.testing.assert_close(BatchAugment(pre, plain)(stored, torch.Generator()), expected, rtol=0, atol=1e-6)
    flipped = BatchAugment(pre, dataclasses.replace(plain, hflip=1.0))(stored, torch.Generator())
    torch.testing.assert_close(flipped, expected.flip(3), rtol=0, atol=1e-6)


def test_pad_and_crop_reads_the_reflected_pixels_torchvision_would():
    images = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(3)
    shifts = torch.randint(-2, 3, (2, 6), generator=torch.Generator().manual_seed(3))
    out = BatchAugment.pad_crop(images, 2, torch.zeros(6, dtype=torch.bool), generator)
    padded = F.pad(images.float(), (2, 2, 2, 2), mode="reflect")
    for index, (dy, dx) in enumerate(shifts.t().tolist()):
        expected = padded[index, :, 2 + dy : 10 + dy, 2 + dx : 10 + dx]
        assert torch.equal(out[index].float(), expected)


def test_resized_crop_boxes_follow_torchvision_sampling():
    top, left, height, width = resized_crop_boxes(2000, 32, 32, (0.25, 1.0), (3 / 4, 4 / 3), torch.Generator())
    area = (height * width).float() / 32**2
    assert area.min() >= 0.2 and area.max() <= 1.0 and 0.55 < area.mean() < 0.7
    assert bool(((top + height) <= 32).all() and ((left + width) <= 32).all() and (top >= 0).all())
    aspect = width.float() / height.float()
    assert aspect.min() >= 0.65 and aspect.max() <= 1.5
    # Scale (1, 1) on a square image: the whole image, as torchvision's ten tries end up giving.
    whole = resized_crop_boxes(50, 8, 8, (1.0, 1.0), (3 / 4, 4 / 3), torch.Generator())
    assert all(bool((value == expected).all()) for value, expected in zip(whole, (0, 0, 8, 8)))


def test_random_erasing_fills_one_box_per_image_with_noise():
    images = torch.zeros(64, 3, 16, 16)
    out = BatchAugment.erase(images, 1.0, torch.Generator().manual_seed(0))
    changed = (out != 0).any(1)  # (B, H, W)
    areas = changed.flatten(1).sum(1).float() / 256
    assert bool((areas > 0).all()) and areas.max() <= 1 / 3 + 0.05
    rows, cols = changed.any(2), changed.any(1)
    assert bool((changed.flatten(1).sum(1) == rows.sum(1) * cols.sum(1)).all())  # one rectangle each
    assert torch.equal(BatchAugment.erase(images, 0.0, torch.Generator()), images)


def test_tensor_batches_follow_the_sampler_and_cover_every_image():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous()
    labels = torch.arange(10)
    pre = Preprocessing((1, 2, 2), mean=(0.0,), std=(1 / 255,), crop_pct=1.0)
    order = [3, 1, 4, 0, 5, 9, 2, 6, 8, 7]
    batches = TensorBatches(images, labels, 4, order, BatchAugment(pre, None), torch.device("cpu"))
    assert len(batches) == 3
    seen = [(x[:, 0, 0, 0].round().long().tolist(), y.tolist()) for x, y in batches]
    assert seen == [([3, 1, 4, 0], [3, 1, 4, 0]), ([5, 9, 2, 6], [5, 9, 2, 6]), ([8, 7], [8, 7])]


# --- whole runs ---------------------------------------------------------------------------------


def test_train_prints_the_chosen_recipe_and_its_time_then_trains(tmp_path, capsys):
    root = shapes_folder(tmp_path / "shapes")
    args = ["train", "--data", str(root), "--output", str(tmp_path / "runs"), "--name", "auto", "--epochs", "3",
            "--set", "embed_dim=16", "--set", "depths=1,1", "--set", "num_heads=1,2"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    for expected in (
        "  recipe        auto", "  input size    24x24", "  patch, window 2, 6", "  channels      3",
        "  model         swin_atto", "  batch         16", "  crop          pad 2 + crop", "  flip          on",
        "  epochs        3                        given", "  augment       light", "  stem          conv",
        "  EMA           off                      off: 9 steps are too few to average (from 1,000)",
        "recipe chosen: swin_atto (0.02 M parameters, patch 2, stem conv), batch 16, 3 epochs",
        "data: 33 training and 3 validation images, decoded once and kept in memory",
        "time: about ", "epoch 3/3 ",
    ):  # fmt: skip
        assert expected in out, expected
    assert out.index("  recipe") < out.index("time: about") < out.index("epoch 1/3")
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert "elapsed" in epoch_lines[0] and "remaining ~" in epoch_lines[0]
    assert "elapsed" in epoch_lines[-1] and "remaining" not in epoch_lines[-1]
    saved = json.loads((tmp_path / "runs" / "auto" / "config.json").read_text())
    assert saved["train"]["recipe"] == "auto" and saved["train"]["model"] == "swin_atto"
    assert saved["train"]["workers"] == 0 and saved["model"]["img_size"] == [24, 24]
    assert saved["model"]["depths"] == [1, 1] and saved["preprocessing"]["crop_pct"] == 1.0


class FakeClock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def timed_run(tmp_path, monkeypatch):
    """Training with made-up step times and a fake clock: femto 1 s a step, atto 0.6 s, evaluation free."""
    clock = FakeClock()
    seconds_per_step = {"swin_femto": 1.0, "swin_atto": 0.6}
    monkeypatch.setattr(loop, "_now", clock)
    monkeypatch.setattr(loop._Trainer, "_time_steps", lambda self: (seconds_per_step[self.config.model], 0.0))
    monkeypatch.setattr(loop, "SAVE_SECONDS", 0.0)
    monkeypatch.setattr(loop, "FINAL_SECONDS", 0.0)
    # 33 training images make femto the ladder's rung here (atto below 10).
    rungs = {"swin_atto": 0, "swin_femto": 10, "swin_pico": 10**6, "swin_nano": 10**7}
    monkeypatch.setattr(recipe, "RUNG_FROM_IMAGES", rungs)
    root = shapes_folder(tmp_path / "shapes")
    # One pass an epoch, as these step times are per epoch of 3 steps (the recipe would repeat 33 images).
    return clock, TrainConfig(data=str(root), output=str(tmp_path / "runs"), time_budget=40.0, epoch_repeats=1)


def test_time_budget_fits_epochs_and_steps_the_ladder_down(timed_run, capsys):
    clock, config = timed_run
    # 3 steps an epoch: femto's 3 s epochs give 13 in 40 s, fewer than 15, so atto: 1.8 s epochs, 22 of them.
    result = tasks.train(dataclasses.replace(config, name="fitted", epochs=None))
    out = capsys.readouterr().out
    assert "  model         swin_atto (patch 2)" in out
    assert "only 13 epochs of swin_femto (patch 2) fit in the time, fewer than 30 passes over the data" in out
    assert "  epochs        22                       as many as fit in 40s (--time), at most 300" in out
    assert "time: about 40s in all, 22 epochs of ~1.8s (3 steps of 600 ms" in out
    saved = json.loads((result.run_dir / "config.json").read_text())["train"]
    assert saved["model"] == "swin_atto" and saved["epochs"] == result.epochs == len(result.metrics) == 22
    assert saved["warmup_epochs"] == 4.4  # 100 steps would be 33 epochs: a fifth of the run


def test_a_model_too_slow_even_at_its_flops_share_is_not_timed(timed_run, monkeypatch, capsys):
    clock, config = timed_run
    timed = []

    def time_steps(self):
        timed.append(f"{self.config.model} (patch {self.config.model_overrides['patch_size']})")
        return (30.0 if len(timed) == 1 else 0.01), 0.0  # the rung: one 90 s epoch in a 40 s budget

    monkeypatch.setattr(loop._Trainer, "_time_steps", time_steps)
    result = tasks.train(dataclasses.replace(config, name="skipping", epochs=None))
    out = capsys.readouterr().out
    # Every smaller model would fit fewer than 30 epochs even if its step took only its share of
    # the rung's FLOPs, but the last, the cheapest, which is timed whatever the bound.
    candidates = [line.split("  ")[0] for line in out.splitlines() if "a step down" in line]
    assert timed[0] == "swin_femto (patch 2)" and len(timed) == 2 and len(candidates) == 1
    assert "swin_atto (patch 2)" in out.split("not timed: fewer would fit even at their FLOPs' share")[0]
    assert result.epochs > 30


def test_a_small_set_is_passed_over_several_times_an_epoch():
    assert recipe.choose_epoch_repeats(200, 1000)[0] == 5  # as many images an epoch as the validation set
    assert recipe.choose_epoch_repeats(200, 179)[0] == 4  # and at least 800
    assert recipe.choose_epoch_repeats(600, 1000)[0] == 1 and recipe.choose_epoch_repeats(3000, 1000)[0] == 1
    assert recipe.choose_epoch_repeats(5, 10_000)[0] == recipe.MAX_REPEATS
    assert "5 passes over the 200 training images an epoch" in recipe.choose_epoch_repeats(200, 1000)[1]
    for world in (1, 2, 3):
        for rank in range(world):
            ours = RepeatedSampler(10, world, rank, seed=3)
            theirs = DistributedSampler(range(10), num_replicas=world, rank=rank, shuffle=True, seed=3)
            ours.set_epoch(2)
            theirs.set_epoch(2)
            assert list(ours) == list(theirs) and len(ours) == len(theirs)  # one pass: torch's order
    sampler = RepeatedSampler(10, 1, 0, seed=3, repeats=3)
    sampler.set_epoch(1)
    order = list(sampler)
    assert len(sampler) == 30 and all(sorted(order[start : start + 10]) == list(range(10)) for start in (0, 10, 20))
    assert order[:10] != order[10:20]  # each pass in a new order
    halves = [list(RepeatedSampler(10, 2, rank, seed=3, repeats=3)) for rank in (0, 1)]
    assert sorted(halves[0] + halves[1]) == sorted(list(range(10)) * 3)


def test_a_fitted_run_on_few_images_repeats_them_and_given_epochs_do_not(timed_run, capsys):
    clock, config = timed_run
    result = tasks.train(dataclasses.replace(config, name="repeated", epochs=None, epoch_repeats=None))
    out = capsys.readouterr().out
    saved = json.loads((result.run_dir / "config.json").read_text())["train"]
    repeats = saved["epoch_repeats"]
    train = int(re.search(r"data: (\d+) training", out).group(1))
    assert repeats == 800 // train > 1 and f"  epoch         {repeats} passes" in out
    assert result.metrics[0]["step"] == math.ceil(repeats * train / saved["batch_size"])
    given = tasks.train(dataclasses.replace(config, name="given", epochs=2, epoch_repeats=None))
    assert json.loads((given.run_dir / "config.json").read_text())["train"]["epoch_repeats"] is None
    assert given.metrics[0]["step"] == math.ceil(train / saved["batch_size"])


def test_a_run_slower_than_timed_is_shortened_to_keep_to_its_budget(timed_run, monkeypatch, capsys):
    clock, config = timed_run
    real_save = loop._Trainer._save

    def slow_save(self, epoch, best):
        real_save(self, epoch, best)
        clock.now += 10.0  # every epoch takes 10 s, not the 1.8 s timed

    monkeypatch.setattr(loop._Trainer, "_save", slow_save)
    result = tasks.train(dataclasses.replace(config, name="shortened"))
    out = capsys.readouterr().out
    # After epoch 1: 10 s gone, 21 epochs of 10 s planned; 3 more fit in the 30 s left.
    assert "epochs take ~10s, longer than timed: shortening the run to 4 epochs to end within 40s" in out
    assert result.epochs == len(result.metrics) == 4 and clock.now == 40.0
    assert result.metrics[-1]["lr"] == pytest.approx(1e-5)  # the cosine still ends at min_lr
    assert json.loads((result.run_dir / "config.json").read_text())["train"]["epochs"] == 4
    state = torch.load(result.run_dir / "last" / "training_state.pt", weights_only=True)
    assert state["epochs"] == 4 and state["epoch"] == 4


def test_a_run_faster_than_timed_is_lengthened_early(timed_run, monkeypatch, capsys):
    clock, config = timed_run
    real_save = loop._Trainer._save

    def quick_save(self, epoch, best):
        real_save(self, epoch, best)
        clock.now += 0.5  # every epoch takes 0.5 s, not the 1.8 s timed

    monkeypatch.setattr(loop._Trainer, "_save", quick_save)
    result = tasks.train(dataclasses.replace(config, name="lengthened", time_budget=10.0))
    out = capsys.readouterr().out
    # 5 epochs of 1.8 s planned; after the first, 19 more of 0.5 s fit in the 9.5 s left.
    assert "  epochs        5 " in out
    assert "epochs take ~0.5s, shorter than timed: lengthening the run to 20 epochs to end within 10s" in out
    assert result.epochs == len(result.metrics) == 20 and result.metrics[-1]["lr"] == pytest.approx(1e-5)


def test_the_budget_is_a_limit_and_the_planned_end_counts_evaluation(timed_run, monkeypatch, capsys):
    clock, config = timed_run
    # 3 validation images at 1 s each: atto's epoch is 3 x 0.6 s of steps + 3 s of evaluation = 4.8 s, so 8 fit in 40 s.
    step = {"swin_femto": 1.0, "swin_atto": 0.6}
    monkeypatch.setattr(loop._Trainer, "_time_steps", lambda self: (step[self.config.model], 1.0))
    real_save = loop._Trainer._save

    def timed_save(self, epoch, best):
        real_save(self, epoch, best)
        clock.now += 4.8

    monkeypatch.setattr(loop._Trainer, "_save", timed_save)
    result = tasks.train(dataclasses.replace(config, name="evaluated"))
    assert "time: about 38s in all, 8 epochs of ~4.8s" in capsys.readouterr().out
    assert result.epochs == 8 and clock.now <= 40.0
    # A run projected to end even a little past its budget is shortened (no tolerance above it).
    assert refit(600, elapsed=125, done=10, planned=51, per_epoch=11.5, final_seconds=2) == 10 + 41
    assert refit(600, elapsed=125, done=10, planned=51, per_epoch=11.7, final_seconds=2) == 10 + 40


def test_drawing_after_the_last_epoch_is_measured_and_kept_within_the_budget(timed_run, monkeypatch, capsys):
    clock, config = timed_run
    real_save, real_curves = loop._Trainer._save, loop._Trainer._plot_curves

    def timed_save(self, epoch, best):
        real_save(self, epoch, best)
        clock.now += 1.8  # epochs take what was timed

    def slow_curves(self):
        real_curves(self)
        clock.now += 3.0

    def slow_pictures(self, result, folder):
        clock.now += 6.0
        return []

    monkeypatch.setattr(loop._Trainer, "_save", timed_save)
    monkeypatch.setattr(loop._Trainer, "_plot_curves", slow_curves)
    monkeypatch.setattr(tasks.classify.ClassifyTask, "final_pictures", slow_pictures)
    result = tasks.train(dataclasses.replace(config, name="drawn"))
    # The first drawing of the curves took 3 s: 6 s are kept for the curves and pictures after the last epoch.
    assert "shortening the run to 7 epochs to end within 40s" in capsys.readouterr().out
    assert result.epochs == 7 and clock.now <= 40.0
