"""Swin V2: the same model with V2 parts chosen by the config. Outputs against timm's model on the
same weights, a block against a direct transcription of the paper, parameter names, initialisation,
variants with the published parameter counts and FLOPs, window transfer, the bias cache."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import swinkit
from swinkit.model import ops
from swinkit.model.layers import SwinBlock

timm = pytest.importorskip("timm")

TINY = dict(img_size=64, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=4, num_classes=7)

#: Parameters with 1000 classes, from timm and torchvision (the brief).
PUBLISHED_PARAMS = {
    "swinv2_t": 28_347_154,
    "swinv2_s": 49_728_418,
    "swinv2_b": 87_918_816,
    "swinv2_l_192to256": 196_739_932,
}
#: Every registered V2 variant: (parameters, input, window, pretrained windows, classes, timm name).
VARIANTS = {
    "swinv2_t": (28_347_154, 256, 8, (), 1000, "swinv2_tiny_window8_256"),
    "swinv2_t_w16": (28_347_154, 256, 16, (), 1000, "swinv2_tiny_window16_256"),
    "swinv2_s": (49_728_418, 256, 8, (), 1000, "swinv2_small_window8_256"),
    "swinv2_s_w16": (49_728_418, 256, 16, (), 1000, "swinv2_small_window16_256"),
    "swinv2_b": (87_918_816, 256, 8, (), 1000, "swinv2_base_window8_256"),
    "swinv2_b_w16": (87_918_816, 256, 16, (), 1000, "swinv2_base_window16_256"),
    "swinv2_b_192": (109_280_841, 192, 12, (), 21841, "swinv2_base_window12_192"),
    "swinv2_b_192to256": (87_918_816, 256, 16, (12, 12, 12, 6), 1000, "swinv2_base_window12to16_192to256"),
    "swinv2_b_192to384": (87_918_816, 384, 24, (12, 12, 12, 6), 1000, "swinv2_base_window12to24_192to384"),
    "swinv2_l_192": (228_772_549, 192, 12, (), 21841, "swinv2_large_window12_192"),
    "swinv2_l_192to256": (196_739_932, 256, 16, (12, 12, 12, 6), 1000, "swinv2_large_window12to16_192to256"),
    "swinv2_l_192to384": (196_739_932, 384, 24, (12, 12, 12, 6), 1000, "swinv2_large_window12to24_192to384"),
}
#: Multiply-adds from timm (the brief), GMACs of one image.
PUBLISHED_GMACS = {
    "swinv2_t": 5.96,
    "swinv2_t_w16": 6.68,
    "swinv2_s": 11.58,
    "swinv2_s_w16": 12.82,
    "swinv2_b": 20.37,
    "swinv2_b_w16": 22.02,
    "swinv2_b_192to384": 55.25,
    "swinv2_l_192to256": 47.81,
    "swinv2_l_192to384": 116.15,
}


def perturb(model: nn.Module, seed: int, scale: float = 0.1) -> nn.Module:
    """Move every parameter off its initial value (V2 starts with zero post-norms: blocks are identities)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator))
    return model


def tiny_v2(seed: int = 0, **overrides) -> swinkit.SwinTransformer:
    torch.manual_seed(seed)
    model = swinkit.create_model("swinv2_t", **(TINY | {"drop_path_rate": 0.0} | overrides))
    return perturb(model, seed).eval()


def timm_twin(pretrained_window_sizes=(0, 0, 0, 0), seed: int = 0):
    """timm's V2 with random weights off init, and swinkit's V2 holding the same weights (mapped by hand)."""
    torch.manual_seed(seed)
    reference = timm.create_model(
        "swinv2_tiny_window8_256", pretrained_window_sizes=pretrained_window_sizes, drop_path_rate=0.0, **TINY
    )
    perturb(reference, seed).eval()
    mapped = {
        key.replace("layers.", "stages.").replace("head.fc.", "head."): value
        for key, value in reference.state_dict().items()
    }
    model = swinkit.create_model("swinv2_t", pretrained_window_sizes=pretrained_window_sizes, **TINY).eval()
    model.load_state_dict(mapped, strict=True)
    return reference, model


@pytest.mark.parametrize("pretrained", [(0, 0, 0, 0), (3, 3, 2, 6)])
def test_logits_and_stage_maps_equal_timm_on_the_same_weights(pretrained):
    reference, model = timm_twin(pretrained)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=1e-5)
        expected = reference.forward_intermediates(x, intermediates_only=True)
        got = model.forward_intermediates(x)
    assert [tuple(m.shape) for m in got] == [(2, 16, 16, 16), (2, 32, 8, 8), (2, 64, 4, 4), (2, 128, 2, 2)]
    for want, have in zip(expected, got):
        torch.testing.assert_close(have, want, rtol=0, atol=1e-5)


def test_a_window_8_model_with_pretrained_window_4_equals_timm_fine_tuned_at_window_8():
    torch.manual_seed(4)
    size = dict(TINY, img_size=128, window_size=8)
    reference = timm.create_model(
        "swinv2_tiny_window8_256", pretrained_window_sizes=(4, 4, 4, 2), drop_path_rate=0.0, **size
    )
    perturb(reference, 4).eval()
    model = swinkit.create_model("swinv2_t", pretrained_window_sizes=(4, 4, 4, 2), **size).eval()
    model.load_state_dict(
        {k.replace("layers.", "stages.").replace("head.fc.", "head."): v for k, v in reference.state_dict().items()}
    )
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=1e-5)


# A transcription of the V2 block, written from the paper and the brief, one token pair at a time
# where the model gathers: the reference the padding semantics (pad before the shift, mask on the
# padded map, window clamp) are checked against.
def _reference_bias(attn, window_h: int, window_w: int) -> torch.Tensor:
    pairs = []
    for i1 in range(window_h):
        for j1 in range(window_w):
            for i2 in range(window_h):
                for j2 in range(window_w):
                    offset = []
                    for delta, side in ((i1 - i2, window_h), (j1 - j2, window_w)):
                        norm = attn.pretrained_window - 1 if attn.pretrained_window else side - 1
                        value = delta / max(norm, 1) * 8
                        offset.append(math.copysign(math.log2(abs(value) + 1) / 3, value))
                    pairs.append(offset)
    table = attn.cpb_mlp(torch.tensor(pairs))  # (N*N, heads)
    n = window_h * window_w
    return (16 * torch.sigmoid(table)).view(n, n, -1).permute(2, 0, 1)


def _reference_block(block: SwinBlock, x: torch.Tensor) -> torch.Tensor:
    batch, height, width, channels = x.shape
    m = block.window_size
    wh, ww = min(m, height), min(m, width)
    shift = block.shift_size if min(height, width) > m else 0
    padded = F.pad(x, (0, 0, 0, (-width) % ww, 0, (-height) % wh))  # pad first, then shift
    hp, wp = padded.shape[1], padded.shape[2]
    shifted = torch.roll(padded, (-shift, -shift), (1, 2))
    windows = shifted.view(batch, hp // wh, wh, wp // ww, ww, channels).permute(0, 1, 3, 2, 4, 5)
    windows = windows.reshape(-1, wh * ww, channels)
    attn = block.attn
    qkv = windows @ attn.qkv.weight.T + torch.cat([attn.q_bias, torch.zeros_like(attn.q_bias), attn.v_bias])
    q, k, v = qkv.view(windows.shape[0], wh * ww, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    cosine = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
    logits = cosine * torch.exp(torch.clamp(attn.logit_scale, max=math.log(100))) + _reference_bias(attn, wh, ww)
    if shift:  # sub-window labels of the padded, shifted map
        rows = torch.tensor([0 if i < hp - m else 1 if i < hp - shift else 2 for i in range(hp)])
        cols = torch.tensor([0 if j < wp - m else 1 if j < wp - shift else 2 for j in range(wp)])
        labels = (rows[:, None] * 3 + cols[None, :]).view(1, hp // wh, wh, wp // ww, ww).permute(0, 1, 3, 2, 4)
        labels = labels.reshape(-1, wh * ww)
        mask = (labels[:, :, None] != labels[:, None, :]).float() * -100.0
        logits = (logits.view(batch, -1, attn.num_heads, wh * ww, wh * ww) + mask[None, :, None]).flatten(0, 1)
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(windows.shape[0], wh * ww, channels)
    out = attn.proj(out).view(batch, hp // wh, wp // ww, wh, ww, channels).permute(0, 1, 3, 2, 4, 5)
    out = torch.roll(out.reshape(batch, hp, wp, channels), (shift, shift), (1, 2))[:, :height, :width]
    x = x + block.norm1(out)  # res-post-norm
    return x + block.norm2(block.mlp.fc2(F.gelu(block.mlp.fc1(x))))


@pytest.mark.parametrize(
    ("size", "shift", "pretrained"),
    [((9, 13), 2, 0), ((8, 8), 2, 0), ((7, 11), 0, 0), ((3, 10), 2, 0), ((9, 13), 2, 3), ((2, 2), 2, 6)],
)
def test_a_v2_block_at_any_size_equals_the_transcription(size, shift, pretrained):
    torch.manual_seed(1)
    block = SwinBlock(12, 3, 4, shift, 4.0, True, 0.0, 0.0, 0.0, 1e-5, version=2, pretrained_window=pretrained)
    perturb(block, 1, scale=0.3).eval()
    x = torch.randn(2, *size, 12)
    with torch.no_grad():
        torch.testing.assert_close(block(x), _reference_block(block, x), rtol=0, atol=2e-5)


def test_any_input_size_and_channel_count():
    model = tiny_v2(in_chans=1)
    with torch.no_grad():
        for size in [(64, 64), (33, 47), (4, 4), (17, 130)]:
            assert model(torch.randn(2, 1, *size)).shape == (2, 7)
    with pytest.raises(ValueError, match="input channels"):
        model(torch.randn(1, 3, 64, 64))


def test_native_parameter_names_and_shapes_with_no_buffers():
    model = swinkit.create_model("swinv2_t", **TINY)
    state = model.state_dict()
    assert list(model.buffers()) == [] and set(state) == {name for name, _ in model.named_parameters()}
    block = {k.removeprefix("stages.1.blocks.0."): tuple(v.shape) for k, v in state.items() if ".1.blocks.0." in k}
    assert block == {
        "norm1.weight": (32,),
        "norm1.bias": (32,),
        "attn.qkv.weight": (96, 32),
        "attn.q_bias": (32,),
        "attn.v_bias": (32,),
        "attn.logit_scale": (2, 1, 1),
        "attn.cpb_mlp.0.weight": (512, 2),
        "attn.cpb_mlp.0.bias": (512,),
        "attn.cpb_mlp.2.weight": (2, 512),
        "attn.proj.weight": (32, 32),
        "attn.proj.bias": (32,),
        "norm2.weight": (32,),
        "norm2.bias": (32,),
        "mlp.fc1.weight": (128, 32),
        "mlp.fc1.bias": (128,),
        "mlp.fc2.weight": (32, 128),
        "mlp.fc2.bias": (32,),
    }
    merging = {k.removeprefix("stages.1.downsample."): tuple(v.shape) for k, v in state.items() if "1.downsample" in k}
    assert merging == {"reduction.weight": (32, 64), "norm.weight": (32,), "norm.bias": (32,)}
    assert not any("downsample" in k for k in state if k.startswith("stages.0."))
    outside = {k for k in state if not k.startswith("stages.")}
    parts = ("patch_embed.proj", "patch_embed.norm", "norm", "head")
    assert outside == {f"{part}.{kind}" for part in parts for kind in ("weight", "bias")}
    # Version 1 keeps its names: a bias table, a qkv bias, no V2 parameter.
    v1 = swinkit.create_model("swin_t", **TINY).state_dict()
    assert "stages.0.blocks.0.attn.relative_position_bias_table" in v1 and "stages.0.blocks.0.attn.qkv.bias" in v1
    assert not any(name in key for key in v1 for name in ("logit_scale", "cpb_mlp", "q_bias"))


def test_initialisation_follows_the_official_code():
    torch.manual_seed(0)
    model = swinkit.create_model("swinv2_t", **TINY)
    for stage in model.stages:
        for block in stage.blocks:
            for norm in (block.norm1, block.norm2):  # res-post-norms start at zero
                assert norm.weight.eq(0).all() and norm.bias.eq(0).all()
            attn = block.attn
            assert torch.equal(attn.logit_scale, torch.full_like(attn.logit_scale, math.log(10)))
            assert attn.q_bias.eq(0).all() and attn.v_bias.eq(0).all()
            assert attn.cpb_mlp[0].bias.eq(0).all()
            assert 0.015 < attn.cpb_mlp[0].weight.std() < 0.025  # trunc_normal(std 0.02), as every Linear
        if not isinstance(stage.downsample, nn.Identity):
            assert stage.downsample.norm.weight.eq(1).all()
    # Every block is the identity at initialisation: the stage maps are the merged embeddings.
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        embedded = model.patch_embed(x)
        torch.testing.assert_close(model.stages[0](embedded), embedded)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variants_have_the_published_parameter_counts_and_settings(name):
    params, size, window, pretrained, classes, timm_name = VARIANTS[name]
    model = swinkit.create_model(name, device="meta")
    assert sum(p.numel() for p in model.parameters()) == params
    config = model.config
    assert (config.version, config.img_size, config.window_size) == (2, (size, size), window)
    assert (config.pretrained_window_sizes, config.num_classes) == (pretrained, classes)
    assert swinkit.get_config(timm_name) == config


@pytest.mark.parametrize("name", list(PUBLISHED_PARAMS))
def test_parameter_counts_with_1000_classes_equal_the_brief(name):
    model = swinkit.create_model(name, device="meta", num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED_PARAMS[name]


def test_every_timm_swinv2_name_is_an_alias():
    names = [name for name in timm.list_models("swinv2_*") if not name.startswith("swinv2_cr")]
    deprecated = ["swinv2_base_window12_192_22k", "swinv2_large_window12to24_192to384_22kft1k"]
    assert len(names) == 12
    for name in names + deprecated:
        assert name in swinkit.list_models(include_aliases=True)
    for name in ("swinv2_tiny_window16_256", "swinv2_base_window12_192", "swinv2_large_window12to24_192to384"):
        reference = timm.create_model(name, device="meta")
        model = swinkit.create_model(name, device="meta")
        assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())
        assert model.num_classes == reference.num_classes
    v2 = [name for name in swinkit.list_models() if name.startswith("swinv2_")]
    assert v2 == list(VARIANTS)


@pytest.mark.parametrize("name", list(PUBLISHED_GMACS))
def test_flops_are_within_one_percent_of_timms_multiply_adds(name):
    count = swinkit.count_flops(name)
    assert count.gflops == pytest.approx(PUBLISHED_GMACS[name], rel=0.01)
    assert count.total == sum(count.by_term.values())


def test_v2_flop_terms():
    count = swinkit.count_flops("swinv2_t")
    stage1, stage4 = count.by_stage["stage1"], count.by_stage["stage4"]
    hw, c = 64 * 64, 96
    assert stage1["projections"] == 2 * 4 * hw * c * c
    assert stage1["attention"] == 2 * 2 * 8 * 8 * hw * c  # cosine attention: 2M^2hwC as Eq. 2
    assert stage1["position_bias"] == 2 * 15 * 15 * (2 * 512 + 512 * 3)
    assert stage4["position_bias"] == 2 * 15 * 15 * (2 * 512 + 512 * 24)
    # Window 16 on stage 4's 8x8 map: the window in use is 8, so is the bias MLP's grid.
    assert swinkit.count_flops("swinv2_t_w16").by_stage["stage4"]["position_bias"] == stage4["position_bias"]
    assert swinkit.count_flops("swin_t").by_term["position_bias"] == 0


def test_log_spaced_coordinates_and_offset_index():
    coords = ops.log_spaced_coordinates(8, 8)
    assert coords.shape == (15 * 15, 2)
    # Offset (7, -7) of a window 8: 7/7*8 = 8 -> log2(9)/3; row-major from (-7, -7).
    torch.testing.assert_close(coords[14 * 15 + 0], torch.tensor([math.log2(9) / 3, -math.log2(9) / 3]))
    torch.testing.assert_close(coords[7 * 15 + 7], torch.zeros(2))
    # A pretrained window 4 normalises by 3: offset 7 of window 8 -> 7/3*8.
    fine_tuned = ops.log_spaced_coordinates(8, 8, 4)
    assert fine_tuned[14 * 15 + 7, 0].item() == pytest.approx(math.log2(7 / 3 * 8 + 1) / 3)
    # A clamped, non-square window normalises each side by its own length.
    narrow = ops.log_spaced_coordinates(2, 4)
    assert narrow.shape == (3 * 7, 2)
    torch.testing.assert_close(narrow.abs().amax(0), torch.full((2,), math.log2(9) / 3))
    index = ops.relative_offset_index(2, 4)
    assert index.shape == (8, 8) and index.min() == 0 and index.max() == 3 * 7 - 1
    assert index[0, 7] == (0 - 1 + 1) * 7 + (0 - 3 + 3)  # token (0,0) against (1,3): offset (-1, -3)


def test_cosine_attention_ignores_query_and_key_norms_and_clamps_the_scale():
    torch.manual_seed(2)
    q, k, v = torch.randn(3, 2, 2, 5, 4).unbind(0)
    additive = torch.zeros(1, 2, 5, 5)
    scale = torch.full((2, 1, 1), math.log(10))
    out = ops.scaled_cosine_attention(q, k, v, scale, additive)
    torch.testing.assert_close(ops.scaled_cosine_attention(q * 7, k * 0.1, v, scale, additive), out)
    probs = ops.scaled_cosine_attention_probs(q, k, torch.full((2, 1, 1), 10.0), additive)
    clamped = ops.scaled_cosine_attention_probs(q, k, torch.full((2, 1, 1), math.log(100)), additive)
    torch.testing.assert_close(probs, clamped)
    cosine = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
    torch.testing.assert_close(probs, (100 * cosine).softmax(-1))


def test_window_transfer_needs_no_resize_and_keeps_the_pretrained_bias():
    small = tiny_v2(seed=3)
    large = swinkit.create_model("swinv2_t", **(TINY | {"window_size": 8, "pretrained_window_sizes": (4, 4, 4, 4)}))
    large.load_state_dict(small.state_dict(), strict=True)  # no parameter depends on the window
    large.eval()
    with torch.no_grad():
        small_bias = small.stages[0].blocks[0].attn.additive(small.stages[0].blocks[0].layout(16, 16))
        large_bias = large.stages[0].blocks[0].attn.additive(large.stages[0].blocks[0].layout(16, 16))
    # Token (0,0) against (i,j), i,j < 4: the same offsets give the same bias in both windows.
    small_rows = small_bias[0, :, 0].view(-1, 4, 4)
    large_rows = large_bias[0, :, 0].view(-1, 8, 8)[:, :4, :4]
    torch.testing.assert_close(large_rows, small_rows)
    # Beyond them the bias MLP extrapolates: offsets up to 7 normalised by 4 - 1.
    with torch.no_grad():
        torch.testing.assert_close(large_bias[0], _reference_bias(large.stages[0].blocks[0].attn, 8, 8))


def test_config_validation():
    with pytest.raises(ValueError, match="version must be 1"):
        swinkit.SwinConfig(version=3)
    with pytest.raises(ValueError, match="Swin V2 only"):
        swinkit.SwinConfig(pretrained_window_sizes=(7, 7, 7, 7))
    with pytest.raises(ValueError, match="one non-negative window per stage"):
        swinkit.SwinConfig(version=2, pretrained_window_sizes=(12, 12, 6))
    assert swinkit.SwinConfig(version=2, pretrained_window_sizes=(0, 0, 0, 0)).pretrained_window_sizes == ()
    config = swinkit.get_config("swinv2_b_192to256")
    assert config.to_dict()["pretrained_window_sizes"] == [12, 12, 12, 6] and config.to_dict()["version"] == 2
    assert swinkit.SwinConfig(**{**config.to_dict(), "labels": ()}) == config


def test_the_bias_is_cached_in_evaluation_and_recomputed_when_it_must_be():
    model = tiny_v2()
    attn = model.stages[0].blocks[1].attn
    layout = model.stages[0].blocks[1].layout(16, 16)
    with torch.no_grad():
        first = attn.additive(layout)
        assert attn.additive(layout) is first  # cached
        attn.cpb_mlp[2].weight.mul_(2)  # an in-place change invalidates it
        changed = attn.additive(layout)
    assert changed is not first and (changed - first).abs().max() > 1e-3
    recorded = attn.additive(layout)  # gradients recorded: computed, and they reach the MLP
    assert recorded is not changed and recorded.requires_grad
    recorded.sum().backward()
    assert attn.cpb_mlp[0].weight.grad.abs().sum() > 0
    calls = []
    handle = attn.cpb_mlp[0].register_forward_hook(lambda m, i, o: calls.append(1))
    with torch.no_grad():  # a hooked bias MLP is called every time
        attn.additive(layout)
        attn.additive(layout)
    handle.remove()
    assert len(calls) == 2


@pytest.mark.parametrize("name", ["swin_t", "swinv2_t"])
def test_a_bias_cached_under_inference_mode_serves_a_later_pass_with_gradients(name):
    # Frozen position-bias parameters (as under LoRA) keep the cache on while gradients are recorded.
    torch.manual_seed(5)
    model = swinkit.create_model(name, **(TINY | {"drop_path_rate": 0.0})).eval()
    for key, parameter in model.named_parameters():
        parameter.requires_grad_(not ("cpb_mlp" in key or "relative_position_bias_table" in key))
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        expected = model(x)
    logits = model(x)
    logits.sum().backward()
    torch.testing.assert_close(logits.detach(), expected)
    assert model.patch_embed.proj.weight.grad.abs().sum() > 0
