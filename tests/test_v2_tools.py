"""Swin V2 with the tools and commands V1 works with: PEFT LoRA, dynamic quantization, bf16, hooks,
FX feature extraction, torch.compile, torch.export, ONNX, gradient checkpointing, the backbone API,
attention maps, the optimiser's groups, and the train / eval / predict / show / flops / models
commands on a tiny V2 run (export, the command, is the API tested here plus the V1 command test)."""

import json
from collections import Counter

import pytest
import torch
from torch import nn

import swinkit
from swinkit.cli import main
from swinkit.export import check_onnx, export_onnx, export_program
from swinkit.model import ops
from swinkit.train.optim import parameter_groups
from swinkit.viz.attention import attention_maps

peft = pytest.importorskip("peft")

TINY = {"img_size": 32, "embed_dim": 16, "depths": (2, 2), "num_heads": (1, 2), "window_size": 4, "num_classes": 5}
TARGETS = ["qkv", "proj", "fc1", "fc2"]


def tiny_v2(seed: int = 0, **overrides) -> swinkit.SwinTransformer:
    """A two-stage V2 with every parameter moved off its initial value (its post-norms start at zero)."""
    torch.manual_seed(seed)
    model = swinkit.create_model("swinv2_t", **(TINY | {"drop_path_rate": 0.0} | overrides))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model.eval()


def lora(model: nn.Module) -> "peft.PeftModel":
    config = peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=TARGETS, init_lora_weights=False, modules_to_save=["head"]
    )
    return peft.get_peft_model(model, config)


def test_lora_adapters_on_qkv_proj_fc1_fc2_change_the_output_and_merge():
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        plain = tiny_v2()(x)
    adapted = lora(tiny_v2()).eval()
    adapted_layers = {
        name.split(".")[-1]
        for name, module in adapted.named_modules()
        if isinstance(module, peft.tuners.lora.LoraLayer)
    }
    count = sum(isinstance(m, peft.tuners.lora.LoraLayer) for m in adapted.modules())
    # qkv, proj, fc1, fc2 of 4 blocks, and the patch embedding's proj convolution.
    assert adapted_layers == {"qkv", "proj", "fc1", "fc2"} and count == 4 * 4 + 1
    with torch.no_grad():
        with_adapters = adapted(x)
        assert (with_adapters - plain).abs().max() > 1e-3
        merged = adapted.merge_and_unload()
        torch.testing.assert_close(merged(x), with_adapters, rtol=1e-5, atol=1e-5)


def test_lora_training_moves_only_adapters_and_head():
    torch.manual_seed(2)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 5, (8,))
    model = lora(tiny_v2())
    model.train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(4):
        loss = nn.functional.cross_entropy(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    moved = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert all("lora_" in name or ".head." in name for name in moved), sorted(moved)
    assert any(".qkv.lora_" in name for name in moved) and any(".fc2.lora_" in name for name in moved)


def test_dynamic_quantization_swaps_every_linear_and_runs_close_to_fp32():
    model = tiny_v2()
    x = torch.randn(4, 3, 32, 32)
    quantized = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    kinds = Counter(type(m).__name__ for m in quantized.modules())
    assert kinds["Linear"] == sum(isinstance(m, nn.Linear) for m in model.modules())  # cpb_mlp included
    assert type(quantized.stages[0].blocks[0].attn.cpb_mlp[0]).__module__.startswith("torch.ao.nn.quantized")
    with torch.no_grad():
        reference, got = model(x), quantized(x)
        assert torch.equal(quantized(x), got)  # a quantized bias MLP is called every time, same result
    error = (got - reference).abs().max().item()
    assert 0 < error < 0.1 * reference.abs().max().item()


def test_a_bf16_model_runs_close_to_fp32():
    model = tiny_v2()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        reference = model(x)
        half = model.to(torch.bfloat16)
        got = half(x.bfloat16())
        assert got.dtype == torch.bfloat16
        assert half(x.bfloat16()).dtype == torch.bfloat16  # the cached bias follows the dtype
    error = (got.float() - reference).abs().max().item()
    assert error < 0.05 * reference.abs().max().item()


def test_every_layer_fires_its_forward_hook_once_per_use():
    model = tiny_v2()
    counts: Counter[str] = Counter()
    kinds = (nn.Linear, nn.LayerNorm, nn.Conv2d)
    hooked = {name for name, m in model.named_modules() if isinstance(m, kinds)}
    handles = [
        m.register_forward_hook(lambda m, i, o, name=name: counts.update([name]))
        for name, m in model.named_modules()
        if isinstance(m, kinds)
    ]
    # patch embedding conv + norm; 4 blocks x (norm1, qkv, proj, cpb_mlp.0, cpb_mlp.2, norm2, fc1, fc2);
    # merging reduction + norm; final norm; head.
    assert len(hooked) == 2 + 4 * 8 + 2 + 1 + 1
    for mode in ("eval", "train", "eval"):
        counts.clear()
        getattr(model, mode)()
        with torch.set_grad_enabled(mode == "train"):
            model(torch.randn(2, 3, 32, 32))
        assert set(counts) == hooked and set(counts.values()) == {1}, (mode, counts)
    for handle in handles:
        handle.remove()


@pytest.mark.parametrize("size", [(32, 32), (44, 60)])
def test_fx_feature_extraction_gives_the_stage_maps_of_forward_intermediates(size):
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

    model = tiny_v2()
    _, eval_nodes = get_graph_node_names(model)
    assert any(name.endswith("attn.qkv") for name in eval_nodes)
    assert any(name.endswith("attn.cpb_mlp.0") for name in eval_nodes)  # the bias MLP is a node too
    last = {int(name.split(".")[1]): name for name in eval_nodes if name.startswith("stages.")}
    extractor = create_feature_extractor(model, return_nodes={last[0]: "stage0", last[1]: "stage1"})
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        features = extractor(x)
        expected = model.forward_intermediates(x, indices=(0, 1))
    for index, want in enumerate(expected):
        torch.testing.assert_close(features[f"stage{index}"].permute(0, 3, 1, 2), want, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="input channels"):
        extractor(torch.randn(1, 4, *size))


def test_torch_compile_fullgraph_without_recompiling_per_batch():
    import torch._dynamo

    torch._dynamo.reset()
    model = tiny_v2(depths=(2, 1))  # a W-MSA and an SW-MSA block, and a merging
    compiled = torch.compile(model, backend="eager", fullgraph=True)  # any graph break raises
    counters = torch._dynamo.utils.counters
    counters.clear()
    with torch.no_grad():
        for batch in (2, 3, 5):
            x = torch.randn(batch, 3, 32, 32)
            torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)
    assert counters["stats"]["unique_graphs"] <= 2
    torch._dynamo.reset()


def test_torch_export_and_onnx(tmp_path):
    model = tiny_v2(depths=(2, 1))
    program = export_program(model, tmp_path / "model.pt2")
    loaded = torch.export.load(str(tmp_path / "model.pt2"))
    for batch in (1, 3):
        x = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            expected = model(x)
        torch.testing.assert_close(program.module()(x), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(loaded.module()(x), expected, rtol=1e-5, atol=1e-5)
    path = export_onnx(model, tmp_path / "model.onnx")
    assert check_onnx(model, path, batch_sizes=(1, 3)) <= 1e-4


def test_gradient_checkpointing_gives_the_same_loss_and_gradients():
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 3])
    results = []
    for enable in (False, True):
        model = tiny_v2().train()
        model.set_grad_checkpointing(enable)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in model.named_parameters()}))
    torch.testing.assert_close(results[1][0], results[0][0])
    assert results[0][1]["stages.0.blocks.1.attn.cpb_mlp.0.weight"].abs().sum() > 0
    for name, grad in results[0][1].items():
        torch.testing.assert_close(results[1][1][name], grad, rtol=1e-5, atol=1e-6, msg=name)


def test_backbone_api():
    model = tiny_v2(depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), num_classes=0)
    x = torch.randn(1, 3, 70, 90)
    with torch.no_grad():
        maps = model.forward_intermediates(x)
        features = model.forward_features(x)
        normed = model.forward_intermediates(x, indices=(-1,), norm=True)[0]
        assert model(x).shape == (1, 128)
    assert [tuple(m.shape) for m in maps] == [(1, 16, 18, 23), (1, 32, 9, 12), (1, 64, 5, 6), (1, 128, 3, 3)]
    torch.testing.assert_close(normed, features.permute(0, 3, 1, 2))


def test_attention_maps_are_the_weights_of_the_cosine_attention():
    model = tiny_v2()
    block = model.stages[0].blocks[1]  # shifted
    x = torch.randn(1, 10, 9, 16)
    with torch.no_grad():
        probs, layout = block.attention_probabilities(x)
        assert probs.shape == (1, 9, 1, 16, 16) and layout.shift == 2
        torch.testing.assert_close(probs.sum(-1), torch.ones(1, 9, 1, 16))
        # The weights times v, projected and put back, are the block's attention output.
        _, _, v = block.attn.heads(ops.partition_windows(x, layout))
        out = (probs.flatten(0, 1) @ v).transpose(1, 2).reshape(9, 16, 16)
        torch.testing.assert_close(ops.reverse_windows(block.attn.proj(out), layout), block.shifted_window_attention(x))
        maps = attention_maps(model, torch.randn(3, 32, 32), blocks=[(0, 1), (1, 0)])
    assert [(m.stage, m.block) for m in maps] == [(0, 1), (1, 0)]
    assert maps[0].heads.shape == (1, 8, 8) and abs(maps[0].heads.sum() - 1.0) < 1e-5


def test_no_weight_decay_on_the_bias_mlp_and_logit_scales():
    model = tiny_v2()
    decayed = {id(p) for group in parameter_groups(model, 0.05) if group["weight_decay"] for p in group["params"]}
    names = {name for name, p in model.named_parameters() if id(p) in decayed}
    assert "stages.0.blocks.0.attn.qkv.weight" in names and "stages.1.downsample.reduction.weight" in names
    assert not any(word in name for name in names for word in ("cpb_mlp", "logit_scale", "q_bias", "norm"))


def make_folder(root, per_class: int = 10, size: int = 36):
    from PIL import Image

    generator = torch.Generator().manual_seed(0)
    for name, colour in {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}.items():
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            pixels = torch.tensor(colour).view(1, 1, 3) + 40 * torch.randn(size, size, 3, generator=generator)
            Image.fromarray(pixels.clamp(0, 255).to(torch.uint8).numpy()).save(root / name / f"{index}.png")
    return root


def test_train_eval_predict_show_on_a_tiny_v2_run(tmp_path, capsys):
    folder = make_folder(tmp_path / "colours")
    code = main(
        ["train", "--data", str(folder), "--output", str(tmp_path / "runs"), "--name", "v2", "--epochs", "2",
         "--batch-size", "8", "--lr", "3e-3", "--lr-base-batch", "0", "--warmup-epochs", "0", "--no-augment",
         "--quiet", "--workers", "0", "--model", "swinv2_t", "--set", "embed_dim=16", "--set", "depths=[1,1]",
         "--set", "num_heads=[1,2]", "--set", "window_size=4", "--img-size", "32", "--grad-checkpointing"]
    )  # fmt: skip
    assert code == 0
    run = tmp_path / "runs" / "v2"
    rows = [line.split(",") for line in (run / "metrics.csv").read_text().splitlines()]
    losses = [float(row[rows[0].index("train_loss")]) for row in rows[1:]]
    assert len(losses) == 2 and losses[-1] < 0.8 * losses[0]
    model = swinkit.create_model(pretrained=str(run))
    assert model.config.version == 2 and model.config.embed_dim == 16
    capsys.readouterr()

    assert main(["eval", "--model", str(run), "--data", str(folder), "--workers", "0", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 30 and report["top1"] >= 70.0  # chance is 33%

    assert main(["predict", "--model", str(run), str(folder / "red" / "1.png"), "--json"]) == 0
    top = json.loads(capsys.readouterr().out)[0]["top"]
    assert top[0]["label"] == "red"

    picture = tmp_path / "attention.png"
    args = ["show", "attention", "--model", str(run), "--image", str(folder / "blue" / "2.png"), "-o", str(picture)]
    assert main(args) == 0 and picture.stat().st_size > 0


def test_flops_and_models_commands_list_v2(capsys):
    assert main(["flops", "--model", "swinv2_t"]) == 0
    output = capsys.readouterr().out
    assert f"{swinkit.count_flops('swinv2_t').total:,} FLOPs (= count_flops)" in output
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    v2 = lines[lines.index("") + 1 :]
    assert v2[0].split()[:3] == ["Swin", "V2", "params"]
    rows = {line.split()[0]: line.split() for line in v2[2:]}
    assert rows["swinv2_t"][1:] == ["28,347,154", "5.945", "256x256", "8", "-", "1000", "swinv2_tiny_window8_256"]
    assert rows["swinv2_l_192to384"][1:6] == ["196,739,932", "116.024", "384x384", "24", "12,12,12,6"]
    assert rows["swinv2_b_192"][6:] == ["21841", "swinv2_base_window12_192"]
