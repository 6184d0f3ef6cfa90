"""The detection recipe's choices from box statistics, and the detection pictures."""

from __future__ import annotations

import numpy as np
import torch

from swinkit.train.detection_recipe import choose_anchors, choose_input_size
from swinkit.viz.detection import class_colour, draw_detections, side_by_side


def test_the_anchors_follow_the_box_sizes_and_shapes():
    squares = [(16.0, 16.0)] * 50 + [(32.0, 32.0)] * 50
    choice = choose_anchors(squares, levels=5)
    assert choice.sizes == ((16,), (32,), (64,), (128,), (256,)) and choice.ratios == (1.0,)
    assert "5/50/95th percentiles 16/24/32" in choice.sizes_reason
    # Sizes from 10 to 640 px over four levels: the levels spread by (640 / 10) ** (1/3) = 4.
    spread = [(10.0, 10.0)] * 10 + [(80.0, 80.0)] * 80 + [(640.0, 640.0)] * 10
    assert choose_anchors(spread, levels=4).sizes == ((10,), (40,), (160,), (640,))
    tall_and_wide = [(20.0, 40.0)] * 30 + [(30.0, 30.0)] * 40 + [(40.0, 20.0)] * 30
    assert choose_anchors(tall_and_wide, levels=4).ratios == (0.5, 1.0, 2.0)
    assert choose_anchors([], levels=3).sizes == ((32,), (64,), (128,))


def test_the_input_size_is_the_median_shorter_side_in_steps_of_32():
    assert choose_input_size([64, 64, 100, 480, 500]) == 96
    assert choose_input_size([20, 30]) == 64 and choose_input_size([4000]) == 800


def test_a_detection_picture_outlines_each_box_in_its_class_colour_and_tints_masks():
    masks = torch.zeros(1, 1, 40, 60)
    masks[..., 12:20, :] = 0.9
    picture = draw_detections(torch.zeros(3, 40, 60), torch.tensor([[10.0, 5, 30, 25]]), torch.tensor([2]),
                              ["cat", "dog"], scores=torch.tensor([0.9]), masks=masks)
    pixels = np.asarray(picture)
    assert tuple(pixels[25, 20]) == class_colour(2) and tuple(pixels[30, 45]) == (0, 0, 0)
    assert np.allclose(pixels[16, 45], np.array(class_colour(2)) * 0.4, atol=1)
    assert side_by_side(picture, picture).size == (124, 40)
