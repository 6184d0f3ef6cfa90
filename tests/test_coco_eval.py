"""COCO's metric through pycocotools, checked against cases worked out by hand."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
import torch

from detection_folders import write_shapes_coco
from swinkit.data.detection import load_detection
from swinkit.train.coco_eval import evaluate_coco, to_coco_results

IOU_THRESHOLDS = [Fraction(50 + 5 * k, 100) for k in range(10)]


def interpolated_ap(hits: list[bool], ground_truths: int) -> Fraction:
    """COCO's AP of detections sorted by score: the mean over recall r = 0, 0.01, .., 1 of the best precision
    at a recall of at least r (0 where r is not reached)."""
    precision, recall, found = [], [], 0
    for rank, hit in enumerate(hits, start=1):
        found += hit
        precision.append(Fraction(found, rank))
        recall.append(Fraction(found, ground_truths))
    total = Fraction(0)
    for k in range(101):
        reachable = [p for p, r in zip(precision, recall) if r >= Fraction(k, 100)]
        total += max(reachable, default=Fraction(0))
    return total / 101


def ground_truth() -> dict:
    """Two 400x400 images: image 1 holds boxes A and B, image 2 box C, all 100x100 (COCO 'large'), category 7."""
    boxes = [(1, [0, 0, 100, 100]), (1, [200, 200, 100, 100]), (2, [0, 0, 100, 100])]
    annotations = [
        {"id": i, "image_id": image, "category_id": 7, "bbox": box, "area": 10000, "iscrowd": 0}
        for i, (image, box) in enumerate(boxes, start=1)
    ]
    images = [{"id": i, "file_name": f"{i}.png", "width": 400, "height": 400} for i in (1, 2)]
    return {"images": images, "annotations": annotations, "categories": [{"id": 7, "name": "square"}]}


def detections(boxes: list[list[float]], scores: list[float]) -> dict[str, torch.Tensor]:
    labels = torch.ones(len(boxes), dtype=torch.int64)
    return {"boxes": torch.tensor(boxes).reshape(-1, 4), "labels": labels, "scores": torch.tensor(scores)}


def test_known_hits_and_misses_give_the_hand_computed_average_precision():
    # Sorted by score: A exactly (IoU 1); a box on nothing; C cut to 66 rows (IoU 0.66); a box on nothing. B is missed.
    image1 = detections([[0, 0, 100, 100], [300, 0, 400, 100]], [0.9, 0.8])
    image2 = detections([[0, 0, 100, 66], [200, 200, 300, 300]], [0.7, 0.6])
    results = to_coco_results([1, 2], [image1, image2], category_ids=[7])
    assert results[2] == {"image_id": 2, "category_id": 7, "bbox": [0.0, 0.0, 100.0, 66.0], "score": pytest.approx(0.7)}
    evaluation = evaluate_coco(ground_truth(), results)
    iou_c = Fraction(66, 100)
    per_threshold = [interpolated_ap([True, False, iou_c >= t, False], ground_truths=3) for t in IOU_THRESHOLDS]
    assert per_threshold[0] == Fraction(56, 101) and per_threshold[-1] == Fraction(34, 101)
    expected = float(sum(per_threshold) / len(per_threshold))  # (4 * 56 + 6 * 34) / 1010
    scores = evaluation.scores
    assert scores["box_AP"] == pytest.approx(expected, abs=1e-12) == pytest.approx(0.42376, abs=1e-5)
    assert scores["box_AP50"] == pytest.approx(56 / 101, abs=1e-12)
    assert scores["box_AP75"] == pytest.approx(34 / 101, abs=1e-12)
    assert scores["box_APl"] == pytest.approx(expected, abs=1e-12)
    assert scores["box_APs"] == scores["box_APm"] == -1.0
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.424" in evaluation.log
    assert "box" in evaluation.table() and "0.424" in evaluation.table()


def test_no_detections_score_zero_and_perfect_ones_score_one():
    assert evaluate_coco(ground_truth(), []).scores["box_AP"] == 0.0
    image1 = detections([[0, 0, 100, 100], [200, 200, 300, 300]], [0.9, 0.8])
    perfect = [image1, detections([[0, 0, 100, 100]], [0.5])]
    assert evaluate_coco(ground_truth(), to_coco_results([1, 2], perfect, [7])).scores["box_AP"] == 1.0


def test_masks_are_scored_from_the_dataset_and_categories_map_back_to_its_ids(tmp_path):
    dataset = load_detection(write_shapes_coco(tmp_path, count=6))
    truth = json.loads(json.dumps(dataset.coco_dict()))
    outputs, image_ids = [], []
    for index in range(len(dataset)):
        _, target = dataset[index]
        count = len(target["boxes"])
        outputs.append({
            "boxes": target["boxes"].as_subclass(torch.Tensor),
            "labels": target["labels"],
            "scores": torch.linspace(0.9, 0.5, count),
            "masks": target["masks"].float()[:, None],
        })
        image_ids.append(int(target["image_id"]))
    results = to_coco_results(image_ids, outputs, dataset.category_ids)
    assert len(results) == sum(len(output["boxes"]) for output in outputs)
    assert {r["category_id"] for r in results} == {3, 7}
    assert results[0]["segmentation"]["counts"] and isinstance(results[0]["segmentation"]["counts"], str)
    perfect = evaluate_coco(truth, json.loads(json.dumps(results)), masks=True).scores
    assert perfect["box_AP"] == 1.0 and perfect["mask_AP"] == 1.0
    # Swapping every label for the other class leaves no true positive.
    swapped = [dict(output, labels=3 - output["labels"]) for output in outputs]
    wrong = evaluate_coco(truth, to_coco_results(image_ids, swapped, dataset.category_ids), masks=True).scores
    assert wrong["box_AP"] == 0.0 and wrong["mask_AP"] == 0.0
    with pytest.raises(ValueError, match="labels must be 1..2"):
        to_coco_results([10], [dict(outputs[0], labels=outputs[0]["labels"] + 2)], dataset.category_ids)
