"""The benchmarks' own logic on small inputs: precisions applied alike, failures reported, the tables written,
the committed results read back, and ``swinkit bench NAME`` reaching each benchmark."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import swinkit
from swinkit.bench import (
    detection,
    lora,
    measure,
    models,
    plain_loop,
    segmentation,
    serve,
    simmim,
    small_data,
    small_sets,
    tables,
)
from swinkit.bench.models import Row, parse_args, precision_models, speedups, to_markdown
from swinkit.cli import main as cli_main
from swinkit.cli.bench import BENCHMARKS

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


class ReadsItsWeight(nn.Module):
    """Like torchvision's Swin attention: passes a layer's weight to a function instead of calling the layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.qkv = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(self.conv(x).mean((2, 3)), self.qkv.weight)


def test_each_precision_is_applied_to_every_model_and_failures_are_kept():
    torch.manual_seed(0)
    tiny = swinkit.create_model("swin_t", img_size=32, embed_dim=16, depths=(2, 2), num_heads=(1, 2), window_size=4)
    models = {"swinkit": tiny.eval(), "torchvision": ReadsItsWeight().eval()}
    check = torch.randn(2, 3, 32, 32)
    int8, failed, differences = precision_models(models, "int8", check)
    assert list(int8) == ["swinkit"] and list(differences) == ["swinkit"] and 0 < differences["swinkit"] < 0.1
    assert failed["torchvision"].startswith("TypeError: linear(): argument 'weight'")
    bf16, failed, differences = precision_models(models, "bf16", check)
    assert set(bf16) == set(models) and not failed
    assert all(next(model.parameters()).dtype == torch.bfloat16 for model in bf16.values())
    assert next(tiny.parameters()).dtype == torch.float32  # converted copies


def test_rows_with_a_failing_peer_and_thespeedups():
    row = Row("inference int8", 8, {"swinkit": 40.0, "timm": 25.0, "transformers": 20.0}, {"torchvision": "E"})
    assert row.ratio() == 40.0 / 25.0
    assert Row("inference int8", 8, {"swinkit": 4.0}, {"timm": "E"}).ratio() is None
    rows = [Row("inference fp32", 8, {"swinkit": 20.0, "timm": 18.0}), row]
    assert speedups(rows) == {"inference int8 / fp32 (batch 8)": 2.0}


def test_interleaved_times_every_step_each_round():
    calls = {"a": 0, "b": 0}

    def step(name):
        return lambda: calls.__setitem__(name, calls[name] + 1)

    times = measure.interleaved({"a": step("a"), "b": step("b")}, rounds=3, repeats=2, warmup=2)
    assert calls == {"a": 2 + 3 * 2, "b": 2 + 3 * 2}
    assert {name: len(values) for name, values in times.items()} == {"a": 3, "b": 3}


def test_a_gpu_run_writes_its_table():
    results = {
        "machine": {"cpu": "x", "cores": 16, "threads": 16, "torch": "2.11", "gpu": "NVIDIA H100", "cuda": "12.8"},
        "device": "cuda",
        "matmul_gflops": {"fp32": 50000.0, "bf16": 700000.0},
        "rows": [
            {
                "case": "inference fp32",
                "batch": 64,
                "img_per_s": dict.fromkeys(("swinkit", "timm", "torchvision", "transformers"), 2000.0),
                "failed": {},
                "ratio_to_fastest_peer": 1.0,
            },
            {
                "case": "inference bf16 weights",
                "batch": 64,
                "img_per_s": {"swinkit": 5000.0, "timm": 4000.0},
                "failed": {"torchvision": "TypeError: x"},
                "ratio_to_fastest_peer": 1.25,
            },
        ],
        "swinkit_speedups": {"inference bf16 weights / fp32 (batch 64)": 2.5},
        "precision_logit_differences": {"bf16 weights": {"swinkit": 0.004}},
        "peak_memory_mb": {"swinkit": {"peak_rss": 900.0, "activations": 700.0}},
        "memory_batch": 64,
        "growth_448_over_224": {"measured": 4.1, "eq2": 4.0, "eq1": 10.05},
    }
    text = to_markdown(results)
    assert "GPU NVIDIA H100 (CUDA 12.8); measured on cuda" in text
    assert "| inference bf16 weights | 64 | 5000.00 | 4000.00 | fails | fails | 1.25x |" in text
    assert "| training step (batch 64, AdamW), MB | swinkit |" in text
    assert "| peak CUDA memory allocated added | 900 |" in text
    assert "Fails (torchvision, inference bf16 weights): `TypeError: x`." in text
    assert "inference bf16 weights / fp32 (batch 64): 2.50x" in text


def test_defaults_follow_the_device_the_model_and_quick():
    gpu = parse_args(["--device", "cuda", "--quick", "--bf16"])
    assert (gpu.batch, gpu.rounds, gpu.tag, gpu.bf16, gpu.memory) == (64, 3, "gpu", True, True)
    cpu = parse_args([])
    assert (cpu.batch, cpu.rounds, cpu.tag, cpu.bf16, cpu.int8) == (8, 7, "cpu", False, True)
    assert parse_args(["--quick", "--rounds", "1", "--tag", "smoke"]).rounds == 1
    v2 = parse_args(["--model", "swinv2_t", "--device", "cuda"])
    assert (v2.tag, v2.batch) == ("swinv2_t-cuda", 64)
    assert parse_args(["--model", "swinv2_t"]).tag == "swinv2_t-cpu"


@pytest.mark.parametrize(
    ("stem", "writer"),
    [
        ("cpu", models.to_markdown),
        ("gpu", models.to_markdown),
        ("small_data", small_data.to_markdown),
        ("serve", serve.to_markdown),
        ("lora", lora.to_markdown),
        ("segmentation", segmentation.to_markdown),
        ("simmim", simmim.to_markdown),
        ("detection", detection.to_markdown),
    ],
)
def test_the_committed_tables_are_what_the_writers_make_of_the_committed_figures(stem, writer):
    results = json.loads((RESULTS / f"{stem}.json").read_text())
    assert writer(results) == (RESULTS / f"{stem}.md").read_text()


def test_a_v2_run_writes_the_same_tables_under_its_own_heading():
    results = {
        "model": "swinv2_t",
        "img_size": 256,
        "machine": {"cpu": "x", "cores": 2, "threads": 2, "torch": "2.14", "gpu": None, "cuda": None},
        "device": "cpu",
        "matmul_gflops": {"fp32": 100.0, "bf16": 200.0},
        "rows": [
            {
                "case": "inference fp32",
                "batch": 8,
                "img_per_s": {"swinkit": 10.0, "timm": 8.0, "torchvision": 9.0, "transformers": 5.0},
                "failed": {},
                "ratio_to_fastest_peer": 10.0 / 9.0,
            }
        ],
        "peak_memory_mb": {},
        "growth_512_over_256": {"measured": 4.2, "eq2": 4.0, "eq1": 11.0},
    }
    text = to_markdown(results)
    flops = 2 * swinkit.count_flops("swinv2_t").total
    assert text.startswith("Swin V2-T at 256x256 (window 8; timm `swinv2_tiny_window8_256`, torchvision `swin_v2_t`")
    assert "same weights. Machine: x, 2 cores, 2 threads, torch 2.14; measured on cpu\n" in text
    assert "| inference fp32 | 8 | 10.00 | 8.00 | 9.00 | 5.00 | 1.11x |" in text
    assert f"Swin V2-T is {flops / 1e9:.2f} G floating-point operations" in text
    assert f"inference fp32 (batch 8) {100 * 10.0 * flops / 100e9:.0f}%." in text
    assert text.endswith("Time per image at 512 over 256: 4.20 measured; Eq. 2 (windows) counts 4.00, Eq. 1 (global "
                         "attention) would count 11.00.\n")  # fmt: skip


def test_the_v2_weights_fold_the_q_and_v_biases_for_torchvision():
    q, v = torch.arange(3.0), torch.arange(3.0) + 10
    state = {"stages.0.blocks.0.attn.q_bias": q, "stages.0.blocks.0.attn.v_bias": v, "head.weight": torch.ones(2, 3)}
    folded = models.torchvision_weights(state)
    bias = next(tensor for key, tensor in folded.items() if key.endswith("qkv.bias"))
    assert bias.tolist() == [0.0, 1.0, 2.0, 0.0, 0.0, 0.0, 10.0, 11.0, 12.0]
    assert not any(key.endswith(("q_bias", "v_bias")) for key in folded) and len(folded) == 2


def test_markdown_tables_and_the_results_files(tmp_path, capsys):
    assert tables.markdown_table(["", "a"], [["x", 1.5], ["y", ""]]) == [
        "| | a |",
        "| --- | --- |",
        "| x | 1.5 |",
        "| y | |",
    ]
    results = {"rows": [{"case": "x", "value": 1.25}]}
    data, table = tables.write_results(tmp_path / "out", "smoke", results, "# table\n")
    assert (data, table) == (tmp_path / "out" / "smoke.json", tmp_path / "out" / "smoke.md")
    assert json.loads(data.read_text()) == results and table.read_text() == "# table\n"
    assert capsys.readouterr().out == f"wrote {data} and {table}\n"


def test_the_measuring_helpers_on_a_small_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    # Saved for backward: the input (3x4) for the first weight's gradient, ReLU's output (3x8), read by
    # ReLU's backward and the second layer's alike but counted once, and the second weight (2x8); float32.
    assert measure.saved_activations(model, torch.randn(3, 4)) == 4 * (3 * 4 + 3 * 8 + 2 * 8) / 2**20
    memory = measure.training_memory(model, torch.randn(3, 4), classes=2)
    assert memory["activations"] == 4 * (3 * 4 + 3 * 8 + 2 * 8) / 2**20 and memory["peak_rss"] >= 0
    before = [p.detach().clone() for p in model.parameters()]
    measure.training_step(model, torch.randn(3, 4), None, classes=2)()
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    calls = []
    assert len(measure.timed_calls(lambda: calls.append(1), seconds=0.0, least=3)) == 3 == len(calls)
    assert len(measure.timed_calls(lambda: None, seconds=60.0, most=5)) == 5
    assert measure.matmul_rate(torch.float32, size=32, seconds=0.01) > 0
    # A process with PyTorch loaded holds some hundred MB: the units are MB, neither kB nor GB.
    assert 100 < measure.resident_mb() < 100_000 and 100 < measure.peak_resident_mb() < 100_000
    assert measure.machine()["threads"] == torch.get_num_threads()


def test_a_fresh_process_runs_this_swinkit(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "elsewhere")
    assert measure.swinkit_command("bench", "lora") == [sys.executable, "-m", "swinkit", "bench", "lora"]
    first, rest = measure.child_env()["PYTHONPATH"].split(os.pathsep)
    assert (Path(first) / "swinkit" / "__init__.py").resolve() == Path(swinkit.__file__).resolve()
    assert rest == "elsewhere"


def test_the_cluttered_digits_and_the_plain_loops_schedule():
    sources = np.stack([np.full((8, 8), 16 * k, dtype=np.uint8) for k in range(4)])
    images, labels = small_sets.cluttered_digits(sources, np.arange(4), 5, np.random.default_rng(0))
    again, _ = small_sets.cluttered_digits(sources, np.arange(4), 5, np.random.default_rng(0))
    assert [image.shape for image in images] == [(32, 32)] * 5 and set(labels) <= {0, 1, 2, 3}
    assert all(np.array_equal(a, b) for a, b in zip(images, again))
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    loop = plain_loop.PlainLoop(
        model, np.zeros((10, 8, 8), np.uint8), np.zeros(10, np.int64), batch=4, lr=1.0, mean=[0.5], std=[0.25],
        pad=1, flip=True, clip=1.0, seed=0, warmup=0.1,
    )  # fmt: skip
    loop.total = 20
    assert loop.steps_per_epoch == 3 and loop.rate() == 0.5
    loop.done = 2
    assert loop.rate() == 1.0
    loop.done = 11
    assert loop.rate() == pytest.approx(0.5)
    shapes = [(images.shape, labels.shape) for images, labels in loop.batches()]
    assert shapes == [((4, 1, 8, 8), (4,)), ((4, 1, 8, 8), (4,)), ((2, 1, 8, 8), (2,))]


def test_the_small_data_sets_are_balanced_seeded_and_split_without_overlap():
    digits = small_sets.digits_set()
    assert digits.train_images.shape == (1618, 8, 8) and digits.val_images.shape == (179, 8, 8)
    assert np.bincount(digits.val_labels).min() >= 17 and np.bincount(digits.train_labels).min() >= 157
    cluttered = small_sets.cluttered_set(train=30, val=10)
    assert cluttered.train_images.shape == (30, 32, 32) and cluttered.val_labels.shape == (10,)
    photos = small_sets.photos_set(train_per_class=4, val_per_class=2)
    assert photos.train_images.shape == (40, 32, 32, 3) and photos.val_images.shape == (20, 32, 32, 3)
    assert photos.train_images.dtype == np.uint8 and photos.train_images.std() > 20  # not blank crops
    assert np.bincount(photos.train_labels).tolist() == [4] * 10 and np.bincount(photos.val_labels).tolist() == [2] * 10
    again = small_sets.photos_set(train_per_class=4, val_per_class=2)
    assert all(np.array_equal(a, b) for a, b in zip(photos, again))
    # Training and validation crops come from regions that share no pixel: here each pixel's red is its column.
    columns = np.broadcast_to(np.arange(100, dtype=np.uint8)[None, :, None], (60, 100, 3))
    train, val = small_sets.photo_regions(Image.fromarray(np.ascontiguousarray(columns)), held_out=0.3)
    assert (train.size, val.size) == ((70, 60), (30, 60))
    assert np.asarray(train)[..., 0].max() == 69 and np.asarray(val)[..., 0].min() == 70
    tall = Image.fromarray(np.ascontiguousarray(columns.transpose(1, 0, 2)))
    tall_train, tall_val = small_sets.photo_regions(tall, 0.3)
    assert (tall_train.size, tall_val.size) == ((60, 70), (60, 30))
    crops = small_sets.photo_crops(val, 3, np.random.default_rng(0), smallest=10, largest=20)
    assert [crop.shape for crop in crops] == [(32, 32, 3)] * 3
    with pytest.raises(ValueError, match="too small for crops of 24 pixels"):
        small_sets.photo_crops(val, 1, np.random.default_rng(0))


def test_the_per_class_cut_is_stratified_and_seeded():
    labels = np.array([0] * 10 + [1] * 7 + [2] * 3)
    cut = small_sets.per_class_cut(labels, 5, seed=0)
    assert np.bincount(labels[cut]).tolist() == [5, 5, 3]  # a class with fewer keeps all of its images
    assert np.array_equal(cut, np.unique(cut)) and np.array_equal(cut, small_sets.per_class_cut(labels, 5, seed=0))
    assert not np.array_equal(cut, small_sets.per_class_cut(labels, 5, seed=1))
    with pytest.raises(ValueError, match="at least 1"):
        small_sets.per_class_cut(labels, 0, seed=0)


def test_the_floor_and_a_cnn_baseline_on_a_tiny_colour_set(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    labels = np.arange(24) % 2
    images = (rng.normal(60, 10, (24, 8, 8, 3)) + 120 * labels[:, None, None, None]).clip(0, 255).astype(np.uint8)
    floor = small_data.logistic_floor(small_sets.SmallSet(images[:16], labels[:16], images[16:], labels[16:]))
    assert floor["top1"] == 100.0 and floor["seconds"] > 0 and floor["iterations"] >= 1
    assert plain_loop.channel_stats(images)[0] == pytest.approx(images.reshape(-1, 3).mean(0) / 255)
    assert small_data.data_config(images, labels) == {"in_chans": 3, "num_classes": 2, "img_size": [8, 8]}
    train_dir = small_sets.write_folder(tmp_path / "train", images[:16], labels[:16])
    val_dir = small_sets.write_folder(tmp_path / "val", images[16:], labels[16:])
    loaded, loaded_labels = small_sets.load_folder(val_dir)
    by_class = 16 + np.argsort(labels[16:], kind="stable")  # read back one class folder after another
    assert np.array_equal(loaded, images[by_class]) and np.array_equal(loaded_labels, labels[by_class])
    result = small_data.run_baseline(train_dir, val_dir, None, budget=2.0, seed=0, system="resnet10t")
    assert result["epochs"] >= 1 and 0 <= result["top1"] <= 100 and result["seconds_in_loop"] > 0
    # The budget counts from the process's start, as swinkit train's does: a process that has
    # already spent more than its budget starting trains the one epoch it must, no more.
    monkeypatch.setattr(small_data, "process_age", lambda: 1000.0)
    late = small_data.run_baseline(train_dir, val_dir, None, budget=600.0, seed=0, system="resnet10t")
    assert late["epochs"] == 1 and late["seconds_in_loop"] >= 1000.0


def small_data_results() -> dict:
    def runs(*top1s, seconds=30.0, model=None):
        return [{"top1": t, "epochs": 10, "seconds": seconds} | ({"model": model} if model else {}) for t in top1s]

    floor = [{"top1": 50.0, "seconds": 2.0, "iterations": 100}] * 2
    rows = [
        {"set": "photos", "size": "full", "images_per_class": 300, "train_images": 3000, "budget_s": 30.0,
         "swinkit_model": "swin_atto (patch 2)",
         "runs": {"swinkit": runs(81.0, 83.0, model="swin_atto (patch 2)"), "resnet18": runs(84.0, 82.0),
                  "logreg": floor}},
        {"set": "photos", "size": "20", "images_per_class": 20, "train_images": 200, "budget_s": 12.0,
         "swinkit_model": "swin_atto (patch 4)",
         "runs": {"swinkit": runs(60.0, 62.0, seconds=14.0, model="swin_atto (patch 4)"),
                  "swinkit ema": runs(61.0, 61.0, model="swin_femto (patch 2)"),
                  "resnet18": runs(70.0, 70.0, seconds=12.0),
                  "resnet10t": runs(65.0, 67.0), "logreg": floor}},
    ]  # fmt: skip
    return {"machine": "x, 2 cores", "date": "2026-12-01", "torch": "2.14", "timm": "1.0", "seeds": [0, 1],
            "budgets": {"full": 30.0, "20": 12.0}, "rows": rows}  # fmt: skip


def test_the_small_data_tables_the_target_and_the_summary_train_reads():
    results = small_data_results()
    text = small_data.to_markdown(results)
    assert text.startswith("Machine: x, 2 cores, torch 2.14, timm 1.0; seeds [0, 1]; budget per run: full 30 s, 20 a "
                           "class 12 s.\n")  # fmt: skip
    assert "| full: 3,000 | 30 | swinkit | swin_atto (patch 2) | 82.00 ± 1.41 | -1.00 | 10.00 ± 0.00 | 30.0 |" in text
    assert "| photos | full: 3,000 | 30 | resnet18 | resnet18 | 83.00 ± 1.41 | | 10.00 ± 0.00 | 30.0 |" in text
    assert "| photos | full: 3,000 | 30 | logreg | pixels | 50.00 ± 0.00 | -33.00 | | 2.0 |" in text
    assert "| photos | 20 a class: 200 | 12 | swinkit ema | swin_femto (patch 2) | 61.00 ± 0.00 | -9.00 |" in text
    assert "| photos | full: 3,000 | 82.00 ± 1.41 | 83.00 ± 1.41 | 50.00 | met |" in text  # 1 point: within the sd
    assert small_data.target(results["rows"][1]) == (
        "missed: 9.00 points below resnet18, more than the spread 1.41; 1.17x resnet18's time"
    )
    assert small_data.measured_summary(results) == {
        "machine": "x, 2 cores",
        "date": "2026-12-01",
        "rows": [
            {"set": "photos", "images_per_class": 300, "budget_s": 30.0, "swinkit_model": "swin_atto (patch 2)",
             "swinkit_top1": [82.0, pytest.approx(2**0.5)], "resnet18_top1": [83.0, pytest.approx(2**0.5)],
             "floor_top1": 50.0},
            {"set": "photos", "images_per_class": 20, "budget_s": 12.0, "swinkit_model": "swin_atto (patch 4)",
             "swinkit_top1": [61.0, pytest.approx(2**0.5)], "resnet18_top1": [70.0, 0.0], "floor_top1": 50.0},
        ],
    }  # fmt: skip
    without_reference = {**results["rows"][0], "runs": {"swinkit": results["rows"][0]["runs"]["swinkit"]}}
    assert small_data.target(without_reference) == "not measured (needs swinkit and resnet18)"


def test_the_small_data_options(tmp_path, capsys):
    parser = small_data.build_parser()
    default = small_data.plan_from(parser.parse_args([]), parser)
    assert default.budgets == {"full": 45.0, "60": 30.0, "20": 20.0} and default.seeds == [0, 1, 2]
    assert default.sets == ["digits", "cluttered", "photos"] and default.runs() == 3 * 3 * 3 * 4
    assert default.estimate() == 3 * 3 * 4 * (45 + 30 + 20 + 3 * small_data.OVERHEAD)
    quick = small_data.plan_from(parser.parse_args(["--quick", "--sets", "photos"]), parser)
    assert (quick.budgets, quick.seeds, quick.sets) == ({"20": 20.0}, [0], ["photos"])
    chosen = parser.parse_args(["--sizes", "full", "100", "--budget", "40", "100=20", "--systems", "swinkit", "logreg",
                                "--variant", "ema=--ema --ema-decay 0.99", "--swinkit-args=--hflip 0"])  # fmt: skip
    plan = small_data.plan_from(chosen, parser)
    assert plan.budgets == {"full": 40.0, "100": 20.0} and plan.systems == ["swinkit", "logreg"]
    assert plan.variants == {"ema": ["--ema", "--ema-decay", "0.99"]} and plan.swinkit_args == ["--hflip", "0"]
    assert plan.runs() == 2 * 3 * 3 * 2
    with pytest.raises(SystemExit):
        small_data.plan_from(parser.parse_args(["--sizes", "100"]), parser)
    assert "no budget for 100 images a class: give --budget 100=SECONDS" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        small_data.plan_from(parser.parse_args(["--systems", "timm-swin", "resnet18"]), parser)
    assert "timm-swin takes the architecture swinkit chose" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["--sizes", "half"])
    assert "a size is 'full' or a number of images per class" in capsys.readouterr().err


def test_bench_lists_its_benchmarks(capsys):
    assert cli_main(["bench"]) == 0
    listing = capsys.readouterr().out
    assert all(f"  {name} " in listing for name in ("models", "v2", "small-data", "serve", "lora", "simmim", "detection"))
    with pytest.raises(SystemExit) as exit:
        cli_main(["bench", "--help"])
    help_text = capsys.readouterr().out
    assert exit.value.code == 0 and help_text.startswith("usage: swinkit bench [-h] NAME ...")
    assert all(f"    {name}" in help_text for name in BENCHMARKS) and len(BENCHMARKS) == 8
    with pytest.raises(SystemExit) as exit:
        cli_main(["bench", "--quick"])
    assert exit.value.code == 2 and "unrecognized arguments: --quick" in capsys.readouterr().err


def test_bench_name_passes_the_options_on(monkeypatch, capsys):
    seen = []
    for name in ("v2", "lora"):
        fake = BENCHMARKS[name]._replace(main=lambda argv: seen.append(list(argv)) or 0)
        monkeypatch.setitem(BENCHMARKS, name, fake)
    assert cli_main(["bench", "v2", "--quick", "--rounds", "1", "--bf16"]) == 0
    assert cli_main(["bench", "lora"]) == 0
    assert seen == [["--model", "swinv2_t", "--quick", "--rounds", "1", "--bf16"], []]
    with pytest.raises(SystemExit):
        cli_main(["bench", "models", "--help"])
    assert "usage: swinkit bench models" in capsys.readouterr().out
