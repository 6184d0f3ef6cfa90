"""The benchmark's own logic on small inputs: precisions applied alike, failures reported, GPU tables."""

import torch
from torch import nn

import swinkit
from swinkit.benchmark import Row, _precision_models, _speedups, interleaved, parse_args, to_markdown


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
    int8, failed, differences = _precision_models(models, "int8", check)
    assert list(int8) == ["swinkit"] and list(differences) == ["swinkit"] and 0 < differences["swinkit"] < 0.1
    assert failed["torchvision"].startswith("TypeError: linear(): argument 'weight'")
    bf16, failed, differences = _precision_models(models, "bf16", check)
    assert set(bf16) == set(models) and not failed
    assert all(next(model.parameters()).dtype == torch.bfloat16 for model in bf16.values())
    assert next(tiny.parameters()).dtype == torch.float32  # converted copies


def test_rows_with_a_failing_peer_and_the_speedups():
    row = Row("inference int8", 8, {"swinkit": 40.0, "timm": 25.0, "transformers": 20.0}, {"torchvision": "E"})
    assert row.ratio() == 40.0 / 25.0
    assert Row("inference int8", 8, {"swinkit": 4.0}, {"timm": "E"}).ratio() is None
    rows = [Row("inference fp32", 8, {"swinkit": 20.0, "timm": 18.0}), row]
    assert _speedups(rows) == {"inference int8 / fp32 (batch 8)": 2.0}


def test_interleaved_times_every_step_each_round():
    calls = {"a": 0, "b": 0}

    def step(name):
        return lambda: calls.__setitem__(name, calls[name] + 1)

    times = interleaved({"a": step("a"), "b": step("b")}, rounds=3, repeats=2, warmup=2)
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


def test_defaults_follow_the_device_and_quick():
    gpu = parse_args(["--device", "cuda", "--quick", "--bf16"])
    assert (gpu.batch, gpu.rounds, gpu.tag, gpu.bf16, gpu.memory) == (64, 3, "gpu", True, True)
    cpu = parse_args([])
    assert (cpu.batch, cpu.rounds, cpu.tag, cpu.bf16, cpu.int8) == (8, 7, "cpu", False, True)
    assert parse_args(["--quick", "--rounds", "1", "--tag", "smoke"]).rounds == 1
