"""The Swin UperNet segmenter: shapes for every kind of backbone, config, loss, sliding-window inference,
and the tools people apply to models (PEFT LoRA, hooks, dynamic quantization, FX), each with the real tool."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import swinkit
from swinkit.model import SegmenterConfig, SwinUperNet, segmentation_loss
from swinkit.model.upernet import AdaptiveAvgPool, sliding_window_logits, window_starts

TINY = {"embed_dim": 16, "depths": (2, 2, 2, 2), "num_heads": (1, 2, 2, 4), "window_size": 4, "img_size": 64}
HEADS = {"num_classes": 4, "channels": 16, "aux_channels": 8}


def tiny(name: str = "upernet_swin_t", seed: int = 0, **changes) -> SwinUperNet:
    torch.manual_seed(seed)
    settings = ({} if "atto" in name else TINY) | HEADS | {"drop_path_rate": 0.0} | changes
    model = swinkit.create_model(name, **settings)
    with torch.no_grad():  # off the initial values, so that no term hides behind a zero
        for parameter in model.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    return model.eval()


@pytest.mark.parametrize(
    ("name", "stages", "norms"),
    [("upernet_swin_t", 4, True), ("upernet_swinv2_t", 4, False), ("upernet_swin_atto", 3, True)],
)
def test_logits_at_the_input_resolution_for_every_kind_of_backbone(name, stages, norms):
    model = tiny(name)
    dims = model.config.backbone.stage_dims
    assert len(model.head.laterals) == stages - 1 and len(dims) == stages
    assert (model.stage_norms is not None) == norms
    # The auxiliary head reads the second to last stage (stage 3 of four, stage 2 of three).
    assert model.aux_head.convs[0].conv.in_channels == dims[-2]
    for size in ((64, 64), (45, 77)):
        pixels = torch.randn(2, 3, *size)
        with torch.no_grad():
            logits, aux = model.forward_with_aux(pixels)
            assert torch.equal(model(pixels), logits)
            trained = model.train()(pixels)  # training: both heads (BatchNorm on batch statistics)
            model.eval()
        assert isinstance(trained, tuple) and [t.shape for t in trained] == [logits.shape, aux.shape]
        assert logits.shape == aux.shape == (2, 4, *size)
        features = model.forward_features(pixels)
        patch = model.config.backbone.patch_size
        assert [tuple(f.shape[1:]) for f in features] == [
            (dims[i], -(-size[0] // (patch * 2**i)), -(-size[1] // (patch * 2**i))) for i in range(stages)
        ]


def test_registered_names_build_the_published_sizes():
    names = swinkit.model.registry.TASK_MODELS
    assert {"upernet_swin_t", "upernet_swin_s", "upernet_swin_b", "upernet_swin_l", "upernet_swinv2_t"} <= set(names)
    assert {"upernet_swin_atto", "upernet_swin_nano"} <= set(names)
    # UperNet Swin-T/S/B on ADE20K (150 classes): 60M, 81M, 121M parameters (Swin paper, Table 3).
    for name, millions in (("upernet_swin_t", 60), ("upernet_swin_s", 81), ("upernet_swin_b", 121)):
        model = swinkit.create_model(name, num_classes=150, device="meta")
        assert round(sum(p.numel() for p in model.parameters()) / 1e6) == millions
        assert model.config.img_size == (512, 512) and model.config.backbone.fixed_windows
        assert model.config.aux_weight == 0.4 and model.config.ignore_index == 255 and model.config.channels == 512
    assert swinkit.create_model("upernet_swin_t", device="meta").config.backbone.drop_path_rate == 0.3


def test_config_validates_and_round_trips_through_json():
    config = tiny().config
    assert SegmenterConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="aux_stage 4 is not a stage of a 4-stage backbone"):
        config.replace(aux_stage=4)
    with pytest.raises(ValueError, match="labels name 2 classes but num_classes is 4"):
        config.replace(labels=("a", "b"))
    with pytest.raises(ValueError, match=r"unknown segmenter setting\(s\) \['head_width'\]"):
        swinkit.create_model("upernet_swin_t", head_width=3)
    with pytest.raises(ValueError, match="unknown backbone config field"):
        SegmenterConfig.from_dict({**config.to_dict(), "backbone": {**config.backbone.to_dict(), "depth": 3}})
    assert SegmenterConfig(backbone=swinkit.get_config("swin_t")).backbone.num_classes == 0
    without = tiny(aux_channels=0)
    assert without.aux_head is None
    logits, aux = without.forward_with_aux(torch.randn(1, 3, 32, 32))
    assert aux is None and logits.shape == (1, 4, 32, 32)


def test_loss_is_the_mean_cross_entropy_over_labelled_pixels_plus_weighted_auxiliary():
    torch.manual_seed(4)
    logits, aux = torch.randn(2, 4, 6, 7), torch.randn(2, 4, 6, 7)
    labels = torch.randint(0, 4, (2, 6, 7))
    labels[0, :2] = 255
    labelled = labels != 255

    def by_hand(scores: torch.Tensor) -> torch.Tensor:
        picked = -scores.log_softmax(1).gather(1, labels.clamp(max=3)[:, None])[:, 0]
        return picked[labelled].sum() / labelled.sum()

    expected = by_hand(logits) + 0.4 * by_hand(aux)
    torch.testing.assert_close(segmentation_loss(logits, labels, aux), expected)
    torch.testing.assert_close(tiny().loss((logits, aux), labels), expected)
    torch.testing.assert_close(segmentation_loss(logits, labels), by_hand(logits))
    with pytest.raises(ValueError, match=r"labels must be \(B, H, W\) = \(2, 6, 7\)"):
        segmentation_loss(logits, labels[:, :5])
    with pytest.raises(ValueError, match="integer class indices"):
        segmentation_loss(logits, labels.float())


@pytest.mark.parametrize(("size", "scale"), [((7, 9), 3), ((16, 11), 6), ((5, 5), 2), ((3, 4), 6), ((8, 8), 1)])
def test_adaptive_pooling_has_torch_bins(size, scale):
    x = torch.randn(2, 3, *size)
    torch.testing.assert_close(AdaptiveAvgPool(scale)(x), nn.AdaptiveAvgPool2d(scale)(x), rtol=1e-6, atol=1e-6)


def test_window_starts_cover_the_axis_and_end_at_the_border():
    assert window_starts(100, 64, 40) == [0, 36]
    assert window_starts(200, 64, 40) == [0, 40, 80, 120, 136]
    assert window_starts(64, 64, 40) == [0] and window_starts(30, 64, 40) == [0]
    assert window_starts(128, 64, 64) == [0, 64]


def test_sliding_window_of_a_pointwise_model_is_whole_image_inference():
    """A 1x1 convolution sees one pixel: every window gives each pixel the same logits, so the average is exact."""
    torch.manual_seed(5)
    pointwise = nn.Conv2d(3, 4, 1)
    pixels = torch.randn(2, 3, 70, 93)
    with torch.no_grad():
        torch.testing.assert_close(sliding_window_logits(pointwise, pixels, (32, 40), (20, 25), 4), pointwise(pixels))


def reference_slide(model: nn.Module, pixels: torch.Tensor, crop: int, stride: int) -> torch.Tensor:
    """mmsegmentation's 'slide' inference written out: grid counts, windows moved back inside, padded sums."""
    _, _, height, width = pixels.shape
    rows = max(height - crop + stride - 1, 0) // stride + 1
    cols = max(width - crop + stride - 1, 0) // stride + 1
    total = torch.zeros(pixels.shape[0], 4, height, width)
    count = torch.zeros(1, 1, height, width)
    for row in range(rows):
        for col in range(cols):
            y2, x2 = min(row * stride + crop, height), min(col * stride + crop, width)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            logits = model(pixels[:, :, y1:y2, x1:x2])
            total += F.pad(logits, (x1, width - x2, y1, height - y2))
            count[:, :, y1:y2, x1:x2] += 1
    return total / count


def test_sliding_window_averages_overlapping_crops_as_mmsegmentation():
    model = tiny()
    pixels = torch.randn(1, 3, 100, 70)
    with torch.no_grad():
        got = model.sliding_window(pixels, crop=64, stride=40)
        expected = reference_slide(model, pixels, 64, 40)
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
        assert not torch.allclose(got, model(pixels), atol=1e-3)  # the crops do see less than the whole
        # An image no larger than the crop is one window: whole-image inference.
        small = torch.randn(1, 3, 48, 60)
        torch.testing.assert_close(model.sliding_window(small, crop=64), model(small), rtol=0, atol=0)
    predicted = model.train().predict(pixels, crop=(64, 64), stride=40)
    assert model.training and predicted.dtype == torch.int64 and predicted.shape == (1, 100, 70)
    assert torch.equal(predicted, expected.argmax(1))
    with pytest.raises(ValueError, match=r"stride \(70, 70\) must not exceed crop \(64, 64\)"):
        model.sliding_window(pixels, crop=64, stride=70)


def lora_model() -> "nn.Module":
    peft = pytest.importorskip("peft")
    config = peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=["qkv"], init_lora_weights=False, modules_to_save=["classifier"]
    )
    return peft.get_peft_model(tiny(), config)


def test_lora_on_the_backbone_qkv_changes_logits_and_trains_only_adapters_and_classifiers():
    torch.manual_seed(6)
    pixels, labels = torch.randn(2, 3, 64, 64), torch.randint(0, 4, (2, 64, 64))
    with torch.no_grad():
        plain = tiny()(pixels)
    adapted = lora_model()
    assert sum("lora_A" in name for name, _ in adapted.named_parameters()) == 8  # every block's qkv
    with torch.no_grad():
        assert (adapted.eval()(pixels) - plain).abs().max() > 1e-3
    adapted.train()
    adapted.base_model.model.loss(adapted(pixels), labels).backward()  # training: (logits, aux_logits)
    moved = {name for name, p in adapted.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert moved and all("lora_" in name or "classifier" in name for name in moved)
    assert any("lora_B" in name for name in moved)


def test_every_head_layer_fires_its_forward_hook():
    model = tiny()
    calls: Counter[str] = Counter()
    handles = [
        module.register_forward_hook(lambda m, i, o, name=name: calls.update([name]))
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.LayerNorm, nn.Linear))
    ]
    with torch.no_grad():
        model.forward_with_aux(torch.randn(1, 3, 64, 64))
    for handle in handles:
        handle.remove()
    assert calls["head.classifier"] == calls["aux_head.classifier"] == calls["stage_norms.3"] == 1
    assert calls["head.ppm.branches.3.conv.norm"] == calls["head.fuse.act"] == 1
    assert calls["backbone.stages.2.blocks.1.attn.qkv"] == 1
    assert not calls["backbone.norm"]  # the classifier's final norm is not part of the segmenter
    assert len(calls) == len(handles)


def test_dynamic_quantization_swaps_the_backbone_linears_and_stays_close():
    model = tiny()
    quantized = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    assert type(quantized.backbone.stages[1].blocks[0].attn.qkv).__module__.startswith("torch.ao.nn.quantized")
    pixels = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        reference, got = model(pixels), quantized(pixels)
    error = (got - reference).abs().max().item()
    assert 0 < error < 0.1 * reference.abs().max().item()


def test_fx_feature_extraction_traces_the_head():
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

    model = tiny()
    train_nodes, eval_nodes = get_graph_node_names(model)
    assert {"head.ppm.branches.3.conv.conv", "head.fuse.conv", "head.classifier", "stage_norms.3"} <= set(eval_nodes)
    assert "aux_head.classifier" in train_nodes and "aux_head.classifier" not in eval_nodes  # training's second output
    extractor = create_feature_extractor(model, return_nodes={"head.fuse.act": "fused", "stage_norms.1": "stage1"})
    pixels = torch.randn(2, 3, 52, 76)
    captured = {}
    handle = model.head.fuse.register_forward_hook(lambda m, i, o: captured.update(fused=o))
    with torch.no_grad():
        features = extractor(pixels)
        expected_stage = model.forward_features(pixels)[1]
        model(pixels)
    handle.remove()
    torch.testing.assert_close(features["fused"], captured["fused"], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(features["stage1"].permute(0, 3, 1, 2), expected_stage, rtol=1e-6, atol=1e-6)
