"""The segmenter against transformers' UperNetForSemanticSegmentation (Swin and Swin V2 backbones), with
identical weights both ways, and the mmsegmentation / official Swin segmentation layouts."""

from __future__ import annotations

import re

import pytest
import torch

import swinkit
from swinkit.checkpoints import CheckpointError
from swinkit.checkpoints.segmentation import load_segmenter, save_segmenter

transformers = pytest.importorskip("transformers")

CLASSES = 5
SIZES = ((64, 64), (96, 96), (70, 100))  # the last is no multiple of 32
TOLERANCE = 1e-5
STAGES = ["stage1", "stage2", "stage3", "stage4"]


def perturb(model: torch.nn.Module, seed: int) -> None:
    """Move every parameter and BatchNorm statistic off its initial value."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.copy_(1.0 + torch.rand(tensor.shape, generator=generator))
            else:
                tensor.add_(0.05 * torch.randn(tensor.shape, generator=generator))


def reference(version: int, seed: int = 0) -> torch.nn.Module:
    """A tiny transformers UperNet with a Swin (V1) or Swin V2 backbone, weights perturbed, in eval mode."""
    backbone_class = transformers.SwinConfig if version == 1 else transformers.Swinv2Config
    # V2 fixes its windows from image_size at construction: 256 keeps every stage's window whole.
    backbone = backbone_class(
        image_size=64 if version == 1 else 256,
        embed_dim=16,
        depths=[2, 2, 2, 2],
        num_heads=[1, 2, 2, 4],
        window_size=4,
        drop_path_rate=0.0,
        out_features=STAGES,
    )
    config = transformers.UperNetConfig(
        backbone_config=backbone, hidden_size=16, auxiliary_channels=8, num_labels=CLASSES
    )
    torch.manual_seed(seed)
    model = transformers.UperNetForSemanticSegmentation(config)
    perturb(model, seed)
    return model.eval()


def inputs(size: tuple[int, int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(2, 3, *size, generator=generator)
    labels = torch.randint(0, CLASSES, (2, *size), generator=generator)
    labels[:, : size[0] // 4] = 255  # a band of unlabelled pixels
    labels[1, :, -3:] = 255
    return pixels, labels


def assert_same_outputs(ours: torch.nn.Module, theirs: torch.nn.Module, sizes=SIZES) -> None:
    for index, size in enumerate(sizes):
        pixels, labels = inputs(size, index)
        with torch.no_grad():
            expected = theirs(pixel_values=pixels, labels=labels)
            logits, aux = ours.forward_with_aux(pixels)
            loss = ours.loss((logits, aux), labels)
        assert logits.shape == (2, CLASSES, *size)
        assert (logits - expected.logits).abs().max() <= TOLERANCE, size
        assert (loss - expected.loss).abs() <= TOLERANCE, size


@pytest.fixture(scope="module", params=[1, 2], ids=["swin", "swinv2"])
def saved_reference(request, tmp_path_factory):
    model = reference(request.param)
    directory = tmp_path_factory.mktemp(f"upernet_v{request.param}")
    model.save_pretrained(directory)
    return request.param, model, directory


def test_transformers_checkpoint_loads_with_same_logits_and_loss(saved_reference):
    version, theirs, directory = saved_reference
    ours = swinkit.create_model(pretrained=str(directory)).eval()
    assert ours.config.backbone.version == version
    assert ours.load_report.format == "hf"
    assert not ours.load_report.missing and not ours.load_report.unexpected
    assert (ours.stage_norms is not None) == (version == 1)
    assert_same_outputs(ours, theirs)
    # In float64 the two agree to rounding: the fp32 differences are the order of operations, not the math.
    pixels, _ = inputs(SIZES[-1], 0)
    try:
        with torch.no_grad():
            difference = ours.double()(pixels.double()) - theirs.double()(pixel_values=pixels.double()).logits
    finally:
        ours.float(), theirs.float()
    assert difference.abs().max() <= 1e-10


def test_training_mode_loss_and_gradients_match(saved_reference):
    """BatchNorm on batch statistics, auxiliary loss included; the backbone's gradients agree too."""
    _, theirs, directory = saved_reference
    ours = swinkit.create_model(pretrained=str(directory))
    ours.train()
    theirs.train()
    pixels, labels = inputs((64, 64), 7)
    try:
        expected = theirs(pixel_values=pixels, labels=labels).loss
        loss = ours.loss(ours(pixels), labels)  # training mode: (logits, aux_logits)
        assert (loss - expected).abs() <= TOLERANCE
        expected.backward()
        loss.backward()
    finally:
        theirs.eval()
    patch = "backbone.swin.embeddings" if hasattr(theirs.backbone, "swin") else "backbone.embeddings"
    their_grad = theirs.get_submodule(patch + ".patch_embeddings.projection").weight.grad
    assert (ours.backbone.patch_embed.proj.weight.grad - their_grad).abs().max() <= 1e-4
    their_classifier = theirs.decode_head.classifier.weight.grad
    assert (ours.head.classifier.weight.grad - their_classifier).abs().max() <= 1e-5


@pytest.mark.parametrize("backbone", ["swin_t", "swinv2_t"])
def test_swinkit_segmenter_loads_into_transformers(tmp_path, backbone):
    ours = swinkit.create_model(
        "upernet_" + backbone,
        num_classes=CLASSES,
        embed_dim=16,
        depths=(2, 2, 2, 2),
        num_heads=(1, 2, 2, 4),
        window_size=4,
        img_size=256,
        channels=16,
        aux_channels=8,
        labels=[f"class {index}" for index in range(CLASSES)],
    )
    perturb(ours, 3)
    ours.eval()
    save_segmenter(ours, tmp_path, format="hf")
    theirs = transformers.UperNetForSemanticSegmentation.from_pretrained(tmp_path).eval()
    assert theirs.config.id2label[4] == "class 4"
    assert_same_outputs(ours, theirs)


def to_mmseg(state_dict: dict[str, torch.Tensor], official: bool) -> dict[str, torch.Tensor]:
    """transformers' UperNet (Swin V1) renamed to mmsegmentation's names by this test's own table.

    mmsegmentation's Swin (``official=False``) keeps merging channels in ``nn.Unfold``'s order, so the
    reduction and norm channels are permuted from transformers' order here; the official repository's
    names (``official=True``) keep transformers' order.
    """
    backbone_renames = [
        (r"^backbone\.swin\.embeddings\.patch_embeddings\.projection\.", "backbone.patch_embed.proj."),
        (r"^backbone\.swin\.embeddings\.norm\.", "backbone.patch_embed.norm."),
        (r"^backbone\.hidden_states_norms\.stage(\d)\.", lambda m: f"backbone.norm{int(m[1]) - 1}."),
        (r"^backbone\.swin\.encoder\.layers\.", "backbone.layers."),
        (r"\.layernorm_before\.", ".norm1."),
        (r"\.layernorm_after\.", ".norm2."),
        (r"\.attention\.o_proj\.", ".attn.proj."),
        (r"\.attention\.relative_position_bias\.", ".attn."),
    ]
    if not official:
        backbone_renames += [
            (r"^backbone\.patch_embed\.proj\.", "backbone.patch_embed.projection."),
            (r"^backbone\.layers\.", "backbone.stages."),
            (r"\.attn\.(proj|relative_position_bias_table)", r".attn.w_msa.\1"),
            (r"\.mlp\.fc1\.", ".ffn.layers.0.0."),
            (r"\.mlp\.fc2\.", ".ffn.layers.1."),
        ]
    head_renames = [(r"\.batch_norm\.", ".bn."), (r"\.classifier\.", ".conv_seg.")]
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        if key.startswith("backbone.swin.layernorm."):
            continue
        query = re.search(r"\.attention\.q_proj\.(weight|bias)$", key)
        if query:
            block = key[: query.start()]
            tensor = torch.cat([state_dict[f"{block}.attention.{p}_proj.{query[1]}"] for p in "qkv"])
            key = f"{block}.attn.qkv.{query[1]}"
            if not official:
                key = key.replace(".attn.qkv.", ".attn.w_msa.qkv.")
        elif re.search(r"\.attention\.[kv]_proj\.", key):
            continue
        for pattern, replacement in backbone_renames + head_renames:
            key = re.sub(pattern, replacement, key)
        if not official and ".downsample." in key:
            # transformers: offset-major ((0,0), (1,0), (0,1), (1,1)) -> unfold: channel-major, (0,0), (0,1), (1,0), (1,1).
            channels = tensor.shape[-1] // 4
            offsets = tensor.reshape(*tensor.shape[:-1], 4, channels)[..., [0, 2, 1, 3], :]
            tensor = offsets.transpose(-1, -2).reshape(tensor.shape)
        converted[key] = tensor.clone()
    return converted


@pytest.mark.parametrize("official", [False, True], ids=["mmseg", "official"])
def test_mmsegmentation_checkpoint_loads_with_same_logits(tmp_path, official):
    theirs = reference(1, seed=5)
    state_dict = to_mmseg(theirs.state_dict(), official)
    names = set(state_dict)
    if not official:
        assert "backbone.stages.0.blocks.1.attn.w_msa.qkv.weight" in names
        assert "backbone.stages.2.blocks.0.ffn.layers.0.0.weight" in names
        assert "backbone.stages.0.downsample.reduction.weight" in names
    assert {"backbone.norm3.weight", "decode_head.conv_seg.weight", "auxiliary_head.convs.0.bn.running_var"} <= names
    path = tmp_path / "upernet_swin.pth"
    torch.save({"meta": {"CLASSES": [str(i) for i in range(CLASSES)]}, "state_dict": state_dict}, path)
    ours = swinkit.create_model(pretrained=str(path)).eval()
    assert ours.load_report.format == "mmseg"
    assert not ours.load_report.missing and not ours.load_report.unexpected
    assert ours.config.dropout == 0.1  # mmsegmentation's, idle in evaluation
    assert_same_outputs(ours, theirs, SIZES[::2])


def test_swinkit_segmenter_round_trip(tmp_path):
    ours = swinkit.create_model(
        "upernet_swin_atto", num_classes=CLASSES, channels=16, aux_channels=8, labels=list("abcde"), embed_dim=16
    )
    perturb(ours, 9)
    ours.eval()
    save_segmenter(ours, tmp_path)
    loaded = swinkit.create_model(pretrained=str(tmp_path)).eval()
    assert loaded.config == ours.config
    assert loaded.load_report.format == "native"
    pixels = torch.randn(1, 3, 50, 70)
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixels), ours(pixels), rtol=0, atol=0)
    refit = swinkit.create_model(pretrained=str(tmp_path), num_classes=3)
    assert refit.num_classes == 3 and refit.config.labels == ()
    assert refit.load_report.dropped == sorted(refit.load_report.initialised)
    assert set(refit.load_report.initialised) == {
        "head.classifier.weight", "head.classifier.bias", "aux_head.classifier.weight", "aux_head.classifier.bias"
    }
    torch.testing.assert_close(refit.head.fuse.conv.weight, ours.head.fuse.conv.weight)


@pytest.mark.parametrize("layout", ["native", "hf"])
def test_classification_checkpoint_becomes_the_backbone_of_a_fresh_segmenter(tmp_path, layout):
    classifier = swinkit.create_model("swin_t", embed_dim=16, num_heads=(1, 2, 2, 4), depths=(1, 1, 1, 1), num_classes=7)
    perturb(classifier, 11)
    swinkit.save_pretrained(classifier, tmp_path, format=layout)
    segmenter = swinkit.create_model(pretrained=str(tmp_path), name="upernet_swin_t", num_classes=4, channels=16,
                                     aux_channels=8, embed_dim=16, num_heads=(1, 2, 2, 4), depths=(1, 1, 1, 1))
    report = segmenter.load_report
    assert report.dropped == ["head.bias", "head.weight", "norm.bias", "norm.weight"]
    assert "head.classifier.weight" in report.initialised and "stage_norms.3.weight" in report.initialised
    assert all(key.startswith(("head.", "aux_head.", "stage_norms.")) for key in report.initialised)
    for key, tensor in classifier.state_dict().items():
        if not key.startswith(("head.", "norm.")):
            torch.testing.assert_close(segmenter.backbone.state_dict()[key], tensor, rtol=0, atol=0)
    assert segmenter.config.backbone.fixed_windows and segmenter.num_classes == 4
    inferred = load_segmenter(tmp_path, num_classes=4, channels=16, aux_channels=8)
    assert inferred.config.backbone.embed_dim == 16 and inferred.config.backbone.depths == (1, 1, 1, 1)
    torch.testing.assert_close(inferred.backbone.stages[3].blocks[0].mlp.fc2.weight, classifier.stages[3].blocks[0].mlp.fc2.weight)
    with pytest.raises(CheckpointError, match="patch_embed.proj.weight has shape"):
        swinkit.create_model(pretrained=str(tmp_path), name="upernet_swin_atto")
