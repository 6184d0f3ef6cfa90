"""Training parts on their own: recipes, optimiser groups, schedule, atomic run checkpoints, metrics."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import swinkit
from swinkit.train.config import DIGITS, FINETUNE, SCRATCH, TrainConfig
from swinkit.train.metrics import evaluate, topk_correct
from swinkit.train.layer_decay import layer_id
from swinkit.train.optim import build_optimizer, build_scheduler, parameter_groups
from swinkit.train.rundir import RunDirectory, atomic_write

TINY = dict(img_size=32, embed_dim=16, depths=(1, 2), num_heads=(1, 2), window_size=4, num_classes=3)


def test_recipes_fill_unset_fields():
    digits = TrainConfig().resolved()
    assert (
        digits.recipe_name == "digits" and digits.model_overrides["in_chans"] == 1 and digits.epochs == DIGITS["epochs"]
    )
    scratch = TrainConfig(data="folder", lr=3e-4, recipe="imagenet").resolved()
    assert scratch.lr == 3e-4 and scratch.weight_decay == SCRATCH["weight_decay"] == 0.05
    assert scratch.mixup == 0.8 and scratch.cutmix == 1.0 and scratch.re_prob == 0.25 and scratch.clip_grad == 5.0
    assert scratch.model_overrides == {}
    finetune = TrainConfig(data="folder", pretrained="x").resolved()
    assert (finetune.lr, finetune.batch_size, finetune.accum_steps, finetune.epochs) == (5e-5, 32, 4, 3)
    assert finetune.warmup_epochs == FINETUNE["warmup_epochs"]
    assert finetune.model is None  # the variant comes from the checkpoint
    # An explicit model drops the digits recipe's small model.
    assert TrainConfig(model="swin_s").resolved().model_overrides == {}
    # From scratch on a folder, the recipe is chosen from the data: only its fixed part is filled here.
    auto = TrainConfig(data="folder").resolved()
    assert auto.recipe == "auto" and auto.time_budget == 600.0 and auto.weight_decay == 0.05
    assert auto.model is None and auto.batch_size is None and auto.epochs is None and auto.lr is None
    assert TrainConfig(data="folder", epochs=5).resolved().time_budget is None  # given epochs: no budget
    with pytest.raises(ValueError, match="recipe 'auto' trains from scratch"):
        TrainConfig(data="folder", pretrained="x", recipe="auto").resolved()


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"precision": "fp8"}, "precision"),
        ({"epochs": 0}, "epochs"),
        ({"layer_decay": 1.5}, "layer_decay"),
        ({"val_split": 1.0}, "val_split"),
        ({"auto_augment": "autoaug"}, "auto_augment"),
    ],
)
def test_bad_settings_are_refused(fields, words):
    with pytest.raises(ValueError, match=words):
        TrainConfig(**fields).resolved()


def test_config_round_trips_through_json():
    config = TrainConfig(data="d", scale=(0.5, 1.0), model_overrides={"depths": (2, 2)}).resolved()
    again = TrainConfig.from_dict(config.to_dict())
    assert again.scale == (0.5, 1.0) and again.model_overrides["depths"] == [2, 2]
    assert again.resolved().lr == config.lr


def test_no_weight_decay_on_norms_biases_and_bias_tables():
    model = swinkit.create_model("swin_t", **TINY)
    groups = parameter_groups(model, weight_decay=0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    for group in groups:
        for parameter in group["params"]:
            name = names[id(parameter)]
            exempt = "norm" in name or name.endswith(".bias") or "relative_position_bias_table" in name
            assert group["weight_decay"] == (0.0 if exempt else 0.05), name
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_layer_wise_lr_decay():
    model = swinkit.create_model("swin_t", **TINY)
    depths = model.config.depths
    assert layer_id("patch_embed.proj.weight", depths) == 0
    assert layer_id("stages.0.blocks.0.attn.qkv.weight", depths) == 1
    assert layer_id("stages.1.downsample.reduction.weight", depths) == 1  # the official id: stage 0's last block
    assert layer_id("stages.1.blocks.1.mlp.fc1.weight", depths) == 3
    assert layer_id("head.weight", depths) == 4
    optimizer = build_optimizer(model, lr=1.0, weight_decay=0.05, layer_decay=0.5)
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert lr_of[id(model.head.weight)] == 1.0
    assert lr_of[id(model.patch_embed.proj.weight)] == 0.5**4
    assert lr_of[id(model.stages[1].blocks[1].mlp.fc1.weight)] == 0.5


def test_frozen_parameters_are_left_out():
    model = swinkit.create_model("swin_t", **TINY)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith("head."))
    optimizer = build_optimizer(model, 1e-3, 0.05)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == 2
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(model, 1e-3, 0.05)


def test_warmup_then_cosine_per_step():
    parameter = torch.nn.Parameter(torch.zeros(2, 2))
    optimizer = torch.optim.AdamW([parameter], lr=1.0)
    scheduler = build_scheduler(optimizer, total_steps=20, warmup_steps=5, min_lr=0.01)
    rates = []
    for _ in range(20):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == pytest.approx(1e-3)
    assert all(a < b for a, b in zip(rates[:5], rates[1:6]))
    assert rates[5] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(rates[5:], rates[6:]))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01)
    # Same schedule after a save and a load in the middle.
    again = torch.optim.AdamW([parameter], lr=1.0)
    resumed = build_scheduler(again, total_steps=20, warmup_steps=5, min_lr=0.01)
    for _ in range(7):
        again.step()
        resumed.step()
    state = resumed.state_dict()
    third = torch.optim.AdamW([parameter], lr=1.0)
    loaded = build_scheduler(third, total_steps=20, warmup_steps=5, min_lr=0.01)
    third.load_state_dict(again.state_dict())
    loaded.load_state_dict(state)
    assert third.param_groups[0]["lr"] == pytest.approx(rates[7])


def test_topk_and_evaluate():
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0], [3.0, 1.0, 2.0]])
    targets = torch.tensor([0, 2, 0, 1])
    assert topk_correct(logits, targets, (1, 2, 5)) == [1, 2, 4]
    model = torch.nn.Identity()
    result = evaluate(model, [(logits[:2], targets[:2]), (logits[2:], targets[2:])], 3, torch.device("cpu"))
    assert result.count == 4 and result.top1 == 25.0 and result.top5 == 100.0
    assert result.confusion.tolist() == [[1, 0, 1], [1, 0, 0], [0, 1, 0]]
    assert result.per_class[0] == 50.0 and result.per_class[1] == 0.0
    assert result.loss == pytest.approx(torch.nn.functional.cross_entropy(logits, targets).item())


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("old")

    def failing(path):
        path.write_text("partial")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(target, failing)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def _export(folder):
    (folder / "model.txt").write_text(folder.name)


def test_checkpoints_links_and_pruning(tmp_path):
    run = RunDirectory(tmp_path / "run")
    run.path.mkdir()
    run.save_checkpoint(1, _export, {"epoch": 1}, best=True)
    run.save_checkpoint(2, _export, {"epoch": 2}, best=False)
    run.save_checkpoint(3, _export, {"epoch": 3}, best=False)
    assert run.link("last").name == "epoch-0003" and run.link("best").name == "epoch-0001"
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["epoch-0001", "epoch-0003"]
    assert run.load_state()["epoch"] == 3


def test_a_kill_while_saving_leaves_the_previous_checkpoint(tmp_path):
    run_path = tmp_path / "run"
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from swinkit.train.rundir import RunDirectory
        run = RunDirectory({str(run_path)!r})
        run.path.mkdir()
        run.save_checkpoint(1, lambda f: (f / "model.txt").write_text("one"), {{"epoch": 1}}, best=True)
        def die(folder):
            (folder / "model.txt").write_text("two, half written")
            os.kill(os.getpid(), signal.SIGKILL)
        run.save_checkpoint(2, die, {{"epoch": 2}}, best=True)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert result.returncode == -9
    run = RunDirectory(run_path)
    assert run.load_state()["epoch"] == 1
    assert (run.link("last") / "model.txt").read_text() == "one"
    run.save_checkpoint(2, _export, {"epoch": 2}, best=False)
    assert sorted(os.listdir(run.checkpoints)) == ["epoch-0001", "epoch-0002"]
