"""``swinkit bench detection``'s own parts: the shapes set, the plain loop and its schedule, the tables."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign

from swinkit.bench import detection
from swinkit.data.detection import decode_segmentation, load_detection


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return detection.build_shapes(tmp_path_factory.mktemp("shapes"), train=12, val=4, size=64, seed=3)


def test_the_shapes_set_has_tight_boxes_inside_its_images_and_masks_that_fill_them(shapes):
    for part, count in (("train", 12), ("val", 4)):
        data = json.loads((shapes / part / "annotations.json").read_text())
        assert data["categories"] == [
            {"id": 1, "name": "circle", "supercategory": "shape"},
            {"id": 2, "name": "square", "supercategory": "shape"},
            {"id": 3, "name": "triangle", "supercategory": "shape"},
        ]
        assert [image["id"] for image in data["images"]] == list(range(1, count + 1))
        per_image = {image["id"]: 0 for image in data["images"]}
        for annotation in data["annotations"]:
            per_image[annotation["image_id"]] += 1
            x, y, w, h = annotation["bbox"]
            assert 0 <= x and 0 <= y and x + w <= 64 and y + h <= 64 and w >= 10 and h >= 10
            mask = decode_segmentation(annotation["segmentation"], 64, 64)
            rows, columns = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            assert (columns[0], rows[0], columns[-1] + 1 - x, rows[-1] + 1 - y) == (x, y, w, h)
            assert annotation["area"] == mask.sum() and annotation["iscrowd"] == 0
            assert annotation["category_id"] in (1, 2, 3)
        assert all(1 <= n <= 4 for n in per_image.values())
    dataset = load_detection(shapes / "train")
    assert dataset.has_masks and dataset.names == ("circle", "square", "triangle")


def _hashes(folder):
    return {hashlib.sha256(path.read_bytes()).hexdigest() for path in (folder / "images").iterdir()}


def test_the_shapes_set_is_the_same_for_a_seed_and_shares_no_image_between_train_and_val(shapes, tmp_path):
    again = detection.build_shapes(tmp_path / "again", train=12, val=4, size=64, seed=3)
    for part in ("train", "val"):
        assert _hashes(again / part) == _hashes(shapes / part)
        assert (again / part / "annotations.json").read_text() == (shapes / part / "annotations.json").read_text()
    assert len(_hashes(shapes / "train")) == 12 and not _hashes(shapes / "train") & _hashes(shapes / "val")
    other = detection.build_shapes(tmp_path / "other", train=12, val=4, size=64, seed=4)
    assert not _hashes(other / "train") & _hashes(shapes / "train")


def test_a_flip_mirrors_image_boxes_and_masks():
    image = torch.arange(2 * 3 * 4).reshape(2, 3, 4)
    masks = torch.zeros(1, 3, 4, dtype=torch.uint8)
    masks[0, :, 0] = 1
    target = {"boxes": torch.tensor([[0.0, 0.0, 1.0, 3.0]]), "labels": torch.tensor([1]), "masks": masks}
    mirrored, moved = detection.flipped((image, target))
    assert torch.equal(mirrored, image.flip(-1)) and torch.equal(moved["boxes"], torch.tensor([[3.0, 0.0, 4.0, 3.0]]))
    assert moved["masks"][0, :, 3].all() and moved["masks"].sum() == 3


def test_the_reference_schedule_warms_up_then_steps_down_twice():
    rate = detection.reference_rate
    assert rate(0, 260, 0.02, 10) == pytest.approx(0.02 / 1000)
    assert rate(5, 260, 0.02, 10) == pytest.approx(0.02 * (0.001 * 0.5 + 0.5))
    assert rate(10, 260, 0.02, 10) == rate(159, 260, 0.02, 10) == 0.02
    assert rate(160, 260, 0.02, 10) == pytest.approx(0.002) and rate(220, 260, 0.02, 10) == pytest.approx(0.0002)


class TinyBackbone(nn.Sequential):
    def __init__(self) -> None:
        super().__init__(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU())
        self.out_channels = 8


def test_the_plain_loop_takes_a_step_that_changes_the_weights(shapes):
    torch.manual_seed(0)
    model = MaskRCNN(
        TinyBackbone(), num_classes=4, min_size=64, max_size=64,
        rpn_anchor_generator=AnchorGenerator(((16,),), ((1.0,),)),
        box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2), mask_roi_pool=MultiScaleRoIAlign(["0"], 14, 2),
        representation_size=16, rpn_batch_size_per_image=32, box_batch_size_per_image=16,
    )  # fmt: skip
    samples, ids, truth = detection.decoded(shapes / "train")
    assert ids == list(range(1, 13)) and len(truth["annotations"]) == sum(len(t["labels"]) for _, t in samples)
    loop = detection.PlainLoop(model, samples, batch=4, seed=0)
    loop.total = 10
    assert (loop.steps_per_epoch, loop.lr, loop.warmup) == (3, 0.005, 2)
    before = [p.detach().clone() for p in model.parameters()]
    images, targets = next(loop.batches())
    assert len(images) == 4 and images[0].dtype == torch.float32 and float(images[0].max()) <= 1.0
    loss = loop.step(images, targets)
    assert np.isfinite(loss) and loss > 0 and loop.done == 1
    assert loop.optimizer.param_groups[0]["lr"] == pytest.approx(0.005 / 1000)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    found = loop.detections(samples[:5])
    assert len(found) == 5 and model.training and {"boxes", "scores", "labels", "masks"} <= set(found[0])


def _runs(box, mask, seconds):
    return [
        {"box_AP": b, "box_AP50": 2 * b, "mask_AP": m, "epochs": 2.0, "seconds": seconds} for b, m in zip(box, mask)
    ]


def test_the_tables_say_what_ran_and_whether_the_target_is_met():
    systems = detection.SPEED_SYSTEMS
    results = {
        "machine": "a CPU, 2 cores, 2 threads",
        "torch": "2.14",
        "torchvision": "0.29",
        "budget": 100.0,
        "seeds": [0, 1],
        "data": {"train": 1500, "val": 300, "size": 128, "categories": ["circle", "square", "triangle"]},
        "compare": {
            "runs": {
                "swinkit": _runs([0.3, 0.4], [0.2, 0.2], 101.0),
                "torchvision": _runs([0.1, 0.1], [0.3, 0.3], 99.0),
            },
            "detector": {"backbone": {"embed_dim": 48, "depths": [2, 2, 2], "patch_size": 2}, "min_size": 128,
                         "max_size": 214},
            "train": {"model": "swin_femto", "batch_size": 16},
        },  # fmt: skip
        "speed": {
            "device": "cpu",
            "batch": 16,
            "size": 128,
            "parameters": dict(zip(systems, (5e6, 48e6, 44e6))),
            "seconds": {f"{kind} {s}": v for s, v in zip(systems, (0.5, 2.0, 1.0)) for kind in ("train", "infer")},
            "rounds": {f"train {s}": [1.0, 1.0, 1.0] for s in systems},
            "peak_mb": dict(zip(systems, (300.0, 1200.0, 1000.0))),
        },
    }
    text = detection.to_markdown(results)
    assert "Budget 100 s per run, seeds [0, 1]; swinkit chose swin_femto (C 48, depths [2, 2, 2], patch 2)" in text
    assert "| swinkit | 0.350 ± 0.071 | 0.700 ± 0.141 | 0.200 ± 0.000 | 2.00 ± 0.00 | 101.0 |" in text
    assert "Target: swinkit's box AP at least torchvision's: met (0.350 against 0.100)." in text
    assert "Target: swinkit's mask AP at least torchvision's: not met (0.200 against 0.300)." in text
    assert "medians of 3 interleaved rounds" in text
    assert "| swinkit (recipe) | 5.0 | 500 | 0.50 | 500 | 0.50 | 300 | 0.30 |" in text
    assert "| torchvision maskrcnn_resnet50_fpn | 44.0 | 1000 | 1.00 | 1000 | 1.00 | 1000 | 1.00 |" in text
    del results["compare"]
    assert "Target" not in detection.to_markdown(results)
