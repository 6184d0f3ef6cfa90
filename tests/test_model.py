"""The model: variants, shapes at any size, structural invariants, backbone API, errors."""

import pytest
import torch

import swinkit
from swinkit.model import ops
from swinkit.model.layers import SwinBlock

PARAMS = {
    "swin_t": 28_288_354,
    "swin_s": 49_606_258,
    "swin_b": 87_768_224,
    "swin_l": 196_532_476,
    "swin_t_384": 28_338_034,
    "swin_s_384": 49_707_778,
    "swin_b_384": 87_903_584,
    "swin_l_384": 196_735_516,
}
GFLOPS = {
    "swin_t": 4.494,
    "swin_s": 8.747,
    "swin_b": 15.438,
    "swin_l": 34.487,
    "swin_t_384": 14.005,
    "swin_s_384": 27.005,
    "swin_b_384": 47.105,
    "swin_l_384": 103.952,
}
TINY = dict(img_size=64, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=4, num_classes=10)


def tiny(**overrides):
    torch.manual_seed(0)
    return swinkit.create_model("swin_t", **(TINY | overrides))


def test_registry_lists_eight_variants_and_timm_aliases():
    assert swinkit.list_models()[: len(PARAMS)] == list(PARAMS)  # V1 first; Swin V2 (test_v2_model) after
    assert "swin_base_patch4_window12_384" in swinkit.list_models(include_aliases=True)
    assert swinkit.get_config("swin_base_patch4_window12_384") == swinkit.get_config("swin_b_384")


@pytest.mark.parametrize("name", list(PARAMS))
def test_parameter_counts_match_the_published_ones(name):
    model = swinkit.create_model(name, device="meta")
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]


@pytest.mark.parametrize("name", list(GFLOPS))
def test_flops_match_the_published_ones(name):
    count = swinkit.count_flops(name)
    assert count.gflops == pytest.approx(GFLOPS[name], rel=1e-3)
    assert count.total == sum(count.by_term.values())
    assert set(count.by_stage) == {"embedding", "stage1", "stage2", "stage3", "stage4", "head"}


def test_flop_terms_follow_eq2():
    count = swinkit.count_flops("swin_t", 224)
    stage1 = count.by_stage["stage1"]
    hw, c, m = 56 * 56, 96, 7
    assert stage1["projections"] == 2 * 4 * hw * c * c
    assert stage1["attention"] == 2 * 2 * m * m * hw * c
    assert stage1["mlp"] == 2 * 8 * hw * c * c
    assert count.by_stage["stage2"]["merging"] == 28 * 28 * 4 * 96 * 192
    assert swinkit.count_flops(swinkit.create_model("swin_t", device="meta")).total == count.total


def test_flops_follow_the_small_map_rule():
    """At 97x130 Swin-T's last map is 4x5 (padded) or 3x4 (cropped): one shrunk window, or one 7x7 window under
    torchvision's rule (``patch_remainder="crop"``), which pads the map to it."""
    padded = swinkit.count_flops("swin_t", (97, 130)).by_stage["stage4"]["attention"]
    cropped = swinkit.count_flops(swinkit.get_config("swin_t", patch_remainder="crop"), (97, 130))
    assert padded == 2 * 2 * (4 * 5) * (4 * 5) * 768
    assert cropped.by_stage["stage4"]["attention"] == 2 * 2 * (7 * 7) * (7 * 7) * 768


def test_swin_t_accepts_an_odd_size():
    model = swinkit.create_model("swin_t").eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 225, 301)).shape == (2, 1000)


@pytest.mark.parametrize("size", [(225, 301), (64, 64), (33, 47), (4, 4), (17, 130)])
def test_tiny_model_shapes_at_any_size(size):
    model = tiny().eval()
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        logits = model(x)
        maps = model.forward_intermediates(x)
    assert logits.shape == (1, 10) and torch.isfinite(logits).all()
    height, width = -(-size[0] // 4), -(-size[1] // 4)
    for index, feature in enumerate(maps):
        assert feature.shape == (1, 16 * 2**index, height, width)
        height, width = -(-height // 2), -(-width // 2)


def test_other_channel_counts_and_window_sizes():
    for in_chans in (1, 5):
        model = tiny(in_chans=in_chans, window_size=3).eval()
        with torch.no_grad():
            assert model(torch.randn(2, in_chans, 50, 37)).shape == (2, 10)


def test_forward_features_is_the_normalised_last_stage():
    model = tiny().eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        last = model.forward_intermediates(x, indices=(-1,), norm=True)[0]
        pooled = model.forward_head(features, pre_logits=True)
    assert features.shape == (2, 2, 2, 128)
    torch.testing.assert_close(last, features.permute(0, 3, 1, 2))
    torch.testing.assert_close(model.head(pooled), model(x))


def test_no_head_returns_pooled_features_and_reset_classifier():
    model = tiny(num_classes=0).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 128)
    model.reset_classifier(3, labels=("cat", "dog", "fox"))
    assert model.num_classes == 3 and model.config.labels == ("cat", "dog", "fox")
    assert model.head.bias.eq(0).all() and model.head.weight.std() < 0.05
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 3)


def block_output(block, x):
    with torch.no_grad():
        return block(x)


def test_shift_mask_keeps_sub_windows_apart():
    torch.manual_seed(0)
    size, window, shift = 8, 4, 2
    block = SwinBlock(8, 2, window, shift, 4.0, True, 0.0, 0.0, 0.0, 1e-5).eval()
    x = torch.randn(1, size, size, 8)
    base = block_output(block, x)
    # Token (0, 0) moves to (6, 6) after the shift: the bottom-right window, region 8.
    perturbed = x.clone()
    perturbed[0, 0, 0] += 5.0 * torch.randn(8)
    changed = (block_output(block, perturbed) - base).abs().amax(-1)[0] > 1e-5
    regions = ops.shifted_window_regions(size, size, window, shift)
    for i in range(size):
        for j in range(size):
            si, sj = (i - shift) % size, (j - shift) % size
            same_window = si // window == 1 and sj // window == 1
            same_region = bool(regions[si, sj] == regions[6, 6])
            # Inside the window, exactly the tokens of the same sub-window see the change.
            if same_window:
                assert changed[i, j] == same_region, (i, j)
            else:
                assert not changed[i, j], (i, j)


def test_window_attention_is_local():
    torch.manual_seed(0)
    block = SwinBlock(8, 2, 4, 0, 4.0, True, 0.0, 0.0, 0.0, 1e-5).eval()
    x = torch.randn(1, 8, 8, 8)
    base = block_output(block, x)
    perturbed = x.clone()
    perturbed[0, 5, 6] += 5.0 * torch.randn(8)  # a token of the bottom-right window
    changed = (block_output(block, perturbed) - base).abs().amax(-1)[0] > 1e-5
    assert changed[4:, 4:].all()
    changed[4:, 4:] = False
    assert not changed.any()


def test_small_map_is_one_unshifted_window():
    block = SwinBlock(8, 2, 7, 3, 4.0, True, 0.0, 0.0, 0.0, 1e-5).eval()
    x = torch.randn(1, 5, 6, 8)
    # Every token sees every other one: a single window of the map's size.
    base = block_output(block, x)
    perturbed = x.clone()
    perturbed[0, 4, 5] += 5.0 * torch.randn(8)
    assert ((block_output(block, perturbed) - base).abs().amax(-1) > 1e-5).all()


def test_gradient_checkpointing_gives_equal_outputs_and_gradients():
    model = tiny(drop_path_rate=0.0)
    x = torch.randn(2, 3, 64, 64)
    loss = model(x).square().sum()
    loss.backward()
    plain = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    loss_ckpt = model(x).square().sum()
    loss_ckpt.backward()
    torch.testing.assert_close(loss_ckpt, loss)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, plain[name], msg=name)


def test_backward_reaches_every_parameter():
    model = tiny()
    model(torch.randn(2, 3, 64, 64)).logsumexp(-1).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_forward_mutates_no_module_state():
    model = tiny().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    attributes = {n: dict(vars(m)) for n, m in model.named_modules()}
    with torch.no_grad():
        for size in ((64, 64), (29, 30), (130, 90)):
            model(torch.randn(1, 3, *size))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    for name, module in model.named_modules():
        plain = {k: v for k, v in vars(module).items() if not k.startswith("_")}
        assert plain == {k: v for k, v in attributes[name].items() if not k.startswith("_")}, name


def test_eval_is_deterministic_and_drop_path_acts_in_training():
    model = tiny(drop_path_rate=0.5)
    x = torch.randn(4, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)
        model.train()
        torch.manual_seed(1)
        first = model(x)
        torch.manual_seed(2)
        assert not torch.allclose(first, model(x))


def test_initialisation_follows_the_reference():
    model = tiny(embed_dim=32, num_heads=(2, 4, 4, 8))
    fc1 = model.stages[2].blocks[0].mlp.fc1
    assert fc1.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert fc1.bias.eq(0).all()
    table = model.stages[2].blocks[0].attn.relative_position_bias_table
    assert table.shape == (49, 4) and table.std().item() == pytest.approx(0.02, rel=0.3)
    assert model.norm.weight.eq(1).all() and model.norm.bias.eq(0).all()


def test_drop_path_rises_linearly_over_blocks():
    model = tiny(drop_path_rate=0.7)
    rates = [block.drop_path.p for stage in model.stages for block in stage.blocks]
    assert rates == pytest.approx([0.1 * i for i in range(8)])


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda m: m(torch.randn(1, 1, 64, 64)), "3 input channels"),
        (lambda m: m(torch.randn(3, 64, 64)), "4D"),
        (lambda m: m(torch.randn(1, 3, 3, 64)), "smaller than one patch"),
        (lambda m: m.forward_intermediates(torch.randn(1, 3, 64, 64), indices=(4,)), "stages 0..3"),
        (lambda m: m.reset_classifier(-1), "num_classes"),
    ],
)
def test_bad_input_raises_a_clear_error(call, words):
    with pytest.raises(ValueError, match=words):
        call(tiny())


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (dict(num_heads=(3, 3, 3, 3)), "heads do not divide"),
        (dict(depths=(2, 2)), "same length"),
        (dict(colour="blue"), "unknown config field"),
        (dict(img_size=2), "smaller than one patch"),
        (dict(num_classes=2, labels=("a",)), "one label per class"),
        (dict(drop_path_rate=1.5), "drop_path_rate"),
    ],
)
def test_impossible_configs_are_refused(overrides, words):
    with pytest.raises(ValueError, match=words):
        tiny(**overrides)


def test_unknown_variant_names_close_matches():
    with pytest.raises(ValueError, match="unknown model 'swin_tt'.*Did you mean.*swin_t"):
        swinkit.create_model("swin_tt")


def test_training_after_inference_mode_uses_normal_cached_tensors():
    model = tiny(window_size=3).eval()
    with torch.inference_mode():
        model(torch.randn(1, 3, 61, 61))
    model.train()
    model(torch.randn(1, 3, 61, 61)).sum().backward()
    assert model.stages[0].blocks[1].attn.relative_position_bias_table.grad.abs().sum() > 0
