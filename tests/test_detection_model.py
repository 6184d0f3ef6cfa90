"""The Swin detectors: pyramid levels, stage norms, frozen stages, config, registry, checkpoint loading, tools."""

from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection import FasterRCNN, MaskRCNN

from swinkit import save_pretrained
from swinkit.checkpoints.detection import create_detector, load_backbone, load_detector, save_detector
from swinkit.checkpoints.errors import CheckpointError
from swinkit.model import SwinTransformer, create_model, get_config
from swinkit.model.detection import DETECTOR_NAMES, DetectorConfig

TINY_SWIN = {"embed_dim": 16, "depths": (1, 1, 2, 1), "num_heads": (1, 2, 4, 8), "window_size": 4}
SMALL_HEADS = {
    "num_classes": 3,
    "min_size": 64,
    "max_size": 64,
    "out_channels": 32,
    "rpn_proposals_train": 32,
    "rpn_proposals_test": 16,
    "box_detections_per_img": 8,
}


def tiny(name: str = "fasterrcnn_swin_t", swin: dict | None = None, **fields) -> FasterRCNN:
    torch.manual_seed(0)
    return create_model(name, backbone=swin or TINY_SWIN, **(SMALL_HEADS | fields))


def targets(masks: bool = False) -> list[dict[str, torch.Tensor]]:
    target = {"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0]]), "labels": torch.tensor([2])}
    if masks:
        target["masks"] = torch.zeros(1, 64, 64, dtype=torch.uint8)
        target["masks"][0, 6:40, 4:30] = 1
    return [target]


def fpn_inputs(model: FasterRCNN, image: torch.Tensor) -> dict[str, torch.Tensor]:
    seen = {}
    handle = model.backbone.fpn.register_forward_pre_hook(lambda module, args: seen.update(args[0]))
    model.backbone(image)
    handle.remove()
    return seen


@pytest.mark.parametrize(
    "name, swin, strides",
    [
        ("fasterrcnn_swin_t", TINY_SWIN, (4, 8, 16, 32, 64)),
        ("fasterrcnn_swinv2_t", TINY_SWIN, (4, 8, 16, 32, 64)),
        ("maskrcnn_swin_atto", {"embed_dim": 16, "num_heads": (1, 2, 4)}, (2, 4, 8, 16)),
    ],
)
def test_the_pyramid_has_a_level_per_stage_plus_the_pooled_one(name, swin, strides):
    model = tiny(name, swin).eval()
    features = model.backbone(torch.rand(2, 3, 64, 96))
    assert list(features) == [str(i) for i in range(len(strides) - 1)] + ["pool"]
    for level, stride in zip(features.values(), strides):
        assert level.shape == (2, 32, -(-64 // stride), -(-96 // stride))
    patch = model.config.backbone.patch_size
    assert model.rpn.anchor_generator.sizes == tuple((8 * patch * 2**i,) for i in range(len(strides)))
    assert model.backbone.out_channels == 32


def test_each_stage_output_goes_through_its_own_layer_norm():
    model = tiny().eval()
    for norm in model.backbone.stage_norms:
        torch.nn.init.normal_(norm.weight)
        torch.nn.init.normal_(norm.bias)
    image = torch.rand(1, 3, 64, 64)
    seen = fpn_inputs(model, image)
    body = model.backbone.body
    x = body.patch_embed(image)
    for index, (stage, norm) in enumerate(zip(body.stages, model.backbone.stage_norms)):
        x = stage(x)
        expected = F.layer_norm(x, x.shape[-1:], norm.weight, norm.bias, 1e-5).permute(0, 3, 1, 2)
        torch.testing.assert_close(seen[str(index)], expected)
    plain = tiny(stage_norms=False).eval()
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in plain.backbone.stage_norms)
    torch.testing.assert_close(fpn_inputs(plain, image)["3"], plain.backbone.body.forward_intermediates(image)[3])


def test_frozen_stages_get_no_gradient_and_stay_in_evaluation_mode():
    model = tiny(frozen_stages=2, swin=TINY_SWIN | {"drop_path_rate": 0.5}).train()
    body = model.backbone.body
    assert not body.patch_embed.training and not body.stages[1].training and body.stages[2].training
    losses = model([torch.rand(3, 64, 64)], targets())
    sum(losses.values()).backward()
    frozen = [body.patch_embed, body.stages[0], body.stages[1]]
    assert all(p.grad is None and not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.grad is not None for p in body.stages[2].parameters())
    assert all(p.requires_grad for p in tiny(frozen_stages=-1).parameters())
    with pytest.raises(ValueError, match="frozen_stages must be -1 .* up to 4"):
        tiny(frozen_stages=5)


@pytest.mark.parametrize("name, parts", [("fasterrcnn_swin_t", 4), ("maskrcnn_swin_t", 5)])
def test_training_returns_torchvisions_losses_and_evaluation_its_detections(name, parts):
    model = tiny(name)
    assert isinstance(model, MaskRCNN if "mask" in name else FasterRCNN)
    losses = model.train()([torch.rand(3, 64, 64)], targets(masks=parts == 5))
    assert len(losses) == parts and all(torch.isfinite(v) and v > 0 for v in losses.values())
    (detections,) = model.eval()([torch.rand(3, 64, 80)])
    assert detections["boxes"].shape[1] == 4 and len(detections["boxes"]) <= 8
    assert set(detections["labels"].tolist()) <= {1, 2}
    if parts == 5:
        assert detections["masks"].shape[1:] == (1, 64, 80)


def test_every_registered_name_builds_its_head_and_backbone():
    named = {"fasterrcnn_swin_t", "maskrcnn_swin_t", "maskrcnn_swin_b", "maskrcnn_swinv2_s", "fasterrcnn_swin_nano"}
    assert named <= set(DETECTOR_NAMES)
    for name in DETECTOR_NAMES:
        model = create_model(name, device="meta")
        variant = name.split("_", 1)[1]
        assert isinstance(model, MaskRCNN) == name.startswith("maskrcnn")
        expected = get_config(variant)
        assert model.config.backbone.depths == expected.depths and model.config.backbone.version == expected.version
        assert model.config.num_classes == 91


def test_the_config_round_trips_through_json_and_refuses_impossible_settings():
    config = tiny("maskrcnn_swin_t", labels=("cat", "dog"), category_ids=(3, 7), anchor_sizes=[[16, 24]] * 5).config
    again = DetectorConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.foreground_ids == (3, 7) and again.masks
    assert DetectorConfig(backbone=config.backbone, num_classes=4).foreground_ids == (1, 2, 3)
    with pytest.raises(ValueError, match="one tuple per pyramid level: 5"):
        config.replace(anchor_sizes=((32,), (64,)))
    with pytest.raises(ValueError, match="labels has 1 entries .* 2 foreground classes"):
        config.replace(labels=("cat",))
    with pytest.raises(ValueError, match="unknown keys \\['colour'\\]"):
        DetectorConfig.from_dict({**config.to_dict(), "colour": 1})


def test_a_saved_detector_loads_back_with_the_same_detections(tmp_path):
    model = tiny("maskrcnn_swin_t", labels=("cat", "dog")).eval()
    image = torch.rand(3, 64, 64)
    save_detector(model, tmp_path / "det")
    again = load_detector(tmp_path / "det").eval()
    assert again.config == model.config
    features, reloaded = model.backbone(image[None]), again.backbone(image[None])
    for key in features:
        torch.testing.assert_close(reloaded[key], features[key], rtol=0, atol=0)


def test_the_backbone_loads_a_classification_checkpoint(tmp_path):
    classifier = SwinTransformer(get_config("swin_t", num_classes=5, **TINY_SWIN))
    save_pretrained(classifier, tmp_path / "cls", format="hf")
    model = tiny()
    report = load_backbone(model, tmp_path / "cls")
    body = model.backbone.body.state_dict()
    for key, tensor in classifier.state_dict().items():
        if not key.startswith(("head.", "norm.")):
            torch.testing.assert_close(body[key], tensor)
    assert report.format == "hf"
    assert report.unused == ["head.bias", "head.weight", "norm.bias", "norm.weight"]
    assert {"backbone.stage_norms.0.weight", "backbone.fpn.inner_blocks.0.0.weight"} <= set(report.not_loaded)
    assert "backbone.body.stages.0.blocks.0.attn.qkv.weight" in report.loaded
    assert not any(key.startswith("backbone.body.") for key in report.not_loaded)


def official_detection_state_dict(model: FasterRCNN) -> dict[str, torch.Tensor]:
    """The official detection repository's names for a swinkit detector's backbone, renamed by hand."""
    renamed = {}
    for key, tensor in model.backbone.state_dict().items():
        if key.startswith("stage_norms."):
            renamed["backbone." + key.replace("stage_norms.", "norm", 1)] = tensor
        elif key.startswith("body."):
            inner = key.removeprefix("body.")
            merge = re.match(r"stages\.(\d+)\.downsample\.(.+)", inner)
            if merge:
                inner = f"layers.{int(merge[1]) - 1}.downsample.{merge[2]}"
            renamed["backbone." + inner.replace("stages.", "layers.", 1)] = tensor
    renamed["backbone.layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(16, 16, dtype=torch.long)
    renamed["neck.lateral_convs.0.conv.weight"] = torch.zeros(256, 16, 1, 1)
    renamed["rpn_head.rpn_conv.weight"] = torch.zeros(256, 256, 3, 3)
    renamed["roi_head.bbox_head.fc_cls.weight"] = torch.zeros(81, 1024)
    return renamed


def test_the_backbone_loads_an_official_detection_checkpoint(tmp_path):
    source = tiny("maskrcnn_swin_t").eval()
    for norm in source.backbone.stage_norms:
        torch.nn.init.normal_(norm.weight)
    path = tmp_path / "mask_rcnn_swin_tiny_patch4_window7.pth"
    meta = {"CLASSES": ("person", "car"), "mmdet_version": "2.11.0", "epoch": 36}
    torch.save({"meta": meta, "state_dict": official_detection_state_dict(source)}, path)
    torch.manual_seed(1)
    model = create_detector(source.config, backbone_weights=path).eval()
    report = model.load_report
    assert report.format == "official-detection"
    neck, rpn, roi = "neck.lateral_convs.0.conv.weight", "rpn_head.rpn_conv.weight", "roi_head.bbox_head.fc_cls.weight"
    assert report.unused == [neck, roi, rpn]
    assert "backbone.stage_norms.3.bias" in report.loaded
    assert "backbone.fpn.layer_blocks.0.0.weight" in report.not_loaded
    image = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(fpn_inputs(model, image), fpn_inputs(source, image), rtol=0, atol=0)
    wider = tiny(swin=TINY_SWIN | {"embed_dim": 32, "num_heads": (2, 4, 8, 16)})
    with pytest.raises(CheckpointError, match="patch_embed.proj.weight has shape"):
        load_backbone(wider, path)


def test_lora_on_the_backbones_qkv_changes_the_features_and_hooks_see_every_block():
    peft = pytest.importorskip("peft")
    model = tiny().eval()
    image = torch.rand(1, 3, 64, 64)
    before = fpn_inputs(model, image)["3"]
    calls = []
    hooks = [
        block.attn.qkv.register_forward_hook(lambda module, args, out: calls.append(out.shape[-1]))
        for stage in model.backbone.body.stages
        for block in stage.blocks
    ]
    model.backbone(image)
    assert calls == [48, 96, 192, 192, 384]
    for hook in hooks:
        hook.remove()
    adapted = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["qkv"]))
    lora = [m for m in adapted.modules() if isinstance(m, peft.tuners.lora.LoraLayer)]
    assert len(lora) == 5
    trainable = [name for name, p in adapted.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    torch.testing.assert_close(fpn_inputs(model, image)["3"], before)
    for layer in lora:
        torch.nn.init.normal_(layer.lora_B["default"].weight)
    changed = fpn_inputs(model, image)["3"]
    assert (changed - before).abs().max() > 1e-3
    merged = adapted.merge_and_unload()
    torch.testing.assert_close(fpn_inputs(merged, image)["3"], changed, rtol=1e-4, atol=1e-4)
