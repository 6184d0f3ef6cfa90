"""Whole training runs on tiny generated image folders: learning, files, resume after SIGKILL, NaN, DDP."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import swinkit
from swinkit.cli import main
from swinkit import tasks
from swinkit.tasks import classify
from swinkit.train import loop

COLOURS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}
TINY_MODEL = [
    "--model", "swin_t", "--set", "embed_dim=16", "--set", "depths=[1,1]", "--set", "num_heads=[1,2]",
    "--set", "window_size=4", "--img-size", "32", "--workers", "0",
]  # fmt: skip


def make_folder(root: Path, per_class: int = 16, size: int = 36, seed: int = 0) -> Path:
    """An easy task: each class is a colour, with noise and a random bright square."""
    generator = torch.Generator().manual_seed(seed)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            pixels = torch.tensor(colour).view(1, 1, 3) + 40 * torch.randn(size, size, 3, generator=generator)
            top, left = torch.randint(0, size - 8, (2,), generator=generator).tolist()
            pixels[top : top + 8, left : left + 8] = 255
            image = Image.fromarray(pixels.clamp(0, 255).to(torch.uint8).numpy())
            image.save(root / name / f"{index}.{'png' if index % 2 else 'jpg'}")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("colours"))


@pytest.fixture(scope="module")
def trained_run(folder, tmp_path_factory):
    output = tmp_path_factory.mktemp("runs")
    code = main(
        ["train", "--data", str(folder), "--output", str(output), "--name", "colours", "--epochs", "6",
         "--batch-size", "8", "--lr", "2e-3", "--lr-base-batch", "0", "--warmup-epochs", "1", "--mixup", "0",
         "--cutmix", "0", "--auto-augment", "none", "--re-prob", "0", "--quiet", *TINY_MODEL]
    )  # fmt: skip
    assert code == 0
    return output / "colours"


def test_training_learns_and_writes_its_run(trained_run):
    rows = [line.split(",") for line in (trained_run / "metrics.csv").read_text().splitlines()]
    header, rows = rows[0], rows[1:]
    assert header[:4] == ["epoch", "step", "train_loss", "train_top1"]
    assert "val_top1" in header and "img_per_s" in header and "lr" in header
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4, 5, 6]
    losses = [float(r[header.index("train_loss")]) for r in rows]
    assert losses[-1] < 0.6 * losses[0]
    top1 = [float(r[header.index("val_top1")]) for r in rows]
    assert max(top1) >= 80.0  # chance is 33%
    for name in ("config.json", "curves.png", "confusion_matrix.png"):
        assert (trained_run / name).stat().st_size > 0, name
    config = json.loads((trained_run / "config.json").read_text())
    assert config["classes"] == ["blue", "green", "red"] and config["train"]["epochs"] == 6
    assert (trained_run / "last").resolve().name == "epoch-0006"
    assert (trained_run / "best").resolve().parent.name == "checkpoints"


def test_best_loads_with_create_model(trained_run, folder):
    model = swinkit.create_model(pretrained=str(trained_run)).eval()
    assert model.config.labels == ("blue", "green", "red") and model.config.embed_dim == 16
    weights = load_file(trained_run / "best" / "model.safetensors")
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights[key]), key


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(folder, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = classify.soft_target_cross_entropy
    per_epoch = 5  # 43 training images in batches of 8 -> 6 batches; NaN in the second epoch

    def poisoned(logits, targets, smoothing=0.0):
        calls["n"] += 1
        loss = real(logits, targets, smoothing)
        return loss * float("nan") if calls["n"] > per_epoch + 2 else loss

    monkeypatch.setattr(classify, "soft_target_cross_entropy", poisoned)
    with pytest.raises(loop.TrainingDiverged, match="loss became nan at epoch 2.*last good checkpoint.*epoch-0001"):
        tasks.train(
            swinkit.train.config.TrainConfig(
                data=str(folder), output=str(tmp_path), name="nan", epochs=3, batch_size=8, workers=0, quiet=True,
                model="swin_t", img_size=32,
                model_overrides={"embed_dim": 16, "depths": [1, 1], "num_heads": [1, 2], "window_size": 4},
            )
        )  # fmt: skip
    assert (tmp_path / "nan" / "last").resolve().name == "epoch-0001"
    monkeypatch.undo()
    assert main(["train", "--resume", str(tmp_path / "nan"), "--quiet"]) == 0


def _train_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "swinkit", "train", *args]


def _final_weights(run: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run / "last" / "training_state.pt", weights_only=True)
    return state["model"]


def test_resume_after_sigkill_gives_identical_weights(folder, tmp_path):
    common = ["--data", str(folder), "--output", str(tmp_path), "--epochs", "4", "--batch-size", "8",
              "--deterministic", "--seed", "3", "--ema", "--quiet", *TINY_MODEL]  # fmt: skip
    subprocess.run(_train_cli(*common, "--name", "whole"), check=True)
    process = subprocess.Popen(_train_cli(*common, "--name", "killed"))
    last = tmp_path / "killed" / "last"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None and not last.exists():
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = int((tmp_path / "killed" / "last").resolve().name.split("-")[1])
    assert process.returncode == -signal.SIGKILL and done < 4, "the kill must land mid-run"
    subprocess.run(_train_cli("--resume", str(tmp_path / "killed"), "--quiet"), check=True)
    whole, resumed = _final_weights(tmp_path / "whole"), _final_weights(tmp_path / "killed")
    for key, value in whole.items():
        assert torch.equal(value, resumed[key]), key
    ema_whole = load_file(tmp_path / "whole" / "last" / "model.safetensors")
    ema_resumed = load_file(tmp_path / "killed" / "last" / "model.safetensors")
    for key, value in ema_whole.items():
        assert torch.equal(value, ema_resumed[key]), key
    assert (tmp_path / "killed" / "metrics.csv").read_text().count("\n") == 5


@pytest.mark.skipif(
    shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
    reason="torchrun missing",
)
def test_two_processes_equal_one_with_the_same_global_batch(folder, tmp_path):
    common = ["--data", str(folder), "--val-split", "0", "--output", str(tmp_path), "--epochs", "2",
              "--no-augment", "--smoothing", "0", "--drop-path", "0", "--seed", "1", "--quiet",
              "--lr", "1e-3", "--warmup-epochs", "0", *TINY_MODEL]  # fmt: skip
    subprocess.run(_train_cli(*common, "--batch-size", "8", "--name", "one"), check=True)
    torchrun = Path(sys.executable).parent / "torchrun"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run(
        [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "swinkit", "train", *common,
         "--batch-size", "4", "--name", "two"],
        check=True, env=env,
    )  # fmt: skip
    one, two = _final_weights(tmp_path / "one"), _final_weights(tmp_path / "two")
    assert json.loads((tmp_path / "two" / "config.json").read_text())["world_size"] == 2
    for key, value in one.items():
        torch.testing.assert_close(two[key], value, rtol=0, atol=1e-6, msg=key)
    # 48 images: 6 steps per epoch either way, and the weights really moved.
    assert torch.load(tmp_path / "two" / "last" / "training_state.pt", weights_only=True)["step"] == 12
    losses = [line.split(",")[2] for line in (tmp_path / "two" / "metrics.csv").read_text().splitlines()[1:]]
    assert float(losses[1]) < float(losses[0])


def test_bad_images_stop_the_run_before_training_or_are_skipped(folder, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(folder, data)
    (data / "red" / "broken.jpg").write_bytes((data / "red" / "0.jpg").read_bytes()[:200])
    (data / "blue" / "notes.png").write_text("not an image")
    args = ["train", "--data", str(data), "--output", str(tmp_path / "runs"), "--epochs", "1", "--batch-size", "8",
            *TINY_MODEL]  # fmt: skip
    assert main([*args, "--name", "strict"]) == 2
    error = capsys.readouterr().err
    assert "broken.jpg" in error and "notes.png" in error and "2" in error
    assert not (tmp_path / "runs" / "strict").exists()
    assert main([*args, "--name", "lenient", "--skip-bad-images"]) == 0
    assert "skipped 2 unreadable image(s)" in capsys.readouterr().out
    assert (tmp_path / "runs" / "lenient" / "last").exists()


def test_eval_reports_accuracy_per_class_and_the_confusion_matrix(trained_run, folder, tmp_path, capsys):
    assert main(["eval", "--model", str(trained_run), "--data", str(folder), "--workers", "0", "--json",
                 "--output", str(tmp_path)]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads((tmp_path / "eval.json").read_text())
    assert report["images"] == 48 and report["classes"] == ["blue", "green", "red"]
    confusion = torch.tensor(report["confusion_matrix"])
    assert confusion.sum() == 48 and confusion.sum(1).tolist() == [16, 16, 16]
    assert report["top1"] == pytest.approx(100 * confusion.diagonal().sum().item() / 48)
    assert report["per_class"]["red"] == pytest.approx(100 * confusion[2, 2].item() / 16)
    assert report["top5"] == 100.0 and report["top1"] >= 80.0
    assert (tmp_path / "eval_confusion_matrix.png").stat().st_size > 0
    # The same numbers by hand, from the exported weights and the eval transform.
    classifier = __import__("swinkit.classifier", fromlist=["load_classifier"]).load_classifier(trained_run, "cpu")
    correct = 0
    for index, name in enumerate(["blue", "green", "red"]):
        for path in sorted((folder / name).iterdir()):
            image = classifier.transform(Image.open(path))
            correct += int(classifier.model(image[None]).argmax().item() == index)
    assert report["top1"] == pytest.approx(100 * correct / 48)


def test_predict_labels_images_and_reports_unreadable_files(trained_run, folder, tmp_path, capsys):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in ("red", "green", "blue"):
        shutil.copy(folder / name / "3.png", inputs / f"{name}.png")
    (inputs / "garbage.jpg").write_text("nope")
    code = main(
        ["predict", "--model", str(trained_run), str(inputs), str(folder / "red" / "4.jpg"), "--topk", "2", "--json"]
    )
    assert code == 1  # one input could not be read; the others are still labelled
    results = {Path(item["path"]).name: item for item in json.loads(capsys.readouterr().out)}
    assert set(results) == {"blue.png", "garbage.jpg", "green.png", "red.png", "4.jpg"}
    assert "error" in results["garbage.jpg"]
    for name in ("red", "green", "blue"):
        top = results[f"{name}.png"]["top"]
        assert len(top) == 2 and top[0]["label"] == name
        assert top[0]["probability"] >= top[1]["probability"] and sum(t["probability"] for t in top) <= 1.0 + 1e-6
    assert main(["predict", "--model", str(trained_run), str(inputs / "red.png")]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(inputs / "red.png")) and " red " in f" {line} "


def test_accumulation_equals_a_larger_batch(folder, tmp_path):
    common = ["train", "--data", str(folder), "--val-split", "0", "--output", str(tmp_path), "--epochs", "1", "--no-augment",
              "--smoothing", "0", "--drop-path", "0", "--lr", "1e-3", "--warmup-epochs", "0", "--quiet", *TINY_MODEL]  # fmt: skip
    assert main([*common, "--batch-size", "8", "--name", "large"]) == 0
    assert main([*common, "--batch-size", "4", "--accum-steps", "2", "--name", "accumulated"]) == 0
    large, accumulated = _final_weights(tmp_path / "large"), _final_weights(tmp_path / "accumulated")
    for key, value in large.items():
        torch.testing.assert_close(accumulated[key], value, rtol=0, atol=1e-6, msg=key)


def test_linear_probe_in_bf16_with_checkpointing_and_layer_decay(folder, tmp_path):
    args = ["train", "--data", str(folder), "--output", str(tmp_path), "--name", "probe", "--epochs", "2",
            "--batch-size", "8", "--precision", "bf16", "--grad-checkpointing", "--layer-decay", "0.75",
            "--freeze-backbone", "--lr", "1e-2", "--lr-base-batch", "0", "--quiet", *TINY_MODEL]  # fmt: skip
    assert main(args) == 0
    state = torch.load(tmp_path / "probe" / "last" / "training_state.pt", weights_only=True)
    torch.manual_seed(0)
    initial = swinkit.create_model(
        "swin_t", num_classes=3, img_size=32, embed_dim=16, depths=(1, 1), num_heads=(1, 2), window_size=4
    ).state_dict()
    for key, value in state["model"].items():
        if key.startswith("head."):
            assert not torch.equal(value, initial[key]), key
        else:
            assert torch.equal(value, initial[key]), key
    assert len(state["optimizer"]["param_groups"]) == 2  # head weight (decayed) and head bias (not)


def test_fine_tuning_from_a_hugging_face_checkpoint_takes_its_preprocessing(folder, tmp_path):
    torch.manual_seed(0)
    source = swinkit.create_model(
        "swin_t", img_size=32, embed_dim=16, depths=(1, 1), num_heads=(1, 2), window_size=4, num_classes=7
    )
    source.pretrained_cfg = {"mean": (0.5, 0.4, 0.3), "std": (0.2, 0.2, 0.2), "input_size": (3, 32, 32)}
    swinkit.save_pretrained(source, tmp_path / "hf", format="hf")
    args = ["train", "--pretrained", str(tmp_path / "hf"), "--data", str(folder), "--output", str(tmp_path),
            "--name", "tuned", "--epochs", "1", "--batch-size", "8", "--accum-steps", "1", "--workers", "0", "--quiet"]  # fmt: skip
    with pytest.warns(UserWarning, match="dropped head.bias"):
        assert main(args) == 0
    config = json.loads((tmp_path / "tuned" / "config.json").read_text())
    assert config["train"]["lr"] == 5e-5 and config["train"]["mixup"] == 0.0  # the fine-tuning recipe
    assert config["preprocessing"]["mean"] == [0.5, 0.4, 0.3] and config["preprocessing"]["std"] == [0.2, 0.2, 0.2]
    assert config["model"]["num_classes"] == 3 and config["model"]["labels"] == ["blue", "green", "red"]
    tuned = swinkit.create_model(pretrained=str(tmp_path / "tuned"))
    start = source.state_dict()
    changed = [
        k
        for k, v in tuned.state_dict().items()
        if k in start and start[k].shape == v.shape and not torch.equal(v, start[k])
    ]
    assert changed and "patch_embed.proj.weight" in changed  # the backbone was trained, not frozen
    assert tuple(tuned.pretrained_cfg["mean"]) == (0.5, 0.4, 0.3)
