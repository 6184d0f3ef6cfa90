"""swinkit models work with the tools people apply to models: PEFT LoRA, dynamic quantization,
forward hooks, FX feature extraction and pruning. Each test uses the real tool."""

from collections import Counter

import pytest
import torch
import torch.nn.utils.prune
from torch import nn

import swinkit
from swinkit.model.layers import plain_linears

peft = pytest.importorskip("peft")

TINY = {"img_size": 32, "embed_dim": 16, "depths": (2, 2), "num_heads": (1, 2), "window_size": 4, "num_classes": 5}
TARGETS = ["qkv", "proj", "fc1", "fc2"]


def tiny_model(seed: int = 0) -> swinkit.SwinTransformer:
    torch.manual_seed(seed)
    model = swinkit.create_model("swin_t", drop_path_rate=0.0, **TINY)
    with torch.no_grad():  # off the initial values, so that no term hides behind a zero
        for parameter in model.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    return model.eval()


def lora(model: nn.Module, **changes) -> "peft.PeftModel":
    config = peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=TARGETS, init_lora_weights=False, modules_to_save=["head"], **changes
    )
    return peft.get_peft_model(model, config)


def test_lora_adapters_change_the_output_and_merge_into_the_same_model():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 32, 32)
    base = tiny_model()
    with torch.no_grad():
        plain = base(x)
    adapted = lora(tiny_model()).eval()
    layers = [name for name, module in adapted.named_modules() if isinstance(module, peft.tuners.lora.LoraLayer)]
    # Every block's qkv, proj, fc1, fc2 (2 + 2 blocks), plus the patch embedding's proj convolution.
    assert len(layers) == 4 * 4 + 1
    with torch.no_grad():
        with_adapters = adapted(x)
        assert (with_adapters - plain).abs().max() > 1e-3
        merged = adapted.merge_and_unload()
        assert not any(isinstance(m, peft.tuners.lora.LoraLayer) for m in merged.modules())
        assert all(type(m) is nn.Linear for name, m in merged.named_modules() if name.endswith(("qkv", "fc1")))
        torch.testing.assert_close(merged(x), with_adapters, rtol=1e-5, atol=1e-5)


def test_lora_training_moves_only_adapters_and_head_and_lowers_the_loss(tmp_path):
    torch.manual_seed(2)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 5, (8,))
    model = lora(tiny_model())
    model.train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=1e-2)
    losses = []
    for _ in range(8):
        loss = nn.functional.cross_entropy(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    moved = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert moved, "nothing trained"
    assert all("lora_" in name or ".head." in name for name in moved), sorted(moved)
    assert any("lora_" in name for name in moved) and any(".head." in name for name in moved)
    assert any(".qkv." in name for name in moved) and any(".fc2." in name for name in moved)

    # A saved adapter reloads onto the same base weights and gives the same outputs.
    model.eval()
    with torch.no_grad():
        expected = model(x)
    model.save_pretrained(tmp_path / "adapter")
    reloaded = peft.PeftModel.from_pretrained(tiny_model(), tmp_path / "adapter").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), expected, rtol=1e-6, atol=1e-6)


def test_dynamic_quantization_of_the_linear_layers_runs_close_to_fp32():
    model = tiny_model()
    x = torch.randn(4, 3, 32, 32)
    quantized = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    kinds = Counter(type(m).__name__ for m in quantized.modules())
    assert kinds["Linear"] == sum(isinstance(m, nn.Linear) for m in model.modules())  # all swapped
    assert type(quantized.stages[0].blocks[0].attn.qkv).__module__.startswith("torch.ao.nn.quantized")
    with torch.no_grad():
        reference, got = model(x), quantized(x)
    error = (got - reference).abs().max().item()
    assert 0 < error < 0.1 * reference.abs().max().item()


def test_every_layer_fires_its_forward_hook_once_per_use():
    model = tiny_model()
    counts: Counter[str] = Counter()
    handles = [
        module.register_forward_hook(lambda m, i, o, name=name: counts.update([name]))
        for name, module in model.named_modules()
        if isinstance(module, (nn.Linear, nn.LayerNorm, nn.Conv2d))
    ]
    hooked = {name for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.LayerNorm, nn.Conv2d))}
    # patch embedding conv + norm; 4 blocks x (norm1, qkv, proj, norm2, fc1, fc2); merging norm + reduction;
    # final norm; head.
    assert len(hooked) == 2 + 4 * 6 + 2 + 1 + 1
    for mode in ("eval", "train"):
        counts.clear()
        getattr(model, mode)()
        model(torch.randn(2, 3, 32, 32))
        assert set(counts) == hooked and set(counts.values()) == {1}, (mode, counts)
    for handle in handles:
        handle.remove()


def test_hooks_on_the_qkv_and_fc1_layers_of_swin_t_all_fire():
    model = swinkit.create_model("swin_t").eval()
    fired = []
    for name, module in model.named_modules():
        if name.endswith((".qkv", ".fc1")):
            module.register_forward_hook(lambda m, i, o, name=name: fired.append(name))
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    assert len(fired) == 24 and len(set(fired)) == 24


def test_the_raw_weight_fast_path_is_for_plain_unhooked_linear_layers_only():
    plain = nn.Linear(4, 4)
    assert plain_linears(plain, nn.Linear(4, 2))
    hooked = nn.Linear(4, 4)
    handle = hooked.register_forward_pre_hook(lambda m, i: None)
    assert not plain_linears(plain, hooked)
    handle.remove()
    assert plain_linears(hooked)
    quantized = torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(4, 4)), {nn.Linear})[0]
    assert not plain_linears(quantized)
    adapted = peft.get_peft_model(nn.Sequential(nn.Linear(4, 4)), peft.LoraConfig(r=2, target_modules=["0"]))
    assert not plain_linears(adapted.base_model.model[0])
    handle = nn.modules.module.register_module_forward_hook(lambda m, i, o: None)
    assert not plain_linears(plain)
    handle.remove()


@pytest.mark.parametrize("size", [(32, 32), (44, 60)])
def test_fx_feature_extraction_gives_the_stage_maps_of_forward_intermediates(size):
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

    model = tiny_model()
    train_nodes, eval_nodes = get_graph_node_names(model)
    assert any(name.endswith("attn.qkv") for name in eval_nodes)  # layers are nodes of their own
    last = {}
    for name in eval_nodes:
        if name.startswith("stages."):
            last[int(name.split(".")[1])] = name
    assert sorted(last) == [0, 1]
    extractor = create_feature_extractor(model, return_nodes={last[0]: "stage0", last[1]: "stage1"})
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        features = extractor(x)
        expected = model.forward_intermediates(x, indices=(0, 1))
    for index, want in enumerate(expected):
        torch.testing.assert_close(features[f"stage{index}"].permute(0, 3, 1, 2), want, rtol=1e-6, atol=1e-6)
    # The traced graph still checks its input.
    with pytest.raises(ValueError, match="input channels"):
        extractor(torch.randn(1, 4, 32, 32))


def test_pruning_a_qkv_layer_changes_the_output_as_the_pruned_weight_says():
    torch.manual_seed(3)
    x = torch.randn(2, 3, 32, 32)
    model = tiny_model()
    with torch.no_grad():
        before = model(x)
    qkv = model.stages[0].blocks[1].attn.qkv
    torch.nn.utils.prune.l1_unstructured(qkv, "weight", amount=0.5)
    assert (qkv.weight == 0).float().mean().item() == pytest.approx(0.5, abs=0.01)
    with torch.no_grad():
        pruned = model(x)
    assert (pruned - before).abs().max() > 1e-5
    # The same numbers as a model whose qkv weight simply is the pruned weight.
    reference = tiny_model()
    with torch.no_grad():
        reference.stages[0].blocks[1].attn.qkv.weight.copy_(qkv.weight)
        torch.testing.assert_close(reference(x), pruned, rtol=0, atol=0)
