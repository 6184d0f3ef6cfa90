"""Segmentation metrics against values computed by hand, and the pictures drawn from them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from swinkit.train.seg_metrics import ConfusionMeter, SegmentationScores, confusion_matrix
from swinkit.viz.figure import save_figure
from swinkit.viz.segmentation import colorize, draw_class_iou, draw_segmentation_grid, mask_image, overlay, palette

TARGETS = torch.tensor([[0, 0, 1, 1], [2, 255, 1, 0]])
PREDICTIONS = torch.tensor([[0, 1, 1, 1], [0, 2, 2, 0]])


def test_confusion_and_scores_match_a_hand_count() -> None:
    confusion = confusion_matrix(PREDICTIONS, TARGETS, num_classes=4)
    assert confusion.tolist() == [[2, 1, 0, 0], [0, 2, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]]

    scores = SegmentationScores(confusion, loss=0.5)

    # IoU: class 0: 2 / (3 + 3 - 2); class 1: 2 / (3 + 3 - 2); class 2: 0 / (1 + 1); class 3 in neither.
    assert scores.iou[:3] == pytest.approx([50.0, 50.0, 0.0]) and math.isnan(scores.iou[3])
    assert scores.miou == pytest.approx(100 / 3)
    assert scores.accuracy[:3] == pytest.approx([200 / 3, 200 / 3, 0.0]) and math.isnan(scores.accuracy[3])
    assert scores.mean_accuracy == pytest.approx(400 / 9)
    assert scores.pixel_accuracy == pytest.approx(400 / 7) and scores.pixels == 7
    table = scores.table(["sky", "road", "car", "boat"]).splitlines()
    assert table[1].split() == ["sky", "50.00", "66.67", "3"]
    assert table[4].split() == ["boat", "-", "-", "0"]
    assert table[5].split() == ["mean", "33.33", "44.44", "7"] and table[6] == "pixel accuracy 57.14%"


def test_a_class_only_predicted_counts_with_iou_zero() -> None:
    scores = SegmentationScores(confusion_matrix(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 0]), 2))
    assert scores.iou == pytest.approx([100 / 3, 0.0]) and scores.miou == pytest.approx(50 / 3)
    assert scores.accuracy[0] == pytest.approx(100 / 3) and math.isnan(scores.accuracy[1])


def test_meter_accumulates_batches_and_scores_at_the_label_resolution() -> None:
    meter = ConfusionMeter(4)
    for row in range(2):
        logits = torch.nn.functional.one_hot(PREDICTIONS[row : row + 1, None], 4).permute(0, 3, 1, 2).float()
        meter.update(logits, TARGETS[row : row + 1, None])
    assert torch.equal(meter.confusion, confusion_matrix(PREDICTIONS, TARGETS, 4))

    halves = torch.tensor([[[[5.0, 0.0]], [[0.0, 5.0]]]]).expand(1, 2, 2, 2)
    coarse = ConfusionMeter(2)
    predictions = coarse.update(halves, torch.tensor([[[0, 0, 1, 255]] * 4]))
    assert predictions.tolist() == [[[0, 0, 1, 1]] * 4]
    assert coarse.scores().confusion.tolist() == [[8, 0], [0, 4]]


def test_out_of_range_indices_are_refused() -> None:
    with pytest.raises(ValueError, match=r"target class index is outside 0\.\.1"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 2]), 2)
    with pytest.raises(ValueError, match="differ in shape"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([[0, 1]]), 2)


def test_palette_colours_masks_and_overlays_exactly(tmp_path: Path) -> None:
    colours = palette(150)
    assert len({tuple(c) for c in colours.tolist()}) == 150 and colours[:3].tolist() == [
        [128, 0, 0], [0, 128, 0], [128, 128, 0]
    ]
    mask = np.array([[0, 1], [255, 2]])
    assert colorize(mask, colours[:3]).tolist() == [[[128, 0, 0], [0, 128, 0]], [[255, 255, 255], [128, 128, 0]]]
    image = np.full((2, 2, 3), 100, np.uint8)
    assert overlay(image, mask, colours, alpha=0.5).tolist() == [
        [[114, 50, 50], [50, 114, 50]], [[100, 100, 100], [114, 114, 50]]
    ]
    with pytest.raises(ValueError, match="mask index 3 has no colour"):
        colorize(np.array([[3]]), colours[:3])

    mask_image(mask, colours[:3]).save(tmp_path / "m.png")
    with Image.open(tmp_path / "m.png") as saved:
        assert saved.mode == "P" and np.asarray(saved).tolist() == mask.tolist()
        assert colorize(np.asarray(saved), colours[:3]).tolist() == np.asarray(saved.convert("RGB")).tolist()


def test_pictures_show_the_scores_and_the_masks(tmp_path: Path) -> None:
    scores = SegmentationScores(confusion_matrix(PREDICTIONS, TARGETS, num_classes=4))
    save_figure(draw_class_iou(scores.iou, ["sky", "road", "car", "boat"]), tmp_path / "iou.png")
    with Image.open(tmp_path / "iou.png") as chart:
        assert chart.size[0] > 400 and len(np.unique(np.asarray(chart.convert("RGB")).reshape(-1, 3), axis=0)) > 4

    grey = np.full((8, 8), 100, np.uint8)
    truth = np.zeros((8, 8), np.int64)
    truth[:, 4:] = 1
    save_figure(draw_segmentation_grid([grey] * 2, [truth] * 2, [np.ones((8, 8), np.int64)] * 2, ["a", "b"]),
                tmp_path / "grid.png")  # fmt: skip
    with Image.open(tmp_path / "grid.png") as grid:
        pixels = {tuple(p) for p in np.asarray(grid.convert("RGB")).reshape(-1, 3).tolist()}
    assert {(128, 0, 0), (0, 128, 0), (100, 100, 100)} <= pixels
