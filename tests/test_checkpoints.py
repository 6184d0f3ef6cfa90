"""Checkpoints without the reference libraries: format detection and errors, safety of reading,
the swinkit export and run directories, labels and preprocessing, the Hub path offline, the CLI."""

import argparse
import json
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

import swinkit
from swinkit.checkpoints import (
    CheckpointError,
    UnsafeCheckpointError,
    detect_format,
    read_checkpoint,
    read_state_dict,
    resize_relative_position_bias,
)
from swinkit.checkpoints import hf, official, timm, torchvision
from swinkit.checkpoints.layout import rename_from_native
from swinkit.classifier import load_classifier
from swinkit.cli import main

TINY = dict(img_size=64, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=2, num_classes=5)
LABELS = ("cat", "dog", "bird", "fish", "frog")


def tiny(seed=0, **overrides):
    torch.manual_seed(seed)
    return swinkit.create_model("swin_t", **(TINY | overrides)).eval()


def equal_weights(first, second):
    one, two = first.state_dict(), second.state_dict()
    return one.keys() == two.keys() and all(torch.equal(one[key], two[key]) for key in one)


# Each layout written from a swinkit state dict by the format's own table.
LAYOUTS = {
    "native": lambda state: dict(state),
    "hf": hf.from_native,
    "timm": timm.from_native,
    "official": lambda state: rename_from_native(state, official.LAYOUT),
    "torchvision": lambda state: rename_from_native(state, torchvision.LAYOUT),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_each_layout_is_detected_and_read_back_exactly(name, tmp_path):
    model = tiny()
    state = LAYOUTS[name](model.state_dict())
    assert detect_format(state) == name
    save_file({key: value.contiguous() for key, value in state.items()}, tmp_path / "weights.safetensors")
    loaded = swinkit.create_model(pretrained=tmp_path / "weights.safetensors")
    assert loaded.load_report.format == name
    assert equal_weights(model, loaded)
    assert loaded.config.img_size == (64, 64)  # one window in the last stage: 2 * 4 * 2^3


def test_layouts_put_merging_where_their_library_does():
    keys = tiny().state_dict().keys()
    assert "stages.1.downsample.reduction.weight" in keys and "stages.0.downsample.reduction.weight" not in keys
    assert "layers.0.downsample.reduction.weight" in rename_from_native(dict.fromkeys(keys), official.LAYOUT)
    assert "layers.1.downsample.reduction.weight" in timm.from_native(dict.fromkeys(keys))
    tv = rename_from_native(dict.fromkeys(keys), torchvision.LAYOUT)
    assert {"features.2.reduction.weight", "features.3.1.mlp.3.bias", "features.0.2.weight", "head.weight"} <= tv.keys()
    assert "swin.encoder.layers.0.blocks.1.attention.self.query.weight" in hf.from_native(tiny().state_dict())


def test_buffers_that_layouts_carry_are_ignored(tmp_path):
    model = tiny()
    state = timm.from_native(model.state_dict())
    extra = {
        "layers.0.blocks.0.attn.relative_position_index": torch.zeros(16, dtype=torch.long),
        "layers.0.blocks.1.attn_mask": torch.zeros(64, 4, 4),
        "layers.0.blocks.0.attn.relative_coords_table": torch.zeros(1, 3, 3, 2),
    }
    torch.save(state | extra, tmp_path / "timm.pth")
    loaded = swinkit.create_model(pretrained=tmp_path / "timm.pth")
    assert sorted(loaded.load_report.ignored) == sorted(extra)
    assert equal_weights(model, loaded)


def test_unknown_layout_lists_sample_keys_and_the_formats(tmp_path):
    torch.save({"encoder.conv1.weight": torch.zeros(1), "fc.bias": torch.zeros(1)}, tmp_path / "resnet.pth")
    with pytest.raises(CheckpointError) as error:
        swinkit.create_model(pretrained=tmp_path / "resnet.pth")
    message = str(error.value)
    assert "encoder.conv1.weight" in message and "fc.bias" in message
    assert all(name in message for name in ("native", "hf", "torchvision", "official", "timm"))
    # Swin V2 keys are told by their places like V1 keys (tests/test_v2_checkpoints.py loads them).
    assert detect_format(["layers.0.blocks.0.attn.cpb_mlp.0.weight", "layers.0.blocks.0.attn.logit_scale"]) == "timm"


def test_explicit_format_overrides_detection(tmp_path):
    model = tiny()
    save_file(timm.from_native(model.state_dict()), tmp_path / "weights.safetensors")
    path = tmp_path / "weights.safetensors"
    assert equal_weights(model, swinkit.create_model("swin_t", pretrained=path, format="timm", **TINY))
    with pytest.raises(CheckpointError, match="missing keys .*patch_embed.proj.weight"):
        swinkit.load_checkpoint(tiny(), path, format="transformers")  # an alias of hf
    with pytest.raises(
        ValueError, match="unknown checkpoint format 'caffe'; accepted: native, hf, torchvision, official, timm"
    ):
        swinkit.load_checkpoint(tiny(), path, format="caffe")


def test_shape_mismatch_names_the_key_and_both_shapes(tmp_path):
    swinkit.save_pretrained(tiny(), tmp_path)
    with pytest.raises(
        CheckpointError,
        match=r"stages\.0\.blocks\.0\.mlp\.fc1\.weight has shape \(64, 16\) in the checkpoint but \(32, 16\) in the model",
    ):
        swinkit.load_checkpoint(tiny(mlp_ratio=2.0), tmp_path)


def test_missing_keys_are_listed_unless_not_strict(tmp_path):
    state = tiny().state_dict()
    del state["norm.weight"], state["stages.3.blocks.1.mlp.fc2.bias"]
    state["extra.weight"] = torch.zeros(2)
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(
        CheckpointError, match=r"missing keys \[norm.weight; stages.3.blocks.1.mlp.fc2.bias\]; .*\[extra.weight\]"
    ):
        swinkit.load_checkpoint(tiny(), tmp_path / "partial.pt")
    report = swinkit.load_checkpoint(tiny(), tmp_path / "partial.pt", strict=False)
    assert report.missing == ["norm.weight", "stages.3.blocks.1.mlp.fc2.bias"] and report.unexpected == ["extra.weight"]


def test_other_num_classes_reinitialises_the_head_and_keeps_the_body(tmp_path):
    source = tiny(labels=LABELS)
    swinkit.save_pretrained(source, tmp_path)
    with pytest.warns(UserWarning, match=r"dropped head\.bias \(5,\), head\.weight \(5, 128\)"):
        model = swinkit.create_model(pretrained=tmp_path, num_classes=2)
    assert model.load_report.dropped == ["head.bias", "head.weight"] and model.config.labels == ()
    assert torch.equal(model.stages[2].blocks[1].attn.qkv.weight, source.stages[2].blocks[1].attn.qkv.weight)
    with pytest.warns(UserWarning, match="dropped head"):
        headless = swinkit.create_model(pretrained=tmp_path, num_classes=0)
    assert headless(torch.randn(1, 3, 64, 64)).shape == (1, 128)
    swinkit.save_pretrained(headless, tmp_path / "headless")
    assert swinkit.create_model(pretrained=tmp_path / "headless", num_classes=7).load_report.initialised == [
        "head.bias",
        "head.weight",
    ]


def test_resize_relative_position_bias_follows_the_official_formula():
    table = torch.randn(13 * 13, 3)
    resized = resize_relative_position_bias(table, 12)
    assert resized.shape == (23 * 23, 3)
    assert torch.allclose(resize_relative_position_bias(table, 7), table, atol=1e-6)
    grid = torch.nn.functional.interpolate(table.T.reshape(1, 3, 13, 13), size=(23, 23), mode="bicubic")
    assert torch.equal(resized, grid.reshape(3, -1).T)
    with pytest.raises(ValueError, match=r"must be \(\(2M-1\)\^2, heads\), got shape \(12, 3\)"):
        resize_relative_position_bias(torch.zeros(12, 3), 7)


def test_native_export_holds_variant_labels_and_preprocessing(tmp_path):
    model = tiny(labels=LABELS)
    path = swinkit.save_pretrained(model, tmp_path / "export")
    assert sorted(os.listdir(path)) == ["model.safetensors", "swinkit.json"]
    data = json.loads((path / "swinkit.json").read_text())
    assert data["format"] == "swinkit" and data["version"] == 1 and data["variant"] is None
    assert data["labels"] == list(LABELS) and data["config"] == model.config.to_dict()
    assert data["preprocessing"] == {
        "input_size": [3, 64, 64],
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "crop_pct": 0.875,
        "interpolation": "bicubic",
    }
    loaded = swinkit.create_model(pretrained=path)
    assert equal_weights(model, loaded) and loaded.config == model.config
    assert loaded.pretrained_cfg == data["preprocessing"] | {"source": str(path), "format": "native"}
    chosen = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "crop_pct": 0.9, "interpolation": "bilinear"}
    swinkit.save_pretrained(loaded, tmp_path / "chosen", preprocessing=chosen)
    again = swinkit.create_model(pretrained=tmp_path / "chosen", img_size=96)
    assert again.pretrained_cfg["mean"] == [0.5, 0.5, 0.5] and again.pretrained_cfg["interpolation"] == "bilinear"
    assert again.pretrained_cfg["input_size"] == [3, 96, 96] and again.pretrained_cfg["crop_pct"] == 0.875


def test_variant_is_inferred_and_recorded_for_swin_t(tmp_path):
    model = swinkit.create_model("swin_t")
    torch.save({"model": model.state_dict()}, tmp_path / "swin_t.pth")
    loaded = swinkit.create_model(pretrained=tmp_path / "swin_t.pth")
    assert loaded.config == swinkit.get_config("swin_t")
    swinkit.save_pretrained(loaded, tmp_path / "export")
    assert json.loads((tmp_path / "export" / "swinkit.json").read_text())["variant"] == "swin_t"
    assert json.loads(json.dumps(read_checkpoint(tmp_path / "export").hints))["drop_path_rate"] == 0.2


def test_run_directory_loads_best_then_last(tmp_path):
    best, last = tiny(seed=1), tiny(seed=2)
    swinkit.save_pretrained(best, tmp_path / "run" / "best")
    swinkit.save_pretrained(last, tmp_path / "run" / "last")
    assert equal_weights(best, swinkit.create_model(pretrained=tmp_path / "run"))
    for child in (tmp_path / "run" / "best").iterdir():
        child.unlink()
    (tmp_path / "run" / "best").rmdir()
    assert equal_weights(last, swinkit.create_model(pretrained=tmp_path / "run"))


def test_hugging_face_labels_travel_and_default_names_do_not(tmp_path):
    swinkit.save_pretrained(tiny(labels=LABELS), tmp_path / "named", format="hf")
    config = json.loads((tmp_path / "named" / "config.json").read_text())
    assert config["id2label"]["1"] == "dog" and config["label2id"]["dog"] == 1 and config["model_type"] == "swin"
    assert swinkit.create_model(pretrained=tmp_path / "named").config.labels == LABELS
    swinkit.save_pretrained(tiny(), tmp_path / "default", format="hf")
    assert json.loads((tmp_path / "default" / "config.json").read_text())["id2label"]["0"] == "LABEL_0"
    assert swinkit.create_model(pretrained=tmp_path / "default").config.labels == ()


def test_timm_export_and_sharded_and_wrapped_checkpoints_load(tmp_path):
    model = tiny(labels=LABELS)
    swinkit.save_pretrained(model, tmp_path / "timm", format="timm")
    config = json.loads((tmp_path / "timm" / "config.json").read_text())
    assert config["model_args"]["window_size"] == 2 and config["label_names"] == list(LABELS)
    assert swinkit.create_model(pretrained=tmp_path / "timm").config == model.config.replace(drop_path_rate=0.1)
    state = timm.from_native(model.state_dict())
    keys = sorted(state)
    save_file({key: state[key] for key in keys[:50]}, tmp_path / "model-00001-of-00002.safetensors")
    save_file({key: state[key] for key in keys[50:]}, tmp_path / "model-00002-of-00002.safetensors")
    weight_map = {key: f"model-0000{1 + (i >= 50)}-of-00002.safetensors" for i, key in enumerate(keys)}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    assert equal_weights(model, swinkit.create_model(pretrained=tmp_path))
    training = {
        "epoch": 3,
        "state_dict": {f"module.{key}": value for key, value in state.items()},
        "args": argparse.Namespace(lr=0.1),
    }
    torch.save(training, tmp_path / "checkpoint-3.pth.tar")
    assert equal_weights(model, swinkit.create_model(pretrained=tmp_path / "checkpoint-3.pth.tar"))


class Malicious:
    """Unpickling this calls ``os.system`` (which would create the marker file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class Exec:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.mark.parametrize(
    "write",
    [
        lambda path, marker: torch.save({"model": {"w": torch.zeros(1)}, "x": Malicious(marker)}, path),
        lambda path, marker: torch.save({"w": Exec(marker)}, path, _use_new_zipfile_serialization=False),
        lambda path, marker: path.write_bytes(pickle.dumps({"w": Malicious(marker)}, protocol=2)),
    ],
    ids=["zip-os.system", "legacy-exec", "raw-pickle"],
)
def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(write, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pth"
    write(path, marker)
    with pytest.raises(UnsafeCheckpointError) as error:
        swinkit.create_model(pretrained=path)
    message = str(error.value)
    assert str(path) in message and "refused" in message and "Nothing was executed" in message
    assert "system" in message or "exec" in message
    assert not marker.exists()


def test_a_pickled_module_is_refused(tmp_path):
    torch.save(tiny(), tmp_path / "whole_model.pt")
    with pytest.raises(UnsafeCheckpointError, match=r"needs `swinkit\.model\.swin\.SwinTransformer`"):
        read_state_dict(tmp_path / "whole_model.pt")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors", ".bin", ".pth-legacy"])
def test_a_truncated_or_corrupt_file_gives_a_clear_error(suffix, tmp_path):
    state = {"w": torch.randn(1000)}
    good = tmp_path / f"good{suffix}"
    if suffix == ".safetensors":
        save_file(state, good)
    else:
        torch.save(state, good, _use_new_zipfile_serialization=suffix != ".pth-legacy")
    data = good.read_bytes()
    truncated = tmp_path / f"truncated{suffix.removesuffix('-legacy')}"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        CheckpointError, match=rf"could not read {truncated}: not a complete .*\(truncated or corrupt\?\)"
    ):
        read_state_dict(truncated)
    garbage = tmp_path / f"garbage{suffix.removesuffix('-legacy')}"
    garbage.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_state_dict(garbage)


@pytest.mark.parametrize(
    "hub_id", ["microsoft/swin-tiny-patch4-window7-224", "timm/swin_tiny_patch4_window7_224.ms_in1k"]
)
def test_hub_id_offline_gives_a_clear_error(hub_id, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(
        CheckpointError,
        match=rf"could not fetch '{hub_id}' from the Hugging Face Hub.*give the local directory or file",
    ):
        swinkit.create_model(pretrained=hub_id)


def test_missing_paths_and_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*missing.pth"):
        swinkit.create_model(pretrained=str(tmp_path / "missing.pth"))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        swinkit.create_model(pretrained="checkpoints/model.safetensors")  # a relative path, not a Hub id
    with pytest.raises(CheckpointError, match="no weights found in directory .*expected one of model.safetensors"):
        swinkit.create_model(pretrained=tmp_path)
    with pytest.raises(ValueError, match="needs a model name"):
        swinkit.create_model()
    with pytest.raises(ValueError, match="pretrained must be a path or a Hub id"):
        swinkit.create_model("swin_t", pretrained=True)


def test_saving_refuses_a_directory_of_another_format_and_an_unknown_format(tmp_path):
    swinkit.save_pretrained(tiny(), tmp_path, format="hf")
    with pytest.raises(CheckpointError, match=r"already holds \['config.json', 'preprocessor_config.json'\]"):
        swinkit.save_pretrained(tiny(), tmp_path, format="native")
    swinkit.save_pretrained(tiny(seed=3), tmp_path, format="hf")  # the same format overwrites
    assert equal_weights(tiny(seed=3), swinkit.create_model(pretrained=tmp_path))
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
    with pytest.raises(ValueError, match="accepted: native, hf, timm"):
        swinkit.save_pretrained(tiny(), tmp_path / "x", format="torchvision")


def test_cli_convert_between_formats(tmp_path, capsys):
    model = tiny(labels=LABELS)
    torch.save(rename_from_native(model.state_dict(), official.LAYOUT), tmp_path / "official.pth")
    assert main(["convert", str(tmp_path / "official.pth"), str(tmp_path / "hf"), "--to", "hf"]) == 0
    assert "(official, embed_dim 16, depths [2, 2, 2, 2], window 2, 5 classes)" in capsys.readouterr().out
    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "timm"), "--to", "timm", "--from", "hf"]) == 0
    assert main(["convert", str(tmp_path / "timm"), str(tmp_path / "native")]) == 0
    assert equal_weights(model, swinkit.create_model(pretrained=tmp_path / "native"))
    assert main(["convert", str(tmp_path / "missing.pth"), str(tmp_path / "out")]) == 2
    assert "swinkit convert: error: no checkpoint at" in capsys.readouterr().err


def test_patch_remainder_round_trips_natively_and_formats_that_cannot_say_crop_refuse_it(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"patch_remainder must be one of 'pad', 'crop'.*got 'trim'"):
        swinkit.get_config("swin_t", patch_remainder="trim")
    model = tiny(seed=4, patch_remainder="crop")
    assert model.config.stage_resolutions[0] == (16, 16)
    assert model.config.replace(img_size=(37, 45)).stage_resolutions[:2] == ((9, 11), (5, 6))
    assert model.config.replace(img_size=(37, 45), patch_remainder="pad").stage_resolutions[0] == (10, 12)
    swinkit.save_pretrained(model, tmp_path / "native")
    assert json.loads((tmp_path / "native" / "swinkit.json").read_text())["config"]["patch_remainder"] == "crop"
    loaded = swinkit.create_model(pretrained=tmp_path / "native").eval()
    assert loaded.config == model.config and equal_weights(loaded, model)
    pixels = torch.randn(1, 3, 37, 45)
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixels), model(pixels), rtol=0, atol=0)
    for name in ("hf", "timm"):
        with pytest.raises(CheckpointError, match=rf"a {name} export cannot keep patch_remainder='crop'"):
            swinkit.save_pretrained(model, tmp_path / name, format=name)
        assert not (tmp_path / name).exists()
    # torchvision weights crop; the CLI keeps that in a native export and says why an hf one is refused.
    torch.save(rename_from_native(model.state_dict(), torchvision.LAYOUT), tmp_path / "swin.pth")
    named = swinkit.create_model("swin_t", pretrained=tmp_path / "swin.pth", **TINY)  # a name does not drop it
    assert named.config.patch_remainder == "crop" and equal_weights(named, model)
    assert load_classifier(tmp_path / "swin.pth", "cpu", patch_remainder="pad").model.config.patch_remainder == "pad"
    assert main(["convert", str(tmp_path / "swin.pth"), str(tmp_path / "from_tv")]) == 0
    assert swinkit.create_model(pretrained=tmp_path / "from_tv").config.patch_remainder == "crop"
    assert main(["convert", str(tmp_path / "swin.pth"), str(tmp_path / "hf"), "--to", "hf"]) == 2
    assert "a hf export cannot keep patch_remainder='crop'" in capsys.readouterr().err
    converted = ["convert", str(tmp_path / "swin.pth"), str(tmp_path / "hf"), "--to", "hf", "--patch-remainder", "pad"]
    assert main(converted) == 0
    assert swinkit.create_model(pretrained=tmp_path / "hf").config.patch_remainder == "pad"
