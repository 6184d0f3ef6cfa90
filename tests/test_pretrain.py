"""``swinkit pretrain``: SimMIM pre-training on a folder of unlabelled images, its recipes, exact resume,
and fine-tuning a classifier from the run."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import swinkit
from swinkit.checkpoints import create_simmim
from swinkit.cli import main
from swinkit.data.profile import DataProfile, MirrorTest
from swinkit.tasks.pretrain import PretrainTask
from swinkit.train import loop
from swinkit.train.config import TrainConfig
from swinkit.train.pretrain_recipe import MaskSettings, from_data

TINY = ["--model", "swin_atto", "--set", "embed_dim=16", "--set", "depths=[1,1,1]", "--set", "num_heads=[1,2,4]",
        "--workers", "0", "--batch-size", "8", "--seed", "3"]  # fmt: skip


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """16 unlabelled 36x36 images in nested folders: colour fields with a bright square."""
    root = tmp_path_factory.mktemp("unlabelled")
    generator = torch.Generator().manual_seed(0)
    for index in range(16):
        folder = root / ("a" if index % 2 else "b/c")
        folder.mkdir(parents=True, exist_ok=True)
        colour = torch.tensor([(200, 30, 30), (30, 200, 30), (30, 30, 200)][index % 3]).view(1, 1, 3)
        pixels = colour + 30 * torch.randn(36, 36, 3, generator=generator)
        top, left = torch.randint(0, 28, (2,), generator=generator).tolist()
        pixels[top : top + 8, left : left + 8] = 255
        Image.fromarray(pixels.clamp(0, 255).to(torch.uint8).numpy()).save(folder / f"{index}.png")
    return root


def test_pretrain_then_fine_tune_from_the_run(images, tmp_path, capsys):
    code = main(["pretrain", "--data", str(images), "--output", str(tmp_path), "--name", "pt", "--epochs", "2", *TINY])
    assert code == 0
    out = capsys.readouterr().out
    for line in ("input size    32x32", "mask patch    8 px", "mask ratio    0.6", "normalise     mean"):
        assert line in out, line
    run = tmp_path / "pt"
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[0].split(",")[-1] == "val_loss" and len(rows) == 3
    assert all(0.0 < float(row.split(",")[-1]) < 5.0 for row in rows[1:])
    assert sorted(path.name for path in (run / "reconstructions").iterdir()) == ["epoch_001.png", "epoch_002.png"]
    recorded = json.loads((run / "config.json").read_text())
    assert recorded["train"]["task"] == "pretrain" and recorded["mask"] == {"mask_patch": 8, "ratio": 0.6}
    model = create_simmim(run)
    assert model.config.embed_dim == 16 and model.mask_generator().mask_patch == 8
    stored = load_file(run / "best" / "model.safetensors")
    assert {"mask_token", "decoder.proj.weight", "encoder.patch_embed.proj.weight"} <= set(stored)

    code = main(["pretrain", "--data", str(images), "--pretrained", str(run), "--recipe", "imagenet", "--lr", "1e-12",
                 "--output", str(tmp_path), "--name", "more", "--epochs", "1", "--quiet", *TINY[8:]])  # fmt: skip
    assert code == 0  # going on from the run: its weights and normalisation, so the same held-out loss
    again = (tmp_path / "more" / "metrics.csv").read_text().splitlines()[1].split(",")[-1]
    assert float(again) == pytest.approx(min(float(row.split(",")[-1]) for row in rows[1:]), abs=1e-4)

    classifier = swinkit.create_model(pretrained=str(run), num_classes=3)
    assert classifier.load_report.dropped == ["decoder.proj.bias", "decoder.proj.weight", "mask_token"]
    qkv = "stages.1.blocks.0.attn.qkv.weight"
    assert torch.equal(classifier.state_dict()[qkv], stored["encoder." + qkv])
    labelled = tmp_path / "labelled"
    for name in ("a", "b"):
        (labelled / name).mkdir(parents=True)
        for index in range(6):
            Image.open(next(images.rglob(f"{index * 2 + (name == 'a')}.png"))).save(labelled / name / f"{index}.png")
    code = main(["train", "--data", str(labelled), "--pretrained", str(run), "--output", str(tmp_path),
                 "--name", "ft", "--epochs", "1", "--batch-size", "8", "--workers", "0", "--quiet"])  # fmt: skip
    assert code == 0
    fine_tuned = json.loads((tmp_path / "ft" / "config.json").read_text())  # the official decay by default
    assert fine_tuned["train"]["layer_decay"] == 0.9 and fine_tuned["model"]["embed_dim"] == 16


def test_a_killed_pretraining_run_resumes_exactly(images, tmp_path, monkeypatch):
    def config(name: str) -> TrainConfig:
        overrides = {"embed_dim": 16, "depths": (1, 1, 1), "num_heads": (1, 2, 4)}
        return TrainConfig(task="pretrain", data=str(images), output=str(tmp_path), name=name,
                           model="swin_atto", model_overrides=overrides, epochs=2, batch_size=8, workers=0,
                           quiet=True, seed=5)  # fmt: skip

    whole = loop.train(config("whole"), task=PretrainTask())

    class Killed(Exception):
        pass

    def die(self, row, epochs):
        raise Killed

    monkeypatch.setattr(loop._Trainer, "_report", die)
    with pytest.raises(Killed):
        loop.train(config("cut"), task=PretrainTask())
    monkeypatch.undo()
    resumed = loop.train(TrainConfig(task="pretrain", quiet=True), resume=tmp_path / "cut", task=PretrainTask())
    expected = torch.load(whole.run_dir / "last" / "training_state.pt", weights_only=True)
    got = torch.load(resumed.run_dir / "last" / "training_state.pt", weights_only=True)
    assert got["step"] == expected["step"] == 4
    for name, value in expected["model"].items():
        assert torch.equal(value, got["model"][name]), name


def test_the_official_recipe_and_the_data_chosen_one():
    task = PretrainTask()
    official = task.resolve(TrainConfig(task="pretrain", data="x", recipe="imagenet"))
    settings = {key: getattr(official, key) for key in ("model", "img_size", "epochs", "batch_size", "lr",
                                                        "lr_base_batch", "min_lr", "warmup_epochs", "weight_decay",
                                                        "clip_grad", "scale", "hflip", "mixup")}  # fmt: skip
    assert settings == {"model": "simmim_swin_b", "img_size": 192, "epochs": 100, "batch_size": 128, "lr": 2e-4,
                        "lr_base_batch": 512, "min_lr": 1e-5, "warmup_epochs": 10.0, "weight_decay": 0.05,
                        "clip_grad": 5.0, "scale": (0.67, 1.0), "hflip": 0.5, "mixup": 0.0}  # fmt: skip
    assert task.resolve(TrainConfig(task="pretrain", data="x")).time_budget == 600.0
    with pytest.raises(ValueError, match="pre-training recipe 'digits' is not one of auto, imagenet"):
        task.resolve(TrainConfig(task="pretrain", data="x", recipe="digits"))
    with pytest.raises(ValueError, match="pass --recipe imagenet"):
        task.resolve(TrainConfig(task="pretrain", data="x", pretrained="run"))
    going_on = task.resolve(TrainConfig(task="pretrain", data="x", pretrained="run", recipe="imagenet"))
    assert (going_on.model, going_on.img_size, going_on.lr) == (None, None, 2e-4)
    mirror = MirrorTest(0.5, 0.5, 0.5, 0)
    large = DataProfile(20000, 1, 20000, 256, 256, 3, (0.5,) * 3, (0.25,) * 3, mirror)
    config, choices, candidates = from_data(task.resolve(TrainConfig(task="pretrain", data="x")), large, MaskSettings())
    stride = config.model_overrides["patch_size"] * 2 ** (len(config.model_overrides["depths"]) - 1)
    assert config.model == "swin_pico" and config.img_size % stride == 0 and candidates
    patch = next(choice for choice in choices if choice.setting == "mask patch")
    assert int(patch.value.split()[0]) % stride == 0 and config.img_size % int(patch.value.split()[0]) == 0
    given = from_data(task.resolve(TrainConfig(task="pretrain", data="x")), large, MaskSettings(32, 0.75))[1]
    assert not any(choice.setting == "mask patch" for choice in given)
    assert next(choice for choice in given if choice.setting == "mask ratio").value == "0.75"


def test_a_pretraining_run_starts_the_backbone_of_a_segmenter_and_a_detector(images, tmp_path):
    from detection_folders import write_shapes_coco
    from test_segment_task import write_shapes

    assert main(["pretrain", "--data", str(images), "--output", str(tmp_path), "--name", "pt", "--epochs", "1",
                 "--quiet", *TINY]) == 0  # fmt: skip
    encoder = load_file(tmp_path / "pt" / "best" / "model.safetensors")
    write_shapes(tmp_path / "seg-data", 4)
    write_shapes_coco(tmp_path / "det-data", count=4, size=64)
    frozen = ["--pretrained", str(tmp_path / "pt"), "--freeze-backbone", "--epochs", "1", "--batch-size", "4",
              "--workers", "0", "--output", str(tmp_path), "--quiet"]  # fmt: skip
    assert main(["train", "--task", "segment", "--data", str(tmp_path / "seg-data"), "--name", "seg", *frozen,
                 "--set", "channels=16", "--set", "aux_channels=8"]) == 0  # fmt: skip
    assert main(["train", "--task", "detect", "--data", str(tmp_path / "det-data"), "--name", "det", *frozen]) == 0

    segmenter = load_file(tmp_path / "seg" / "last" / "model.safetensors")
    detector = load_file(tmp_path / "det" / "last" / "model.safetensors")
    qkv = "stages.1.blocks.0.attn.qkv.weight"
    seg_key = next(key for key in segmenter if key.endswith(qkv))
    det_key = next(key for key in detector if key.endswith(qkv))
    assert torch.equal(segmenter[seg_key], encoder["encoder." + qkv])
    assert torch.equal(detector[det_key], encoder["encoder." + qkv])
    for run in ("seg", "det"):  # the architecture is the checkpoint's; the decoder and mask token are dropped
        recorded = json.loads((tmp_path / run / "config.json").read_text())["model"]
        assert json.dumps(recorded).count('"embed_dim": 16') == 1, recorded
    assert not any(key.endswith(("mask_token", "decoder.proj.weight")) for key in [*segmenter, *detector])


def test_layer_decay_reaches_a_segmenters_and_a_detectors_backbone_and_leaves_their_heads_at_the_base_rate():
    from swinkit.checkpoints.detection import create_detector
    from swinkit.tasks.detect import DetectTask
    from swinkit.tasks.segment import SegmentTask

    segmenter = swinkit.create_model("upernet_swin_atto", num_classes=3, channels=16, aux_channels=8)
    detector = create_detector("fasterrcnn_swin_atto")
    for task, model, prefix in ((SegmentTask(), segmenter, "backbone."), (DetectTask(), detector, "backbone.body.")):
        groups = task.parameter_groups(model, 0.05, 0.9)
        scale = {id(p): group["lr_scale"] for group in groups for p in group["params"]}
        named = dict(model.named_parameters())
        depth = sum(model.config.backbone.depths)  # N blocks: the embedding at 0.9^(N + 1), block b at 0.9^(N + 1 - b)
        assert scale[id(named[prefix + "patch_embed.proj.weight"])] == pytest.approx(0.9 ** (depth + 1))
        assert scale[id(named[prefix + "stages.1.blocks.0.attn.qkv.weight"])] == pytest.approx(0.9 ** (depth - 2))
        heads = [name for name in named if not name.startswith(prefix)]
        assert heads and all(scale[id(named[name])] == 1.0 for name in heads)
        assert len(scale) == len(named)
