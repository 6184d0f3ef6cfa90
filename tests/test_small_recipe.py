"""The small-data parts of the data-chosen recipe: the stem, the EMA of the weights, and the end-of-run report."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from swinkit import tasks
from swinkit.cli import build_parser
from swinkit.cli.train import config_from_args
from swinkit.train import loop, recipe, recipe_report
from swinkit.train.config import TrainConfig

from test_train_run import TINY_MODEL, make_folder

MEASURED = {
    "machine": "2-core CPU",
    "date": "2026-12-01",
    "rows": [
        {"set": "cluttered", "images_per_class": 60, "budget_s": 120.0, "swinkit_model": "swin_atto",
         "swinkit_top1": [84.1, 1.2], "resnet18_top1": [82.6, 0.9], "floor_top1": 79.1},
        {"set": "digits", "images_per_class": 60, "budget_s": 120.0, "swinkit_model": "swin_femto",
         "swinkit_top1": [90.0, 0.5], "resnet18_top1": [91.0, 0.4], "floor_top1": 85.0},
        {"set": "cluttered", "images_per_class": 600, "budget_s": 480.0, "swinkit_model": "swin_atto",
         "swinkit_top1": [88.0, 0.3], "resnet18_top1": [88.3, 0.2], "floor_top1": 80.0},
    ],
}  # fmt: skip


def test_the_stem_is_chosen_for_small_inputs_from_scratch_and_a_given_one_is_kept():
    assert recipe.choose_stem(32, 2, None)[0] == "conv"
    assert recipe.choose_stem(64, 4, None)[0] == "conv"
    stem, why = recipe.choose_stem(96, 4, None)
    assert stem == "patch" and "above 64 px" in why
    stem, why = recipe.choose_stem(30, 3, None)
    assert stem == "patch" and "patch 3 is no power of 2" in why
    assert recipe.choose_stem(32, 2, "spt") == ("spt", "given")
    stem, why = recipe.choose_stem(32, 2, None, "swin_t")
    assert stem == "patch" and "swin_t" in why


def test_cli_flags_for_the_stem_and_the_ema():
    parse = build_parser().parse_args
    assert config_from_args(parse(["train", "--stem", "spt"])).model_overrides == {"stem": "spt"}
    assert config_from_args(parse(["train", "--ema"])).ema == "on"  # the flag alone, as before
    assert config_from_args(parse(["train", "--ema", "auto"])).ema == "auto"
    assert config_from_args(parse(["train"])).ema is None
    assert TrainConfig(data="d").resolved().ema == "auto" and TrainConfig().resolved().ema == "off"
    # Runs saved when EMA was a switch read back.
    assert TrainConfig.from_dict({"ema": True, "ema_decay": 0.9998}).ema == "on"
    assert TrainConfig.from_dict({"ema": False}).ema == "off"
    with pytest.raises(ValueError, match="ema 'sometimes' is not one of on, off, auto"):
        TrainConfig(ema="sometimes").validate()


def test_ema_is_on_from_scratch_with_a_decay_from_the_steps():
    keep, decay, why = recipe.choose_ema(1100, True, "auto", None)
    assert keep and decay == pytest.approx(1 - 1 / 110) and "about the last 110 of 1,100 steps" in why
    assert recipe.choose_ema(10**7, True, "auto", None)[1] == 0.9999
    assert recipe.choose_ema(150, True, "auto", None)[:2] == (False, None)
    assert recipe.choose_ema(5000, False, "auto", None)[0] is False  # pretrained weights or adapters
    assert recipe.choose_ema(5000, True, "off", None)[0] is False
    assert recipe.choose_ema(50, False, "on", 0.5)[:2] == (True, 0.5)


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("colours"), per_class=4, size=32)


def ema_config(folder, output, **changes) -> TrainConfig:
    return dataclasses.replace(
        config_from_args(build_parser().parse_args(
            ["train", "--data", str(folder), "--output", str(output), "--batch-size", "6", "--lr", "2e-3",
             "--lr-base-batch", "0", "--warmup-epochs", "0", "--mixup", "0", "--cutmix", "0", "--auto-augment",
             "none", "--re-prob", "0", "--val-split", "0", "--quiet", "--deterministic", "--stem", "conv",
             *TINY_MODEL])),
        **changes,
    )  # fmt: skip


def test_ema_of_two_steps_is_the_decayed_average_and_is_what_the_checkpoint_holds(colours, tmp_path, monkeypatch):
    snapshots = []
    real_step = loop._Trainer._optimizer_step

    def recording_step(self):
        real_step(self)
        snapshots.append({key: value.clone() for key, value in self.model.state_dict().items()})

    monkeypatch.setattr(loop._Trainer, "_optimizer_step", recording_step)
    # 12 images in batches of 6: two steps; decay 0.25 per step.
    result = tasks.train(ema_config(colours, tmp_path, name="ema", epochs=1, ema="on", ema_decay=0.25))
    assert len(snapshots) == 2
    first, second = snapshots
    saved = load_file(result.run_dir / "last" / "model.safetensors")
    state = torch.load(result.run_dir / "last" / "training_state.pt", weights_only=True)
    averaged = 0
    for key, value in second.items():
        if not value.is_floating_point():
            continue
        # The first update copies the weights; the second keeps a quarter of the average (decay 0.25).
        expected = 0.25 * first[key] + 0.75 * value
        assert torch.allclose(saved[key], expected, atol=1e-6), key
        assert torch.equal(state["model"][key], value), key
        averaged += not torch.equal(first[key], value)
    assert averaged > 10 and "patch_embed.convs.0.1.running_mean" in saved  # BatchNorm statistics averaged too
    assert state["ema"]["n_averaged"] == 2


def test_resume_keeps_the_ema_and_its_decay_chosen_from_the_steps(colours, tmp_path, monkeypatch):
    whole = tasks.train(ema_config(colours, tmp_path, name="whole", epochs=3, ema="on"))
    saved = json.loads((whole.run_dir / "config.json").read_text())["train"]
    assert saved["ema"] == "on" and saved["ema_decay"] == 0.99  # 6 steps: the decay's floor

    real_save = loop._Trainer._save

    class Killed(Exception):
        pass

    def save_then_die(self, epoch, best):
        real_save(self, epoch, best)
        if epoch == 1:
            raise Killed

    monkeypatch.setattr(loop._Trainer, "_save", save_then_die)
    with pytest.raises(Killed):
        tasks.train(ema_config(colours, tmp_path, name="killed", epochs=3, ema="on"))
    monkeypatch.setattr(loop._Trainer, "_save", real_save)
    resumed = tasks.train(TrainConfig(quiet=True), resume=tmp_path / "killed")
    ours, theirs = (load_file(run / "last" / "model.safetensors") for run in (whole.run_dir, resumed.run_dir))
    for key, value in ours.items():  # the EMA weights
        assert torch.equal(value, theirs[key]), key
    states = [
        torch.load(run / "last" / "training_state.pt", weights_only=True) for run in (whole.run_dir, resumed.run_dir)
    ]
    for key, value in states[0]["ema"].items():
        assert torch.equal(value, states[1]["ema"][key]), key


def test_report_names_the_choices_and_the_nearest_measurement(tmp_path):
    config = TrainConfig(model="swin_atto", model_overrides={"patch_size": 2}, batch_size=16, epochs=120,
                         auto_augment="none", mixup=0.0, cutmix=0.0, re_prob=0.0, label_smoothing=0.0, drop_path=0.0,
                         ema="on", ema_decay=0.9909, recipe="auto")  # fmt: skip
    path = tmp_path / "measured.json"
    path.write_text(json.dumps(MEASURED))
    lines = recipe_report.report_lines(config, 55.0, 577_318, "conv", path)
    assert lines[0] == (
        "recipe chosen: swin_atto (0.58 M parameters, patch 2, stem conv), batch 16, 120 epochs; augmentation none, "
        "MixUp 0, CutMix 0, erasing 0; label smoothing 0, drop-path 0; EMA on (decay 0.9909)"
    )
    assert lines[1:] == [
        "the small-data benchmark measured this recipe at 60 images/class on 'cluttered': 84.1 ± 1.2 % top-1 vs "
        "ResNet-18 82.6 ± 0.9 % (floor 79.1 %), same budget of 2m00s (2026-12-01, 2-core CPU)",
        "the small-data benchmark measured this recipe at 60 images/class on 'digits': 90.0 ± 0.5 % top-1 vs "
        "ResNet-18 91.0 ± 0.4 % (floor 85.0 %), same budget of 2m00s, where it chose swin_femto "
        "(2026-12-01, 2-core CPU)",
    ]
    # Nearest by ratio: 250 a class is nearer 600 (x2.4) than 60 (x4.2).
    assert "at 600 images/class" in recipe_report.report_lines(config, 250.0, 577_318, "conv", path)[1]
    missing = recipe_report.report_lines(config, 55.0, 577_318, "conv", tmp_path / "absent.json")
    assert missing[1] == "no small-data benchmark measurement is recorded (small_data_measured.json is missing)"
    path.write_text("{not json")
    unreadable = recipe_report.report_lines(config, 55.0, 577_318, "conv", path)[1]
    assert unreadable.startswith("no small-data benchmark measurement could be read")
    path.write_text(json.dumps({"rows": [{"set": "x", "images_per_class": 60}]}))
    assert "could not be read" in recipe_report.report_lines(config, 55.0, 577_318, "conv", path)[1]
