"""``swinkit train --task segment`` end to end on generated shapes, then ``eval`` and ``predict`` of the run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import swinkit
from swinkit.cli import main
from swinkit.model import SwinUperNet, create_model
from swinkit.preprocessing import Preprocessing
from swinkit.tasks import task_for
from swinkit.tasks.segment import GRID_FILE, IOU_FILE, SegmentTask
from swinkit.train import loop
from swinkit.train.config import TrainConfig
from swinkit.train.distributed import Distributed
from swinkit.train.lora import LoraAdapters
from swinkit.train.task import Runtime

CLASSES = ("background", "square", "disc")


def write_shapes(root: Path, count: int, size: int = 24, seed: int = 0) -> None:
    """Images of a red square (class 1) and a cyan disc (class 2) on dark noise (class 0), with their masks."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    for index in range(count):
        image = Image.fromarray(rng.integers(0, 90, (size, size, 3), dtype=np.uint8))
        mask = Image.new("L", (size, size), 0)
        for label, colour in ((1, (230, 60, 60)), (2, (60, 200, 230))):
            side = int(rng.integers(size // 3, size // 2))
            left, top = (int(value) for value in rng.integers(0, size - side, 2))
            box = (left, top, left + side - 1, top + side - 1)
            for canvas, fill in ((ImageDraw.Draw(image), colour), (ImageDraw.Draw(mask), label)):
                (canvas.rectangle if label == 1 else canvas.ellipse)(box, fill=fill)
        image.save(root / "images" / f"{index:02d}.png")
        mask.save(root / "masks" / f"{index:02d}.png")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A tiny segmenter trained for 4 epochs on 16 shapes (validated on 4 more); the run, train and val folders."""
    root = tmp_path_factory.mktemp("shapes")
    write_shapes(root / "train", 16, seed=0)
    write_shapes(root / "val", 4, seed=1)
    tiny = ["--set", "channels=16", "--set", "aux_channels=8", "--set", "patch_size=2", "--img-size", "16"]
    code = main(
        ["train", "--task", "segment", "--data", str(root / "train"), "--val", str(root / "val"), "--epochs", "4",
         "--batch-size", "4", "--lr", "3e-3", "--output", str(root / "runs"), "--name", "seg", "--workers", "0",
         "--quiet", *tiny]
    )  # fmt: skip
    assert code == 0
    return root / "runs" / "seg", root / "train", root / "val"


def test_training_learns_the_shapes_and_records_the_run(trained: tuple[Path, Path, Path]) -> None:
    run, _, _ = trained
    with open(run / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and {f"val_iou_{name}" for name in CLASSES} <= rows[0].keys()
    last = rows[-1]
    # Predicting background everywhere scores about 25% mIoU (one class of three, at ~75% IoU).
    assert float(last["val_miou"]) > 45 and float(last["val_pixel_accuracy"]) > 80
    ious = [float(last[f"val_iou_{name}"]) for name in CLASSES]
    assert float(last["val_miou"]) == pytest.approx(sum(ious) / 3)
    config = json.loads((run / "config.json").read_text())
    assert config["classes"] == list(CLASSES) and config["train"]["task"] == "segment"
    assert config["model"]["channels"] == 16 and config["model"]["backbone"]["patch_size"] == 2
    assert (run / GRID_FILE).stat().st_size > 0 and (run / IOU_FILE).stat().st_size > 0
    assert isinstance(task_for(run), SegmentTask) and isinstance(task_for(run / "best"), SegmentTask)


def test_eval_and_predict_read_the_run(trained: tuple[Path, Path, Path], tmp_path: Path, capsys) -> None:
    run, _, val = trained
    assert main(["eval", "--model", str(run), "--data", str(val), "--output", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "eval.json").read_text())
    best = max(float(row["val_miou"]) for row in csv.DictReader(open(run / "metrics.csv", newline="")))
    assert report["miou"] == pytest.approx(best, abs=1e-6) and report["classes"] == list(CLASSES)
    assert sum(map(sum, report["confusion_matrix"])) == 4 * 24 * 24 == report["pixels"]
    assert (tmp_path / "eval_class_iou.png").is_file() and "mIoU" in capsys.readouterr().out

    masks = tmp_path / "masks"
    (tmp_path / "broken.png").write_bytes(b"not an image")
    code = main(["predict", "--model", str(run), str(val / "images" / "00.png"), str(tmp_path / "broken.png"),
                 "--masks-to", str(masks), "--json"])  # fmt: skip
    answers = json.loads(capsys.readouterr().out)
    assert code == 1 and answers[1]["error"] and answers[0]["mask"] == str(masks / "00_mask.png")
    with Image.open(masks / "00_mask.png") as mask, Image.open(val / "masks" / "00.png") as truth:
        predicted, expected = np.asarray(mask), np.asarray(truth)
    assert mask.mode == "P" and predicted.shape == expected.shape == (24, 24)
    assert (predicted == expected).mean() > 0.8
    assert sum(answers[0]["shares"].values()) == pytest.approx(1.0, abs=1e-3)
    with Image.open(masks / "00_overlay.png") as picture:
        assert picture.size == (24, 24) and picture.mode == "RGB"

    # Sliding windows of 8 pixels every 4 over the 16-pixel input: a mask of the image's size still.
    slid = tmp_path / "slid"
    code = main(["predict", "--model", str(run), str(val / "images" / "00.png"), "--masks-to", str(slid),
                 "--slide-window", "8", "--slide-stride", "4"])  # fmt: skip
    with Image.open(slid / "00_mask.png") as mask:
        assert code == 0 and np.asarray(mask).shape == (24, 24) and (np.asarray(mask) == expected).mean() > 0.5


def test_segmentation_recipe_settings() -> None:
    task = SegmentTask()
    scratch = task.resolve(TrainConfig(task="segment", data="d"))
    assert (scratch.recipe, scratch.schedule, scratch.weight_decay) == ("auto", "cosine", 0.05)
    assert scratch.time_budget == 600
    pretrained = task.resolve(TrainConfig(task="segment", data="d", pretrained="ckpt"))
    assert (pretrained.schedule, pretrained.weight_decay, pretrained.min_lr) == ("poly", 0.01, 0.0)
    with pytest.raises(ValueError, match="needs --data"):
        task.resolve(TrainConfig(task="segment"))
    with pytest.raises(ValueError, match="not recipe 'imagenet'"):
        task.resolve(TrainConfig(task="segment", data="d", recipe="imagenet"))


def test_lora_adapts_the_backbone_and_trains_both_heads(tmp_path: Path) -> None:
    pytest.importorskip("peft")
    torch.manual_seed(0)
    model = create_model("upernet_swin_atto", num_classes=3, img_size=32, channels=16, aux_channels=8)
    task = SegmentTask()
    adapters = LoraAdapters(model, rank=2, heads=task.lora_heads(model))

    assert len(adapters.adapted_layers) == 4 * 6 and adapters.adapted_layers[0].startswith("backbone.stages.0.")
    trained = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad and "lora_" not in name}
    assert trained == {"head", "aux_head", "stage_norms"}
    frozen = [name for name, p in model.named_parameters() if name.startswith("backbone.") and "lora_" not in name]
    assert frozen and not any(p.requires_grad for name, p in model.named_parameters() if name in frozen)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    model.eval()
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        adapted = model(pixels)
    adapters.save(tmp_path / "ckpt", Preprocessing((3, 32, 32), crop_pct=1.0), task.save_model)
    reloaded = swinkit.create_model(pretrained=str(tmp_path / "ckpt")).eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(pixels), adapted, atol=1e-4)
    assert (tmp_path / "ckpt" / "adapter" / "adapter_config.json").is_file()


def test_a_classifier_checkpoint_starts_the_backbone(tmp_path: Path) -> None:
    torch.manual_seed(0)
    classifier = swinkit.create_model("swin_atto", num_classes=5)
    swinkit.save_pretrained(classifier, tmp_path / "classifier")
    task, said = SegmentTask(), []
    cpu = torch.device("cpu")
    task.bind(Runtime(cpu, "fp32", Distributed(rank=0, world_size=1, local_rank=0, device=cpu), said.append))
    task.classes = list(CLASSES)
    overrides = {"channels": 16, "aux_channels": 8}
    config = task.resolve(TrainConfig(task="segment", data="d", pretrained=str(tmp_path / "classifier"),
                                      img_size=48, model_overrides=overrides))  # fmt: skip

    model = task.build_model(config)

    assert isinstance(model, SwinUperNet) and model.config.labels == CLASSES and model.config.channels == 16
    assert model.config.backbone.img_size == (48, 48) and "heads are new" in said[0]
    backbone = model.backbone.state_dict()
    kept = {name: tensor for name, tensor in classifier.state_dict().items() if not name.startswith(("head.", "norm."))}
    assert all(torch.equal(backbone[name], tensor) for name, tensor in kept.items())
    assert task.preprocessing(config, model).input_size == (3, 48, 48)


def test_a_killed_segmentation_run_resumes_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_shapes(tmp_path / "train", 8, seed=2)
    write_shapes(tmp_path / "val", 2, seed=3)

    def config(name: str) -> TrainConfig:
        return TrainConfig(task="segment", data=str(tmp_path / "train"), val=str(tmp_path / "val"), epochs=2,
                           batch_size=4, lr=3e-3, img_size=16, output=str(tmp_path), name=name, quiet=True, workers=0,
                           model_overrides={"channels": 16, "aux_channels": 8, "patch_size": 2})  # fmt: skip

    whole = loop.train(config("whole"), task=SegmentTask())

    class Killed(Exception):
        pass

    def die(self: object, row: object, epochs: int) -> None:
        raise Killed

    monkeypatch.setattr(loop._Trainer, "_report", die)
    with pytest.raises(Killed):
        loop.train(config("cut"), task=SegmentTask())
    monkeypatch.undo()
    resumed = loop.train(TrainConfig(task="segment", quiet=True), resume=tmp_path / "cut", task=SegmentTask())

    expected = torch.load(whole.run_dir / "last" / "training_state.pt", weights_only=True)["model"]
    got = torch.load(resumed.run_dir / "last" / "training_state.pt", weights_only=True)["model"]
    assert all(torch.equal(value, got[name]) for name, value in expected.items())
    assert resumed.best == whole.best and resumed.final.metrics["miou"] == whole.final.metrics["miou"]
