"""swinkit train --task detect, eval and predict, end to end on a tiny generated COCO folder."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from PIL import Image

from detection_folders import write_shapes_coco
from swinkit.cli import main
from swinkit.tasks import get_task, task_for, train
from swinkit.train import loop
from swinkit.train.config import TrainConfig


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("detect")
    write_shapes_coco(root / "train", count=8, size=64)
    write_shapes_coco(root / "val", count=3, size=64, seed=1)
    args = ["train", "--task", "detect", "--data", str(root / "train"), "--val", str(root / "val"), "--epochs", "1",
            "--batch-size", "4", "--workers", "0", "--output", str(root / "runs"), "--name", "shapes",
            "--quiet"]  # fmt: skip
    assert main(args) == 0
    return root, root / "runs" / "shapes"


def test_training_records_losses_per_part_and_cocos_metric(run):
    _, run_dir = run
    with open(run_dir / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1
    for part in ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg", "loss_mask"):
        assert float(rows[0][f"train_{part}"]) > 0
    for column in ("val_box_AP", "val_box_AP50", "val_box_AP75", "val_mask_AP"):
        assert 0.0 <= float(rows[-1][column]) <= 1.0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["train"]["task"] == "detect" and config["train"]["model"] == "swin_atto"
    assert config["model"]["masks"] and config["model"]["category_ids"] == [3, 7]
    assert config["model"]["anchor_sizes"][0][0] < 32 and config["model"]["min_size"] == 64
    assert json.loads((run_dir / "best" / "detector.json").read_text())["format"] == "swinkit-detector"
    assert (run_dir / "best").resolve().name == "epoch-0001"
    pictures = sorted((run_dir / "val_pictures").iterdir())
    assert len(pictures) == 3 and Image.open(pictures[0]).size == (64 * 2 + 4, 64)
    assert task_for(str(run_dir)).name == "detect" and task_for(str(run_dir / "best")).name == "detect"


def test_eval_prints_the_coco_table_and_predict_writes_coco_results(run, capsys):
    root, run_dir = run
    assert main(["eval", "--model", str(run_dir), "--data", str(root / "val"), "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "3 images, COCO metric (pycocotools):" in out and "box " in out and "mask " in out
    scores = json.loads((run_dir / "eval.json").read_text())
    assert {"box_AP", "box_AP50", "mask_AP"} <= set(scores) and scores["images"] == 3
    pictures = root / "predicted"
    images = root / "val" / "images"
    code = main(["predict", "--model", str(run_dir), str(images), "--score-threshold", "0.0",
                 "--pictures", str(pictures)])  # fmt: skip
    assert code == 0
    results = json.loads((pictures / "detections.json").read_text())
    assert results and {"image_id", "category_id", "bbox", "score", "segmentation", "file_name"} <= set(results[0])
    assert {r["category_id"] for r in results} <= {3, 7} and all(len(r["bbox"]) == 4 for r in results)
    assert len(list(pictures.glob("*.png"))) == 3


def test_a_killed_detection_run_resumes_exactly(tmp_path, monkeypatch):
    data = write_shapes_coco(tmp_path / "data", count=4, size=64, masks=False)
    settings = dict(task="detect", data=str(data), val_split=0.25, epochs=2, batch_size=3, workers=0,
                    output=str(tmp_path / "runs"), quiet=True)  # fmt: skip
    whole = loop.train(TrainConfig(**settings, name="whole"), task=get_task("detect"))

    class Killed(Exception):
        pass

    def die(self, row, epochs):
        raise Killed

    monkeypatch.setattr(loop._Trainer, "_report", die)
    with pytest.raises(Killed):
        loop.train(TrainConfig(**settings, name="cut"), task=get_task("detect"))
    monkeypatch.undo()
    resumed = train(TrainConfig(task="detect", quiet=True), resume=tmp_path / "runs" / "cut")
    expected = torch.load(whole.run_dir / "last" / "training_state.pt", weights_only=True)["model"]
    got = torch.load(resumed.run_dir / "last" / "training_state.pt", weights_only=True)["model"]
    assert all(torch.equal(expected[name], got[name]) for name in expected)
