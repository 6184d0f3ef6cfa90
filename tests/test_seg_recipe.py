"""The segmentation recipe as functions of the data's profile, and the official poly schedule."""

from __future__ import annotations

import pytest
import torch

from swinkit.data.segmentation import SegmentationProfile
from swinkit.preprocessing import IMAGENET_MEAN
from swinkit.train.optim import WarmupPoly, build_scheduler, set_total_steps
from swinkit.train.seg_recipe import after_timing, choose_crop, choose_recipe, choose_rung


def profile(count: int, height: int = 48, width: int = 64, channels: int = 1) -> SegmentationProfile:
    return SegmentationProfile(count, height, width, channels, (0.5,) * channels, (0.2,) * channels, (90, 10, 0), 0.01)


def test_small_grey_set_from_scratch() -> None:
    recipe, choices = choose_recipe(profile(40))

    assert (recipe.backbone, recipe.crop, recipe.batch, recipe.schedule) == ("swin_atto", 48, 4, "cosine")
    assert (recipe.head, recipe.aux_head) == (176, 88)
    assert recipe.lr == pytest.approx(2e-3 * (4 / 32) ** 0.5) and recipe.weight_decay == 0.05
    assert recipe.overrides == {"patch_size": 2, "window_size": 6, "depths": (2, 2, 2), "num_heads": (2, 4, 8),
                                "in_chans": 1}  # fmt: skip
    assert recipe.mean == (0.5,) and recipe.std == (0.2,) and recipe.augment.cat_max_ratio == 0.75
    assert [c.model for c in recipe.candidates] == ["swin_atto"] and recipe.candidates[0].overrides["patch_size"] == 4
    lines = {choice.setting: choice for choice in choices}
    assert "40 training images of 3 classes (2 present), typically 48x64, grey" in lines["recipe"].reason
    assert lines["rescale"].value == "24-96 px" and lines["batch"].flag == "--batch-size"


def test_the_ladder_and_the_crop_follow_the_data() -> None:
    assert [choose_rung(count)[0] for count in (99, 100, 1000, 4000)] == [
        "swin_atto", "swin_femto", "swin_pico", "swin_nano"
    ]  # fmt: skip
    assert choose_crop(100, False)[0] == 96 and choose_crop(600, False)[0] == 224
    assert [choose_crop(side, True)[0] for side in (48, 300, 512, 2000)] == [128, 288, 512, 512]


def test_pretrained_takes_the_official_setting() -> None:
    recipe, choices = choose_recipe(profile(2000, 600, 800, 3), pretrained=True)

    assert (recipe.backbone, recipe.crop, recipe.batch, recipe.schedule) == (None, 512, 16, "poly")
    assert (recipe.lr, recipe.weight_decay, recipe.mean, recipe.overrides) == (6e-5, 0.01, IMAGENET_MEAN, {})
    assert (recipe.head, recipe.aux_head) == (512, 256)
    small, _ = choose_recipe(profile(20, channels=3), pretrained=True)
    assert small.batch == 4 and small.lr == pytest.approx(3e-5)

    timed, lines = after_timing(recipe, epochs=10, steps_per_epoch=100, reason="what fits in 1h")
    assert timed.epochs == 10 and timed.warmup_epochs == pytest.approx(0.09)
    assert lines[1].reason.startswith("9 steps: the official 1,500 of 160,000 iterations")


def test_given_settings_are_kept() -> None:
    recipe, choices = choose_recipe(profile(40), crop=40, batch=2, lr=1e-3, backbone="swin_pico")
    assert (recipe.crop, recipe.batch, recipe.lr, recipe.backbone) == (40, 2, 1e-3, "swin_pico")
    assert recipe.overrides == {"in_chans": 1}  # the data's channels, with the named model's shape
    assert recipe.head == 336 and choose_recipe(profile(40), backbone="swin_nano")[0].head == 512
    given = {choice.setting for choice in choices if choice.reason == "given"}
    assert given == {"crop", "batch", "learning rate", "backbone"}
    scratch, _ = after_timing(recipe, epochs=50, steps_per_epoch=10, reason="given")
    assert scratch.warmup_epochs == 10


def test_poly_schedule_with_warmup() -> None:
    factor = WarmupPoly(warmup=10, total=100, floor=0.0)
    assert factor(0) == pytest.approx(1e-3)
    assert factor(5) == pytest.approx(0.95 * (1e-3 + 0.999 * 0.5))
    assert [factor(step) for step in (10, 50, 100, 150)] == pytest.approx([0.9, 0.5, 0.0, 0.0])
    assert WarmupPoly(0, 100, floor=0.1, power=2.0)(50) == pytest.approx(0.1 + 0.9 * 0.25)

    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([weight], lr=6e-5)
    scheduler = build_scheduler(optimizer, total_steps=20, warmup_steps=0, min_lr=0.0, schedule="poly")
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(6e-5 * 0.75)
    set_total_steps(scheduler, 10)
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(6e-5 * 0.4)
