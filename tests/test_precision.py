"""Inference in fp32, bf16 and int8: the conversion, the Python API, eval / predict / export on a trained model."""

import json
import math
from pathlib import Path

import onnx
import onnxruntime
import pytest
import torch
from torch import nn

import swinkit
from swinkit.cli import main
from swinkit.data import load_data
from swinkit.export import ONNX_TOLERANCE, check_onnx
from swinkit.classifier import evaluate_data, load_classifier, predict
from swinkit.precision import PRECISIONS, apply_precision, check_precision, input_dtype, model_precision
from swinkit.train.config import TrainConfig
from swinkit.tasks import train

TINY = {"img_size": 32, "embed_dim": 16, "depths": (2, 2), "num_heads": (1, 2), "window_size": 4, "num_classes": 5}

#: Digits with 2x2 patches (16 tokens of 4 pixels): over 90% validation top-1 in 5 short epochs.
DIGITS_FAST = {
    "data": "digits",
    "epochs": 5,
    "batch_size": 32,
    "lr": 3e-3,
    "warmup_epochs": 0.5,
    "label_smoothing": 0.0,
    "drop_path": 0.0,
    "workers": 0,
    "quiet": True,
    "model_overrides": {"embed_dim": 32, "num_heads": (2, 4), "patch_size": 2, "window_size": 2},
}


def tiny_model() -> swinkit.SwinTransformer:
    torch.manual_seed(0)
    model = swinkit.create_model("swin_t", drop_path_rate=0.0, **TINY)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    return model.eval()


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A trained digits run, and its validation images written as an image folder."""
    root = tmp_path_factory.mktemp("digits")
    result = train(TrainConfig(output=str(root), name="run", **DIGITS_FAST))
    bundle = load_data("digits", val_split=0.1, seed=0)
    for index in range(len(bundle.val)):
        image, label = bundle.val[index]
        folder = root / "val" / bundle.classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{index}.png")
    return result, root / "val"


def test_apply_precision_converts_a_copy():
    model = tiny_model()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        reference = model(x)
        bf16 = apply_precision(model, "bf16")
        assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16} and model_precision(bf16) == "bf16"
        low = bf16(x.to(input_dtype("bf16")))
        assert low.dtype == torch.bfloat16
        assert 0 < (low.float() - reference).abs().max() < 0.05 * reference.abs().max()

        int8 = apply_precision(model, "int8")
        linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
        quantized = dict(int8.named_modules())
        assert linears and all(type(quantized[name]).__module__.startswith("torch.ao.nn.quantized") for name in linears)
        assert model_precision(int8) == "int8" and isinstance(int8, swinkit.SwinTransformer)
        error = (int8(x) - reference).abs().max()
        assert 0 < error < 0.1 * reference.abs().max()

        # The original is untouched; fp32 is a plain copy.
        assert model_precision(model) == "fp32"
        torch.testing.assert_close(model(x), reference, rtol=0, atol=0)
        torch.testing.assert_close(apply_precision(model, "fp32")(x), reference, rtol=0, atol=0)


def test_precision_errors_name_what_is_accepted():
    with pytest.raises(ValueError, match="fp32, bf16, int8"):
        check_precision("fp16")
    with pytest.raises(ValueError, match="CPU only"):
        check_precision("int8", "cuda")
    with pytest.raises(ValueError, match="CPU only"):
        load_classifier("no/such/model", device="cuda", precision="int8")
    with pytest.raises(ValueError, match="already int8"):
        apply_precision(apply_precision(tiny_model(), "int8"), "bf16")
    assert PRECISIONS == ("fp32", "bf16", "int8")


def test_int8_keeps_validation_top1_within_one_point_of_fp32(digits):
    result, val = digits
    accuracy = {}
    for precision in PRECISIONS:
        classifier = load_classifier(result.run_dir, "cpu", precision)
        assert classifier.precision == precision and model_precision(classifier.model) == precision
        evaluation = evaluate_data(classifier, str(val), batch_size=64, workers=0)
        assert evaluation.count == 179
        accuracy[precision] = evaluation.top1
    # The validation folder holds the run's own validation images: fp32 reproduces the run's figure, to one
    # image: the run evaluates them as one in-memory tensor, this as decoded files normalised per image, whose
    # float rounding can tip a near-tie.
    assert abs(accuracy["fp32"] - result.final.top1) <= 100 / 179 + 1e-9 and accuracy["fp32"] > 90
    assert abs(accuracy["int8"] - accuracy["fp32"]) <= 1.0, accuracy
    assert abs(accuracy["bf16"] - accuracy["fp32"]) <= 1.0, accuracy


def test_torchao_int8_quantization_of_a_trained_model_keeps_its_accuracy(digits):
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    result, val = digits
    fp32 = load_classifier(result.run_dir, "cpu")
    quantized = load_classifier(result.run_dir, "cpu")
    quantize_(quantized.model, Int8DynamicActivationInt8WeightConfig())
    qkv = quantized.model.stages[0].blocks[0].attn.qkv
    assert type(qkv.weight).__module__.startswith("torchao") and type(qkv.weight).__name__ == "Int8Tensor"
    pixels = torch.randn(16, 1, 8, 8)
    reference, got = fp32.logits(pixels), quantized.logits(pixels)
    assert 0 < (got - reference).abs().max() < 0.05 * reference.abs().max()
    accuracy = {name: evaluate_data(c, str(val), workers=0).top1 for name, c in (("fp32", fp32), ("int8", quantized))}
    assert abs(accuracy["int8"] - accuracy["fp32"]) <= 1.0, accuracy


def test_eval_and_predict_commands_run_in_the_chosen_precision(digits, tmp_path, capsys):
    result, val = digits
    output = tmp_path / "eval"
    code = main(["eval", "--model", str(result.run_dir), "--data", str(val), "--precision", "int8", "--device", "cpu",
                 "--workers", "0", "--output", str(output)])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    report = json.loads((output / "eval.json").read_text())
    assert report["precision"] == "int8" and report["images"] == 179
    assert f"179 images, int8: top-1 {report['top1']:.2f}%" in printed
    int8 = evaluate_data(load_classifier(result.run_dir, "cpu", "int8"), str(val), workers=0)
    assert report["top1"] == pytest.approx(int8.top1)

    images = sorted(Path(val).rglob("*.png"))[:12]
    answers = {}
    for precision in PRECISIONS:
        assert main(["predict", "--model", str(result.run_dir), *map(str, images), "--precision", precision,
                     "--device", "cpu", "--topk", "2", "--json"]) == 0  # fmt: skip
        answers[precision] = json.loads(capsys.readouterr().out)
    fp32 = load_classifier(result.run_dir, "cpu")
    assert [p.to_dict() for p in predict(fp32, images, topk=2)] == answers["fp32"]
    labels = {precision: [row["top"][0]["label"] for row in rows] for precision, rows in answers.items()}
    truth = [image.parent.name for image in images]
    assert sum(a == b for a, b in zip(labels["fp32"], truth)) >= 10
    assert labels["int8"] == labels["fp32"] and labels["bf16"] == labels["fp32"]
    probabilities = {p: [row["top"][0]["probability"] for row in rows] for p, rows in answers.items()}
    assert probabilities["int8"] != probabilities["fp32"]  # a different program really ran
    assert max(abs(a - b) for a, b in zip(probabilities["int8"], probabilities["fp32"])) < 0.05


def test_int8_onnx_export_is_checked_against_swinkit_int8(digits, tmp_path, capsys):
    result, _ = digits
    path = tmp_path / "int8.onnx"
    code = main(["export", str(result.run_dir), "--onnx", str(path), "--precision", "int8"])
    printed = capsys.readouterr().out
    assert code == 0 and "onnxruntime int8 vs swinkit int8" in printed
    relative = float(printed.split("max abs difference ")[1].split("%")[0]) / 100
    assert relative < ONNX_TOLERANCE["int8"]

    model = swinkit.create_model(pretrained=str(result.run_dir)).eval()
    int8 = apply_precision(model, "int8")
    graph = onnx.load(str(path)).graph
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= {node.op_type for node in graph.node}
    # The int8 weights are exactly the Linear layers' (the patch embedding, norms and biases stay float).
    int8_weights = [math.prod(t.dims) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8 and t.dims]
    assert sum(int8_weights) == sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    torch.manual_seed(4)
    pixels = torch.randn(64, 1, 8, 8)
    with torch.no_grad():
        fp32_logits, int8_logits = model(pixels), int8(pixels)
    (got,) = session.run(["logits"], {"pixels": pixels.numpy()})
    got = torch.from_numpy(got)
    # onnxruntime's int8 is close to swinkit's int8 (both about a percent of the logit range off fp32) ...
    assert (got - int8_logits).abs().max() < 0.05 * int8_logits.abs().max()
    assert (got.argmax(1) == int8_logits.argmax(1)).float().mean() >= 0.95
    # ... and is not simply the fp32 graph.
    assert (got - fp32_logits).abs().max() > 1e-3
    assert check_onnx(int8, path, relative=True) < 0.05


def test_bf16_program_export_and_the_formats_each_precision_has(tmp_path, capsys):
    model = tiny_model()
    swinkit.save_pretrained(model, tmp_path / "model")
    assert main(["export", str(tmp_path / "model"), "--pt2", str(tmp_path / "m.pt2"), "--precision", "bf16"]) == 0
    assert "(bf16)" in capsys.readouterr().out
    program = torch.export.load(str(tmp_path / "m.pt2"))
    x = torch.randn(3, 3, 32, 32, dtype=torch.bfloat16)
    with torch.no_grad():
        expected = apply_precision(model, "bf16")(x)
    got = program.module()(x)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got, expected, rtol=0, atol=0)

    assert main(["export", str(tmp_path / "model"), "--onnx", str(tmp_path / "b.onnx"), "--precision", "bf16"]) == 2
    assert "onnx export is written in fp32 or int8, not bf16; bf16 is available as pt2" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "model"), "--pt2", str(tmp_path / "q.pt2"), "--precision", "int8"]) == 2
    assert "pt2 export is written in fp32 or bf16, not int8; int8 is available as onnx" in capsys.readouterr().err
    assert not (tmp_path / "b.onnx").exists() and not (tmp_path / "q.pt2").exists()
