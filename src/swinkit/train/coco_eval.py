"""COCO's detection metric (pycocotools): detections in COCO's result format, scored against a dataset's ground truth.

A detector's outputs (boxes XYXY in pixels, contiguous labels ``1..K``, scores, optional
mask probabilities) become COCO results: ``bbox`` as ``[x, y, width, height]``, the
dataset's own ``category_id`` (mapped back from the label), ``score``, and ``segmentation``
as compressed RLE of the mask thresholded at 0.5. :func:`evaluate_coco` runs pycocotools'
``COCOeval`` on an in-memory ground truth (a dataset's :meth:`coco_dict`, built the same way
for COCO and YOLO folders) and returns box AP, AP50, AP75, APs, APm, APl (and the same for
masks); pycocotools' printed output is captured into :attr:`CocoEvaluation.log`, not lost.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
from collections.abc import Mapping, Sequence

import numpy as np
import torch

#: The first six numbers of ``COCOeval.stats``, by name.
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
#: Metric-name prefix per pycocotools IoU type.
PREFIXES = {"bbox": "box", "segm": "mask"}
MASK_THRESHOLD = 0.5


@dataclasses.dataclass(frozen=True)
class CocoEvaluation:
    """COCO's metric: ``scores`` as ``box_AP``, ``box_AP50``, ... ``mask_APl`` (-1 where pycocotools has no
    ground truth in that range), and ``log``, the text pycocotools printed (its summary tables included)."""

    scores: dict[str, float]
    log: str

    def table(self) -> str:
        """The scores as a small aligned table, one row per IoU type."""
        rows = ["       " + "".join(f"{name:>8}" for name in METRICS)]
        for kind in PREFIXES.values():
            if f"{kind}_AP" in self.scores:
                rows.append(f"{kind:<7}" + "".join(f"{self.scores[f'{kind}_{name}']:8.3f}" for name in METRICS))
        return "\n".join(rows)


def to_coco_results(
    image_ids: Sequence[int],
    detections: Sequence[Mapping[str, torch.Tensor]],
    category_ids: Sequence[int],
    score_threshold: float = 0.0,
) -> list[dict[str, object]]:
    """Detector outputs, one mapping per image of ``image_ids``, as COCO result dicts.

    ``category_ids[label - 1]`` is the dataset's id of label ``label``; masks ``(N, 1, H, W)``
    (probabilities) become compressed RLE with ``counts`` as text (JSON-ready). Detections
    under ``score_threshold`` are left out.
    """
    from pycocotools import mask as coco_mask

    if len(image_ids) != len(detections):
        raise ValueError(f"{len(image_ids)} image ids for {len(detections)} images of detections; give one per image")
    results: list[dict[str, object]] = []
    for image_id, detection in zip(image_ids, detections):
        keep = detection["scores"] >= score_threshold
        boxes = detection["boxes"][keep].detach().cpu().double()
        labels = detection["labels"][keep].tolist()
        scores = detection["scores"][keep].tolist()
        if not labels:
            continue
        if max(labels) > len(category_ids) or min(labels) < 1:
            raise ValueError(f"labels must be 1..{len(category_ids)} (one category id each), got {sorted(set(labels))}")
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
        rles: list[dict | None] = [None] * len(labels)
        if "masks" in detection:
            binary = (detection["masks"][keep][:, 0] > MASK_THRESHOLD).cpu().numpy().astype(np.uint8)
            rles = [coco_mask.encode(np.asfortranarray(mask)) for mask in binary]
        for box, label, score, rle in zip(xywh, labels, scores, rles):
            category = int(category_ids[int(label) - 1])
            result = {"image_id": int(image_id), "category_id": category, "bbox": box, "score": score}
            if rle is not None:
                result["segmentation"] = {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}
            results.append(result)
    return results


def evaluate_coco(
    ground_truth: Mapping[str, object], results: Sequence[Mapping[str, object]], masks: bool = False
) -> CocoEvaluation:
    """Score COCO results against a ground truth in COCO's JSON form, for boxes (and masks with ``masks``).

    The metric is pycocotools' own (101-point interpolated precision averaged over IoU
    0.50:0.95, 100 detections per image); no results at all scores 0 where there is ground truth.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    log = io.StringIO()
    scores: dict[str, float] = {}
    with contextlib.redirect_stdout(log):
        truth = COCO()
        truth.dataset = copy.deepcopy(dict(ground_truth))
        truth.createIndex()
        if results:
            found = truth.loadRes([dict(result) for result in results])
        else:
            found = COCO()
            found.dataset = dict(truth.dataset, annotations=[])
            found.createIndex()
        for kind in ("bbox", "segm") if masks else ("bbox",):
            print(f"Evaluating {kind}:")
            evaluation = COCOeval(truth, found, iouType=kind)
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
            for name, value in zip(METRICS, evaluation.stats[: len(METRICS)]):
                scores[f"{PREFIXES[kind]}_{name}"] = float(value)
    return CocoEvaluation(scores, log.getvalue())
