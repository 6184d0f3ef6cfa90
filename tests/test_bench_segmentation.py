"""``swinkit bench segmentation`` on small inputs: the digit scenes, transformers' UperNet built from swinkit's
config, the plain loop, the scoring and the tables."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import swinkit
from swinkit.bench import scenes as scene_sets
from swinkit.bench import segmentation, tables
from swinkit.checkpoints.segmentation import save_segmenter
from swinkit.cli.bench import BENCHMARKS
from swinkit.data.segmentation import load_segmentation

transformers = pytest.importorskip("transformers")

TINY = {"embed_dim": 16, "depths": (2, 2, 2, 2), "num_heads": (1, 2, 2, 4), "window_size": 4, "img_size": 64,
        "channels": 16, "aux_channels": 8, "dropout": 0.0, "num_classes": 11}  # fmt: skip


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.*"))}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return scene_sets.build_scenes(tmp_path_factory.mktemp("scenes"), train=40, val=12, side=32, seed=0)


def test_scenes_are_image_and_mask_folders_the_segment_task_reads(scenes):
    train, val = scenes
    images, masks = scene_sets.load_pairs(train)
    assert images.shape == (40, 3, 32, 32) and images.dtype == torch.uint8
    assert masks.shape == (40, 32, 32)
    values = set(masks.unique().tolist())
    assert values <= set(range(len(scene_sets.SCENE_CLASSES))) | {255}
    assert {0, 255} <= values and len(values - {0, 255}) >= 8  # the background, rims and most digits
    assert all((mask > 0).any() for mask in masks)  # every scene holds a digit
    with Image.open(train / "images" / "00000.png") as image, Image.open(train / "masks" / "00000.png") as mask:
        assert (image.mode, mask.mode) == ("RGB", "L")
    bundle = load_segmentation(train, val=val, workers=1)
    assert bundle.classes == list(scene_sets.SCENE_CLASSES)
    assert (len(bundle.train), len(bundle.val)) == (40, 12)


def test_scenes_are_deterministic_and_validation_shares_nothing_with_training(scenes, tmp_path):
    train, val = scenes
    again_train, _ = scene_sets.build_scenes(tmp_path, train=40, val=12, side=32, seed=0)
    assert digests(again_train) == digests(train)
    other, _ = scene_sets.build_scenes(tmp_path / "other", train=40, val=12, side=32, seed=1)
    assert digests(other) != digests(train)
    train_rows, val_rows = scene_sets.source_split(1797)
    assert not set(train_rows) & set(val_rows) and len(train_rows) + len(val_rows) == 1797
    seen = {hashlib.sha1(p.read_bytes()).hexdigest() for p in (train / "images").iterdir()}
    assert not seen & {hashlib.sha1(p.read_bytes()).hexdigest() for p in (val / "images").iterdir()}


def test_transformers_upernet_built_from_swinkit_config_computes_the_same_function(tmp_path):
    torch.manual_seed(0)
    ours = swinkit.create_model("upernet_swin_t", **TINY).eval()
    fresh = segmentation.fresh_transformers(ours.config, seed=0)
    save_segmenter(ours, tmp_path, format="hf")
    config = segmentation.transformers_config(ours.config)
    theirs = transformers.UperNetForSemanticSegmentation.from_pretrained(tmp_path, config=config)
    shapes = sorted(tuple(p.shape) for p in fresh.parameters())
    assert shapes == sorted(tuple(p.shape) for p in theirs.parameters())
    pixels, labels = segmentation.speed_batch(2, 64, torch.device("cpu"))
    labels = torch.where(labels == 255, labels, labels % 11)
    found = segmentation.agreement(ours, segmentation.TransformersSegmenter(theirs), pixels, labels)
    assert found["logits"] < 1e-5 and found["loss"] < 1e-5


def test_a_two_stage_backbone_gets_transformers_upernet_without_its_auxiliary_head():
    fields = {"img_size": 32, "num_classes": 11, "depths": (2, 2), "num_heads": (2, 4)}
    config = swinkit.create_model("upernet_swin_atto", **fields).config
    assert config.backbone.num_stages == 2 and config.has_aux
    model = segmentation.fresh_transformers(config, seed=0)
    assert model.inner.auxiliary_head is None
    pixels, labels = torch.randn(2, 3, 32, 32), torch.randint(0, 11, (2, 32, 32))
    assert model(pixels).shape == (2, 11, 32, 32) and torch.isfinite(model.loss(pixels, labels))


def test_the_speed_models_hold_the_same_weights_and_agree(tmp_path):
    tiny = {key: value for key, value in TINY.items() if key not in ("img_size", "num_classes")}
    folder = segmentation.write_speed_models("swin_t", 64, tmp_path, **tiny)
    ours, theirs = (segmentation.load_speed_model(system, folder) for system in segmentation.SYSTEMS)
    pixels, labels = segmentation.speed_batch(2, 64, torch.device("cpu"))
    found = segmentation.agreement(ours, theirs, pixels, labels)
    assert found["logits"] < segmentation.TOLERANCE and found["loss"] < segmentation.TOLERANCE
    before = theirs.inner.decode_head.classifier.weight.clone()
    segmentation.step_function(theirs, "training", pixels, labels)()
    assert not torch.equal(before, theirs.inner.decode_head.classifier.weight)


def test_the_plain_loop_steps_change_the_weights_on_a_warm_up_then_poly_schedule():
    config = swinkit.create_model("upernet_swin_t", **TINY).config
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8, generator=generator)
    masks = torch.randint(0, 11, (8, 64, 64), generator=generator)
    loop = segmentation.PlainSegLoop(segmentation.fresh_transformers(config, 0), images, masks, 4, [0.5] * 3,
                                     [0.25] * 3, seed=0)  # fmt: skip
    loop.total = 40
    assert loop.rate() == pytest.approx(segmentation.BASELINE_LR / 2)  # warm-up over 2 steps
    before = {name: p.clone() for name, p in loop.model.named_parameters()}
    batches = list(loop.batches())
    assert len(batches) == loop.steps_per_epoch == 2
    pixels, labels = batches[0]
    assert pixels.shape == (4, 3, 64, 64) and labels.shape == (4, 64, 64)
    assert set(labels.unique().tolist()) <= set(range(11)) | {255}
    assert np.isfinite(loop.step(pixels, labels))
    changed = [name for name, p in loop.model.named_parameters() if not torch.equal(p, before[name])]
    assert any("backbone" in name for name in changed) and any("decode_head" in name for name in changed)
    assert any("auxiliary_head" in name for name in changed)
    loop.done = 40
    assert loop.rate() == 0.0


def test_evaluate_scores_a_perfect_and_a_constant_model():
    masks = torch.zeros(4, 8, 8, dtype=torch.long)
    masks[:, 2:6, 2:6] = 3
    masks[0, 0, 0] = 255
    images = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)

    class Oracle(torch.nn.Module):
        def __init__(self, answer: torch.Tensor) -> None:
            super().__init__()
            self.answer = answer

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.one_hot(self.answer[: len(pixels)], 11).permute(0, 3, 1, 2).float()

    perfect = Oracle(masks.clamp(max=10))
    assert segmentation.evaluate(perfect, images, masks, [0.5] * 3, [0.25] * 3) == pytest.approx(100.0)
    background = Oracle(torch.zeros_like(masks))
    expected = 100 * (4 * 64 - 1 - 64) / (4 * 64 - 1) / 2  # background IoU, class 3 at 0
    assert segmentation.evaluate(background, images, masks, [0.5] * 3, [0.25] * 3) == pytest.approx(expected)


def fake_results() -> dict:
    run = {"miou": 50.0, "own_miou": 50.5, "best_miou": 51.0, "epochs": 3, "seconds": 95.0}
    backbone = {"embed_dim": 48, "depths": [2, 2, 6], "patch_size": 2, "window_size": 4}
    return {
        "machine": "a CPU, 2 cores, 2 threads", "torch": "2.14", "transformers": "5.24", "quick": False,
        "budget": 90.0, "seeds": [0, 1],
        "speed": {
            "backbone": "swin_t", "batch": 2, "sizes": {"inference": 256, "training": 128}, "rounds": 3,
            "seconds": {"inference": {"swinkit": 1.0, "transformers": 1.2},
                        "training": {"swinkit": 2.0, "transformers": 1.8}},
            "peak_mb": {"inference": {"swinkit": 100.0, "transformers": 200.0},
                        "training": {"swinkit": 300.0, "transformers": 300.0}},
            "agreement": {"inference": {"logits": 2e-6, "loss": 1e-7}, "training": {"logits": 3e-6, "loss": 0.0}},
        },
        "run": {
            "runs": {"swinkit": [run, run | {"miou": 54.0}], "transformers": [run, run | {"miou": 51.0}]},
            "model": {"backbone": backbone, "channels": 256, "aux_channels": 128},
            "train": {"model": "upernet_swin_pico", "batch_size": 16},
            "images": {"train": 2000, "val": 500, "side": 64},
        },
    }  # fmt: skip


def test_targets_and_tables_of_fake_results(tmp_path):
    results = fake_results()
    results["targets"] = segmentation.targets(results)
    assert results["targets"] == {
        "inference: at least as fast": True, "inference: less memory": True,
        "training: at least as fast": False, "training: less memory": False,
        "mIoU at least the reference's": True,
    }  # fmt: skip
    table = segmentation.to_markdown(results)
    assert "| inference | 1000 | 1200 | 1.20 | 100 | 200 | 0.50 |" in table
    assert "| swinkit | 52.00 ± 2.83 | 50.50 ± 0.00 | 3.00 ± 0.00 | 95.0 |" in table
    assert "| transformers | 50.50 ± 0.71 | | 3.00 ± 0.00 | 95.0 |" in table
    assert "upernet_swin_pico (C 48, depths [2, 2, 6]" in table and "| training: at least as fast | no |" in table
    data, markdown = tables.write_results(tmp_path, "segmentation_quick", results, table)
    assert json.loads(data.read_text())["targets"] == results["targets"] and markdown.read_text() == table
    speed_only = {key: value for key, value in results.items() if key != "run"}
    speed_only["targets"] = segmentation.targets(speed_only)
    assert "mIoU at least the reference's" not in speed_only["targets"]
    assert "Digit scenes" not in segmentation.to_markdown(speed_only)


def test_options_registration_and_quick_defaults():
    assert BENCHMARKS["segmentation"].main is segmentation.main
    cpu = segmentation.parse_args(["--device", "cpu"])
    assert (cpu.size, cpu.train_size, cpu.batch, cpu.budget, cpu.seeds) == (256, 128, 2, 75.0, [0, 1, 2])
    gpu = segmentation.parse_args(["--device", "cuda"])
    assert (gpu.size, gpu.train_size, gpu.batch) == (512, 512, 8)
    quick = segmentation.parse_args(["--device", "cpu", "--quick"])
    assert (quick.size, quick.train_size, quick.rounds, quick.seeds, quick.budget) == (128, 64, 1, [0], 15.0)
    with pytest.raises(SystemExit):
        segmentation.parse_args(["--speed-only", "--run-only"])
