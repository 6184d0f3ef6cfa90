"""``swinkit train --lora``: adapters on a pretrained run, what they train, the run folder everywhere, resume."""

import json
import sys

import peft
import pytest
import torch
from safetensors.torch import load_file

import swinkit
from swinkit.cli import main
from swinkit.data import load_data
from swinkit.classifier import load_classifier, predict
from swinkit.train import loop
from swinkit.train.lora import LoraAdapters, target_pattern

#: A small digits model: 2x2 patches, two stages of two blocks.
ARCH = ["--set", "embed_dim=16", "--set", "num_heads=[1,2]", "--set", "patch_size=2", "--set", "window_size=2"]
COMMON = ["--workers", "0", "--batch-size", "64", "--quiet"]
LORA = ["--lora", "4", "--lora-alpha", "8", "--lora-dropout", "0.1", "--epochs", "2", "--seed", "5"]
ADAPTED = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    assert main(["train", "--epochs", "1", "--output", str(root), "--name", "base", *ARCH, *COMMON]) == 0
    base = root / "base"
    assert (
        main(["train", "--pretrained", str(base), *LORA, "--output", str(root), "--name", "lora", *ARCH, *COMMON]) == 0
    )
    return base, root / "lora"


def tiny_model() -> swinkit.SwinTransformer:
    torch.manual_seed(0)
    return swinkit.create_model(
        "swin_t", img_size=32, embed_dim=16, depths=(2, 2), num_heads=(1, 2), window_size=4, num_classes=5
    )


def test_targets_are_the_blocks_layers_only():
    model = tiny_model()
    adapters = LoraAdapters(model, rank=2)
    assert len(adapters.adapted_layers) == 4 * 4
    assert all(name.startswith("stages.") and ".blocks." in name for name in adapters.adapted_layers)
    assert "patch_embed.proj" not in adapters.adapted_layers  # a convolution also named proj
    assert not any("reduction" in name for name in adapters.adapted_layers)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert all("lora_" in name or name.startswith("head.modules_to_save.") for name in trainable)
    # Rank 2: r * (in + out) per layer; qkv C->3C, proj C->C, fc1 C->4C, fc2 4C->C, two blocks of C=16 and 32.
    per_block = {width: 2 * (4 * width) + 2 * (2 * width) + 2 * (5 * width) + 2 * (5 * width) for width in (16, 32)}
    head = 32 * 5 + 5
    assert adapters.trainable_parameters == 2 * per_block[16] + 2 * per_block[32] + head == 3237
    assert "training 3,237 of" in adapters.summary()

    only_qkv = target_pattern(tiny_model(), "qkv")
    assert len(LoraAdapters(tiny_model(), rank=2, targets="qkv").adapted_layers) == 4
    assert "patch_embed" not in only_qkv and "qkv" in only_qkv
    with pytest.raises(
        ValueError, match="reduction is not a Linear layer of the blocks; accepted: fc1, fc2, proj, qkv"
    ):
        target_pattern(tiny_model(), "qkv,reduction")


def test_without_peft_the_error_names_the_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "peft", None)
    assert main(["train", "--lora", "4", "--epochs", "1", "--output", str(tmp_path), *ARCH, *COMMON]) == 2
    assert "pip install 'swinkit[peft]'" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(["train", "--lora", "4", "--ema", "--output", str(tmp_path), *ARCH, *COMMON]) == 2
    assert "does not combine with ema" in capsys.readouterr().err


def test_a_lora_run_trains_only_the_adapters_and_the_head(runs):
    base_run, lora_run = runs
    pretrained = load_file(base_run / "best" / "model.safetensors")
    merged = load_file(lora_run / "last" / "model.safetensors")
    adapter = load_file(lora_run / "last" / "adapter" / "adapter_model.safetensors")
    config = json.loads((lora_run / "last" / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 8 and config["base_model_name_or_path"] == str(base_run)
    assert config["modules_to_save"] == ["head"]
    assert set(merged) == set(pretrained)
    adapted = set()
    for name, value in merged.items():
        layer = name.rsplit(".", 1)[0]
        if name.endswith(".weight") and layer.endswith(ADAPTED) and ".blocks." in layer:
            a = adapter[f"base_model.model.{layer}.lora_A.weight"]
            b = adapter[f"base_model.model.{layer}.lora_B.weight"]
            assert b.abs().max() > 0  # B starts at zero: training moved it
            torch.testing.assert_close(value, pretrained[name] + (8 / 4) * b @ a, rtol=1e-5, atol=1e-6)
            adapted.add(layer)
        elif name.startswith("head."):
            assert not torch.equal(value, pretrained[name])
            assert torch.equal(value, adapter[f"base_model.model.{name}"])
        else:  # norms, biases, bias tables, patch embedding, merging: as pretrained, bit for bit
            assert torch.equal(value, pretrained[name]), name
    assert len(adapted) == 16


def test_the_adapter_reloads_with_peft_onto_the_pretrained_model(runs):
    base_run, lora_run = runs
    merged = swinkit.create_model(pretrained=str(lora_run)).eval()
    base = swinkit.create_model(pretrained=str(base_run)).eval()
    adapted = peft.PeftModel.from_pretrained(base, str(lora_run / "best" / "adapter")).eval()
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(adapted(x), merged(x), rtol=1e-5, atol=1e-5)


def test_the_lora_run_folder_works_with_every_command(runs, tmp_path, capsys):
    base_run, lora_run = runs
    bundle = load_data("digits", val_split=0.0)
    images = []
    for index in range(6):
        image, _ = bundle.train[index]
        image.save(tmp_path / f"{index}.png")
        images.append(str(tmp_path / f"{index}.png"))

    def evaluated(run):
        assert main(["eval", "--model", str(run), "--data", "digits", "--workers", "0", "--output", str(tmp_path / run.name),
                     "--json"]) == 0  # fmt: skip
        return json.loads(capsys.readouterr().out)

    report, base = evaluated(lora_run), evaluated(base_run)
    assert report["images"] == base["images"] == 1797
    assert report["top1"] > base["top1"]  # the adapters and the head learned on top of the pretrained run

    assert main(["predict", "--model", str(lora_run), *images, "--precision", "int8", "--json"]) == 0
    answers = json.loads(capsys.readouterr().out)
    expected = predict(load_classifier(lora_run, "cpu", "int8"), images)
    assert answers == [p.to_dict() for p in expected] and len(answers) == 6

    assert main(["convert", str(lora_run), str(tmp_path / "hf"), "--to", "hf"]) == 0
    assert (tmp_path / "hf" / "config.json").is_file()
    assert main(["export", str(lora_run), "--onnx", str(tmp_path / "m.onnx")]) == 0
    assert (tmp_path / "m.onnx").stat().st_size > 0
    assert (
        main(["show", "attention", "--model", str(lora_run), "--image", images[0], "-o", str(tmp_path / "a.png")]) == 0
    )
    assert (tmp_path / "a.png").stat().st_size > 0


def test_resume_restores_adapters_and_optimiser_exactly(runs, tmp_path, monkeypatch):
    base_run, whole = runs

    class Killed(Exception):
        pass

    def die_after_first_checkpoint(self, row, epochs):
        raise Killed

    monkeypatch.setattr(loop._Trainer, "_report", die_after_first_checkpoint)
    with pytest.raises(Killed):
        main(
            ["train", "--pretrained", str(base_run), *LORA, "--output", str(tmp_path), "--name", "cut", *ARCH, *COMMON]
        )
    assert (tmp_path / "cut" / "last").resolve().name == "epoch-0001"
    monkeypatch.undo()
    epochs = []
    real_epoch = loop._Trainer._train_epoch
    monkeypatch.setattr(
        loop._Trainer, "_train_epoch", lambda self, epoch: epochs.append(epoch) or real_epoch(self, epoch)
    )
    assert main(["train", "--resume", str(tmp_path / "cut"), "--quiet"]) == 0
    assert epochs == [2]  # it went on from the checkpoint, not from the start

    expected = torch.load(whole / "last" / "training_state.pt", weights_only=True)
    got = torch.load(tmp_path / "cut" / "last" / "training_state.pt", weights_only=True)
    assert any("lora_A" in name for name in got["model"])
    for name, value in expected["model"].items():
        assert torch.equal(value, got["model"][name]), name
    moments = [
        (s["exp_avg"], got["optimizer"]["state"][i]["exp_avg"]) for i, s in expected["optimizer"]["state"].items()
    ]
    assert moments and all(torch.equal(a, b) for a, b in moments)
    for name in ("model.safetensors", "adapter/adapter_model.safetensors"):
        whole_file, resumed_file = load_file(whole / "last" / name), load_file(tmp_path / "cut" / "last" / name)
        assert all(torch.equal(value, resumed_file[key]) for key, value in whole_file.items()), name
