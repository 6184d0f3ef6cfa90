"""Swin V2 checkpoints: those saved by timm, transformers and torchvision (and in the official
layout, with or without its stored buffers) load into swinkit and give the reference model's
logits and four stage outputs; swinkit's V2 exports load back into transformers and timm; V1
and V2 weights are told apart; a checkpoint of one window fine-tunes at another with its
windows kept as the pretrained windows. Reference weights are random (nothing is downloaded),
drawn so that every parameter matters: the post-norms off their zero init, the position bias
MLP wide enough that each offset gets its own bias, logit scales spread around log 10 with
one head past the clamp at log 100."""

import dataclasses
import json
import re

import pytest
import torch
from torch import nn

import swinkit
from swinkit.checkpoints import CheckpointError, detect_format, hf, official, read_checkpoint, timm as timm_format
from swinkit.checkpoints.layout import rename_from_native
from swinkit.checkpoints.loading import Checkpoint, pretrained_windows_for
from swinkit.cli import main

transformers = pytest.importorskip("transformers")
timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")

from timm.models.swin_transformer_v2 import SwinTransformerV2, checkpoint_filter_fn  # noqa: E402
from torchvision.models.swin_transformer import (  # noqa: E402
    PatchMergingV2,
    SwinTransformerBlockV2,
)
from torchvision.models.swin_transformer import SwinTransformer as TorchvisionSwin  # noqa: E402

TOLERANCE = 1e-5


@dataclasses.dataclass(frozen=True)
class Spec:
    """One V2 architecture, built identically by every library."""

    name: str
    img_size: int
    window_size: int
    pretrained_window_sizes: tuple = ()
    embed_dim: int = 16
    depths: tuple = (2, 2, 2, 2)
    num_heads: tuple = (1, 2, 2, 4)
    num_classes: int = 5

    def kwargs(self) -> dict:
        """The architecture as keyword arguments of timm's and swinkit's builders."""
        return {key: value for key, value in dataclasses.asdict(self).items() if key != "name"}


# Every stage map a multiple of the window (timm's mask is wrong otherwise), never below it
# (torchvision does not clamp the window).
TINY = Spec("tiny", 128, 4)
# The analogue of the 12 -> 24, 192 -> 384 release: a window-4 checkpoint at 64 pixels (the last
# stage's 2x2 map clamps its window to 2) fine-tuned at window 8 and 128 pixels.
PRETRAIN = Spec("pretrain", 64, 4)
FINETUNED = Spec("finetuned", 128, 8, (4, 4, 4, 2))
# Hugging Face's V2 fixes each stage's window and shift when it is built, for its image size: at
# another size it matches only where no stage map is at most the window at the built size.
ODD = Spec("odd", 256, 4)
SPECS = {spec.name: spec for spec in (TINY, PRETRAIN, FINETUNED)}


def randomise(model: nn.Module, seed: int) -> nn.Module:
    """Draw every parameter: LayerNorms around 1 (the post-norms start at 0), logit scales in
    log 10 +- 1 with one head at 5 > log 100 (clamped), the position bias MLP with std 0.5, the rest std 0.02."""
    generator = torch.Generator().manual_seed(seed)
    clamped = False
    with torch.no_grad():
        for module in model.modules():
            for name, param in module.named_parameters(recurse=False):
                noise = torch.randn(param.shape, generator=generator)
                if isinstance(module, nn.LayerNorm) and name == "weight":
                    param.copy_(1 + 0.1 * noise)
                elif name == "logit_scale":
                    param.copy_(2.3 + 2 * torch.rand(param.shape, generator=generator) - 1)
                    if not clamped:
                        param[0] = 5.0
                        clamped = True
                elif isinstance(module, nn.Linear) and 512 in (module.in_features, module.out_features):
                    param.copy_(0.5 * noise)  # the position bias MLP
                else:
                    param.copy_(0.02 * noise)
    return model.eval()


def timm_model(spec: Spec):
    args = spec.kwargs()
    args["pretrained_window_sizes"] = args["pretrained_window_sizes"] or (0,) * len(spec.depths)
    return timm.create_model("swinv2_tiny_window8_256", pretrained=False, **args)


def hf_model(spec: Spec):
    config = transformers.Swinv2Config(
        image_size=spec.img_size,
        patch_size=4,
        embed_dim=spec.embed_dim,
        depths=list(spec.depths),
        num_heads=list(spec.num_heads),
        window_size=spec.window_size,
        pretrained_window_sizes=list(spec.pretrained_window_sizes or (0,) * len(spec.depths)),
        num_labels=spec.num_classes,
    )
    return transformers.Swinv2ForImageClassification(config)


def torchvision_model(spec: Spec):
    return TorchvisionSwin(
        patch_size=[4, 4],
        embed_dim=spec.embed_dim,
        depths=list(spec.depths),
        num_heads=list(spec.num_heads),
        window_size=[spec.window_size, spec.window_size],
        num_classes=spec.num_classes,
        block=SwinTransformerBlockV2,
        downsample_layer=PatchMergingV2,
    )


def hf_outputs(model, pixels):
    """Logits and the four stage outputs before merging (NCHW), from the encoder called as
    ``Swinv2Backbone`` calls it (``Swinv2Model`` does not pass ``output_hidden_states_before_downsampling`` on)."""
    embedded, dimensions = model.swinv2.embeddings(pixels)
    encoded = model.swinv2.encoder(
        embedded, dimensions, output_hidden_states=True, output_hidden_states_before_downsampling=True
    )
    return model(pixels).logits, list(encoded.reshaped_hidden_states[1:])


def timm_outputs(model, pixels):
    return model(pixels), model.forward_intermediates(pixels, indices=[0, 1, 2, 3], intermediates_only=True)


def torchvision_outputs(model, pixels):
    """Stage outputs: ``features[1], [3], [5], [7]`` run step by step (NHWC, permuted to NCHW);
    logits: the rest of torchvision's ``forward`` (its own modules, in its order) on the last."""
    stages, x = [], pixels
    for index, module in enumerate(model.features):
        x = module(x)
        if index % 2 == 1:
            stages.append(x.permute(0, 3, 1, 2))
    return model.head(model.flatten(model.avgpool(model.permute(model.norm(x))))), stages


def swinkit_outputs(model, pixels):
    return model(pixels), model.forward_intermediates(pixels)


def max_differences(reference, ours):
    (ref_logits, ref_stages), (logits, stages) = reference, ours
    assert logits.shape == ref_logits.shape and len(stages) == len(ref_stages) == 4
    for ref, got in zip(ref_stages, stages):
        assert got.shape == ref.shape
    assert ref_logits.std() > 0.01, "reference logits too flat to reveal a mapping bug"
    return (logits - ref_logits).abs().max().item(), max(
        (got - ref).abs().max().item() for ref, got in zip(ref_stages, stages)
    )


def official_from_timm(model, buffers=True, mlp_name="cpb_mlp"):
    """The official layout, written independently of swinkit from a timm model: merging at the end
    of the previous stage, bare head, optionally the buffers the official code saves, and the MLP
    under another name. timm's own converter must read it back to timm's exact state dict."""
    state = dict(model.state_dict())
    if buffers:  # the official model registers these persistently; timm computes the same ones
        state |= {key: value for key, value in model.named_buffers() if key.endswith(_OFFICIAL_BUFFERS)}
    written = {}
    for key, tensor in state.items():
        key = re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m[1]) - 1}.downsample", key)
        key = re.sub(r"^head\.fc\.", "head.", key).replace(".cpb_mlp.", f".{mlp_name}.")
        written[key] = tensor
    if mlp_name == "cpb_mlp":
        refiltered = checkpoint_filter_fn({"model": written}, model)
        assert refiltered.keys() == model.state_dict().keys()
        assert all(torch.equal(refiltered[key], model.state_dict()[key]) for key in refiltered)
    return written


_OFFICIAL_BUFFERS = ("relative_coords_table", "relative_position_index", "attn_mask")


def transformers5_names(state):
    """Hugging Face keys renamed by transformers 5's own ``swin`` table (transformers 5.x renames
    Swin V1 blocks so; its Swin V2 model still uses the legacy names)."""
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping

    renames = [(rule.source_patterns[0], rule.target_patterns[0]) for rule in get_checkpoint_conversion_mapping("swin")]
    renamed = {}
    for key, tensor in state.items():
        for source, target in renames:
            key = re.sub(source, target, key)
        renamed[key] = tensor
    assert any(".attention.q_proj." in key for key in renamed) and any(".mlp.fc1." in key for key in renamed)
    return renamed


# Each saver writes a reference model the way its library (or the official repository) does and
# returns the path, the overrides swinkit needs (only where the file cannot tell the window), the
# reference model and its output function.
def save_hf(spec, tmp):
    model = randomise(hf_model(spec), 1)
    model.save_pretrained(tmp / "hf")
    return tmp / "hf", {}, model, hf_outputs


def save_hf_bin_transformers5_names(spec, tmp):
    model = randomise(hf_model(spec), 2)
    model.save_pretrained(tmp / "hf")
    torch.save(transformers5_names(model.state_dict()), tmp / "hf" / "pytorch_model.bin")
    (tmp / "hf" / "model.safetensors").unlink()
    return tmp / "hf", {}, model, hf_outputs


def save_timm(spec, tmp):
    model = randomise(timm_model(spec), 3)
    timm.models.save_for_hf(model, tmp / "timm", safe_serialization=True)
    return tmp / "timm", {}, model, timm_outputs


def save_timm_bare_file(spec, tmp):
    """A bare timm state dict: nothing tells the window, so it is given."""
    model = randomise(timm_model(spec), 4)
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, tmp / "checkpoint-3.pth.tar")
    overrides = {"window_size": spec.window_size, "img_size": spec.img_size}
    return tmp / "checkpoint-3.pth.tar", overrides, model, timm_outputs


def save_official(spec, tmp):
    """With the stored buffers, which tell the window and the pretrained windows."""
    model = randomise(timm_model(spec), 5)
    torch.save({"model": official_from_timm(model), "epoch": 300}, tmp / "official.pth")
    return tmp / "official.pth", {}, model, timm_outputs


def save_official_old_rpe_mlp(spec, tmp):
    """An older official file: the MLP named ``rpe_mlp``, no buffers (so the window is given)."""
    model = randomise(timm_model(spec), 6)
    torch.save({"model": official_from_timm(model, buffers=False, mlp_name="rpe_mlp")}, tmp / "official.pth")
    return tmp / "official.pth", {"window_size": spec.window_size, "img_size": spec.img_size}, model, timm_outputs


def save_torchvision(spec, tmp):
    model = randomise(torchvision_model(spec), 7)  # the k third of each qkv.bias is random too: torchvision ignores it
    torch.save(model.state_dict(), tmp / "swin_v2.pth")
    return tmp / "swin_v2.pth", {}, model, torchvision_outputs


SAVERS = {
    "hf": (save_hf, "hf"),
    "hf_bin_transformers5_names": (save_hf_bin_transformers5_names, "hf"),
    "timm": (save_timm, "timm"),
    "timm_bare_file": (save_timm_bare_file, "timm"),
    "official": (save_official, "official"),
    "official_old_rpe_mlp": (save_official_old_rpe_mlp, "official"),
    "torchvision": (save_torchvision, "torchvision"),
}
# pretrain: the last stage's window clamped to its map (told by the official buffers' sides); finetuned:
# pretrained windows read from Hugging Face's config.json, timm's model_args and the official buffers' values.
CASES = [(lib, "tiny") for lib in SAVERS] + [
    ("hf", "pretrain"),
    ("official", "pretrain"),
    ("hf", "finetuned"),
    ("timm", "finetuned"),
    ("official", "finetuned"),
]


@pytest.mark.parametrize(("lib", "size"), CASES)
def test_reference_v2_checkpoint_gives_reference_outputs(lib, size, tmp_path):
    spec = SPECS[size]
    save, expected_format = SAVERS[lib]
    path, overrides, reference, outputs = save(spec, tmp_path)
    model = swinkit.create_model(pretrained=path, **overrides).eval()
    assert model.load_report.format == expected_format
    config = model.config
    assert (config.version, config.embed_dim, config.depths, config.num_heads) == (
        2,
        spec.embed_dim,
        spec.depths,
        spec.num_heads,
    )
    assert (config.window_size, config.pretrained_window_sizes) == (spec.window_size, spec.pretrained_window_sizes)
    assert (config.img_size, model.num_classes) == ((spec.img_size, spec.img_size), spec.num_classes)
    pixels = torch.randn(2, 3, spec.img_size, spec.img_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, stages = max_differences(outputs(reference, pixels), swinkit_outputs(model, pixels))
    print(f"\n{lib}/{size}: max |logits diff| {logits:.2e}, max |stage diff| {stages:.2e}")
    assert logits <= TOLERANCE and stages <= TOLERANCE


def test_hugging_face_v2_checkpoint_at_an_odd_size(tmp_path):
    path, _, _, _ = save_hf(ODD, tmp_path)
    model = swinkit.create_model(pretrained=path).eval()
    reference = transformers.Swinv2ForImageClassification.from_pretrained(path).eval()
    pixels = torch.randn(1, 3, 225, 301, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, stages = max_differences(hf_outputs(reference, pixels), swinkit_outputs(model, pixels))
    print(f"\nhf/odd at 225x301: max |logits diff| {logits:.2e}, max |stage diff| {stages:.2e}")
    assert logits <= TOLERANCE and stages <= TOLERANCE


# Window 2: at the odd sizes every stage map exceeds the window (torchvision's rule for a map no
# larger than the window is tested with its full-size swin_v2_t in test_checkpoints_parity.py), and so does
# every map at the 128 pixels Hugging Face's model is built for (see ODD).
CROP = Spec("crop", 128, 2)


@pytest.mark.parametrize(("height", "width"), [(225, 301), (97, 130)])
def test_torchvision_v2_checkpoint_crops_the_remainder_as_torchvision_does(height, width, tmp_path):
    """torchvision's V2 weights choose ``patch_remainder="crop"``; the padding default still matches Hugging Face."""
    path, _, reference, outputs = save_torchvision(CROP, tmp_path)
    model = swinkit.create_model(pretrained=path).eval()
    assert model.config.patch_remainder == "crop"
    pixels = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(1))
    hf_path, _, _, _ = save_hf(CROP, tmp_path)
    padded = swinkit.create_model(pretrained=hf_path).eval()
    hf_reference = transformers.Swinv2ForImageClassification.from_pretrained(hf_path).eval()
    with torch.no_grad():
        logits, stages = max_differences(outputs(reference, pixels), swinkit_outputs(model, pixels))
        hf_logits, hf_stages = max_differences(hf_outputs(hf_reference, pixels), swinkit_outputs(padded, pixels))
    print(f"\ntorchvision/crop at {height}x{width}: max |logits diff| {logits:.2e}, max |stage diff| {stages:.2e}")
    print(f"hf/crop (pad) at {height}x{width}: max |logits diff| {hf_logits:.2e}, max |stage diff| {hf_stages:.2e}")
    assert logits <= TOLERANCE and stages <= TOLERANCE
    assert padded.config.patch_remainder == "pad" and hf_logits <= TOLERANCE and hf_stages <= TOLERANCE


def swinkit_model(spec: Spec, seed: int = 8, labels=()):
    config = swinkit.get_config("swinv2_t", labels=labels, **spec.kwargs())
    return randomise(swinkit.SwinTransformer(config), seed)


def assert_bit_identical(first, second):
    one, two = first.state_dict(), second.state_dict()
    assert one.keys() == two.keys()
    assert all(torch.equal(one[key], two[key]) for key in one)


# How each library reads a swinkit export back: the model, its outputs, its label names and its pretrained windows.
EXPORT_READERS = {
    "hf": (
        transformers.Swinv2ForImageClassification.from_pretrained,
        hf_outputs,
        lambda model: [model.config.id2label[i] for i in range(model.config.num_labels)],
        lambda model: tuple(model.config.pretrained_window_sizes),
    ),
    "timm": (
        lambda path: timm.create_model(f"local-dir:{path}", pretrained=True),
        timm_outputs,
        lambda model: list(model.pretrained_cfg["label_names"]),
        lambda model: tuple(block.attn.pretrained_window_size[0] for block in (s.blocks[0] for s in model.layers)),
    ),
}


@pytest.mark.parametrize("size", ["tiny", "finetuned"])
@pytest.mark.parametrize("target", list(EXPORT_READERS))
def test_swinkit_v2_export_loads_in_the_reference_library_and_back(target, size, tmp_path):
    spec = SPECS[size]
    load, outputs, label_names, pretrained_windows = EXPORT_READERS[target]
    labels = tuple(f"class {i}" for i in range(spec.num_classes))
    model = swinkit_model(spec, labels=labels)
    swinkit.save_pretrained(model, tmp_path, format=target)
    reference = load(tmp_path).eval()
    assert pretrained_windows(reference) == (spec.pretrained_window_sizes or (0, 0, 0, 0))
    assert label_names(reference) == list(labels)
    pixels = torch.randn(2, 3, spec.img_size, spec.img_size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits, stages = max_differences(outputs(reference, pixels), swinkit_outputs(model, pixels))
    print(f"\nswinkit->{target}/{size}: max |logits diff| {logits:.2e}, max |stage diff| {stages:.2e}")
    assert logits <= TOLERANCE and stages <= TOLERANCE
    if target == "timm":  # timm also reads the exported weights strictly into a model it builds itself
        assert isinstance(reference, SwinTransformerV2)
        timm_model(spec).load_state_dict(
            swinkit.checkpoints.read_state_dict(tmp_path / "model.safetensors"), strict=True
        )
    else:
        assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "swinv2"
    back = swinkit.create_model(pretrained=tmp_path)
    assert_bit_identical(model, back)
    assert back.config == model.config.replace(drop_path_rate=back.config.drop_path_rate)


def test_full_size_torchvision_swin_v2_t_and_a_timm_hub_config(tmp_path):
    """torchvision's swin_v2_t at 256: told to be swinv2_t by its stored coordinate tables alone (window
    8, 256 pixels), its zeroed k biases the only parameters left out, the same logits and stage outputs.
    Compared in float64: at this depth, with logit scales up to 100, each library's float32 result is
    itself some 3e-5 off the float64 one, so float32 cannot show the mapping exact; float64 does.
    A timm Hub export whose config.json names only the architecture gets that release's window."""
    reference = randomise(torchvision.models.swin_v2_t(), 10)
    torch.save(reference.state_dict(), tmp_path / "swin_v2_t.pth")
    model = swinkit.create_model(pretrained=tmp_path / "swin_v2_t.pth").eval()
    assert model.config == swinkit.get_config("swinv2_t", patch_remainder="crop")  # torchvision's model crops
    k_biases = sum(96 * 2**stage * depth for stage, depth in enumerate((2, 2, 6, 2)))
    parameters = sum(p.numel() for p in model.parameters())
    assert (parameters, sum(p.numel() for p in reference.parameters()) - k_biases) == (28_347_154, 28_347_154)
    pixels = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with torch.no_grad():
        stages = model.double().forward_intermediates(pixels)  # one pass; forward is the head on the last map
        ours = model.forward_head(model.norm(stages[-1].permute(0, 2, 3, 1))), stages
        logits, stages = max_differences(torchvision_outputs(reference.double(), pixels), ours)
    print(f"\ntorchvision/swin_v2_t in float64: max |logits diff| {logits:.2e}, max |stage diff| {stages:.2e}")
    assert logits <= 1e-10 and stages <= 1e-10
    hub = tmp_path / "timm-hub"
    hub.mkdir()
    weights = model.float().state_dict()  # window 8 and 16 weights have the same shapes
    swinkit.checkpoints.io.write_safetensors(hub / "model.safetensors", timm_format.from_native(weights))
    pretrained_cfg = {"input_size": [3, 256, 256], "crop_pct": 0.9, "interpolation": "bicubic", "num_classes": 1000}
    config = {"architecture": "swinv2_tiny_window16_256", "num_classes": 1000, "pretrained_cfg": pretrained_cfg}
    (hub / "config.json").write_text(json.dumps(config))
    loaded = swinkit.create_model(pretrained=hub)
    assert loaded.config == swinkit.get_config("swinv2_t_w16") and loaded.pretrained_cfg["crop_pct"] == 0.9
    assert_bit_identical(model, loaded)


def test_window_8_to_16_and_12_to_24_keep_the_pretrained_windows_of_the_releases():
    """The registry's fine-tuned releases get their pretrained windows from the checkpoint they
    start from: (8, 8, 8, 8) from a window-8 model at 256, (12, 12, 12, 6) from window 12 at 192."""
    cases = [
        ("swinv2_t", "swinv2_t_w16", (8, 8, 8, 8)),
        ("swinv2_b_192", "swinv2_b_192to384", (12, 12, 12, 6)),
        ("swinv2_l_192", "swinv2_l_192to256", (12, 12, 12, 6)),
    ]
    for source, target, expected in cases:
        config = swinkit.get_config(source)
        shapes = swinkit.create_model(source, device="meta").state_dict()  # shapes only
        checkpoint = Checkpoint(source, "native", shapes, config.to_dict(), None, [], [])
        fine_tuned = pretrained_windows_for(swinkit.get_config(target, pretrained_window_sizes=()), checkpoint)
        assert fine_tuned.pretrained_window_sizes == expected
        assert fine_tuned == swinkit.get_config(target).replace(pretrained_window_sizes=expected)
        same_window = swinkit.get_config(source, img_size=512)
        assert pretrained_windows_for(same_window, checkpoint) == same_window  # another size alone keeps none


@pytest.mark.parametrize("lib", ["timm", "official"])
def test_a_checkpoint_of_one_window_fine_tunes_at_another_without_resizing(lib, tmp_path):
    """Window 4 at 64 pixels -> window 8 at 128: nothing resized, the windows the checkpoint's stages
    ran with become the pretrained windows, and the model is timm's and Hugging Face's fine-tuned one."""
    path, _, source, _ = SAVERS[lib][0](PRETRAIN, tmp_path)
    model = swinkit.create_model(pretrained=path, window_size=8, img_size=128).eval()
    assert model.config.pretrained_window_sizes == FINETUNED.pretrained_window_sizes == (4, 4, 4, 2)
    assert model.config.window_size == 8 and model.load_report.resized == []
    loaded = read_checkpoint(path).state_dict
    assert all(torch.equal(model.state_dict()[key], tensor) for key, tensor in loaded.items())
    timm_reference = timm_model(FINETUNED).eval()
    timm_reference.load_state_dict(source.state_dict())
    hf_reference = hf_model(FINETUNED).eval()
    hf_reference.load_state_dict(hf.from_native(model.state_dict()))
    pixels = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = swinkit_outputs(model, pixels)
        for name, outputs, reference in (("timm", timm_outputs, timm_reference), ("hf", hf_outputs, hf_reference)):
            logits, stages = max_differences(outputs(reference, pixels), ours)
            print(f"\n{lib} window 4 -> {name} window 8: max |logits diff| {logits:.2e}, max |stage diff| {stages:.2e}")
            assert logits <= TOLERANCE and stages <= TOLERANCE
        plain = swinkit.create_model(pretrained=path, window_size=8, img_size=128, pretrained_window_sizes=())
        assert (plain.eval()(pixels) - ours[0]).abs().max() > 1e-3  # the pretrained windows matter


def test_v1_and_v2_weights_into_the_other_model_say_which_is_which(tmp_path):
    v2 = swinkit_model(TINY)
    swinkit.save_pretrained(v2, tmp_path / "v2", format="timm")
    v1 = swinkit.create_model("swin_t", **(TINY.kwargs() | {"window_size": 2, "img_size": 64}))
    with pytest.raises(CheckpointError, match=r"holds Swin V2 weights \(timm layout\) but the model is Swin V1"):
        swinkit.load_checkpoint(v1, tmp_path / "v2")
    with pytest.raises(CheckpointError, match=r"holds Swin V2 weights .* but the model is Swin V1: .*logit_scale"):
        swinkit.create_model("swin_t", pretrained=tmp_path / "v2")
    swinkit.save_pretrained(v1, tmp_path / "v1", format="hf")
    with pytest.raises(CheckpointError, match=r"holds Swin V1 weights \(hf layout\) but the model is Swin V2.*swin_t"):
        swinkit.create_model("swinv2_t", pretrained=tmp_path / "v1")
    assert swinkit.create_model(pretrained=tmp_path / "v1").config.version == 1


def test_each_v2_layout_is_detected_and_read_back_exactly(tmp_path):
    model = swinkit_model(TINY)
    state = model.state_dict()
    layouts = {
        "native": dict(state),
        "hf": hf.from_native(state),
        "timm": timm_format.from_native(state),
        "official": rename_from_native(state, official.LAYOUT),
    }
    assert "swinv2.encoder.layers.0.blocks.1.attention.self.continuous_position_bias_mlp.2.weight" in layouts["hf"]
    assert "swinv2.encoder.layers.0.blocks.1.attention.self.query.bias" in layouts["hf"]
    assert not any(".key.bias" in key for key in layouts["hf"])
    assert "layers.0.downsample.reduction.weight" in layouts["official"]
    assert "layers.1.downsample.norm.weight" in layouts["timm"] and "head.fc.weight" in layouts["timm"]
    for name, foreign in layouts.items():
        assert detect_format(foreign) == name
        torch.save(foreign, tmp_path / f"{name}.pth")
        loaded = swinkit.create_model(pretrained=tmp_path / f"{name}.pth", window_size=4, img_size=128)
        assert loaded.load_report.format == name and loaded.config.version == 2
        assert_bit_identical(model, loaded)
    # A bare Swinv2Model (no ``swinv2.`` prefix, no classifier) loads as a headless model.
    bare = {key.removeprefix("swinv2."): value for key, value in layouts["hf"].items() if "classifier" not in key}
    torch.save(bare, tmp_path / "bare.pth")
    headless = swinkit.create_model(pretrained=tmp_path / "bare.pth", window_size=4, img_size=128)
    assert headless.num_classes == 0 and headless.load_report.format == "hf"
    assert all(torch.equal(tensor, state[key]) for key, tensor in headless.state_dict().items())
    # The format can be named; a wrong one says what is missing.
    assert_bit_identical(model, swinkit.create_model(pretrained=tmp_path / "timm.pth", format="timm", window_size=4))
    with pytest.raises(CheckpointError, match=r"missing keys \[norm.bias; norm.weight"):
        swinkit.create_model("swinv2_t", pretrained=tmp_path / "timm.pth", format="hf", **TINY.kwargs())


def test_cli_converts_v2_between_formats(tmp_path, capsys):
    """An official file of a fine-tuned model, converted with nothing but its stored buffers to tell
    its windows: to Hugging Face, to timm, to swinkit, windows and weights intact."""
    reference = randomise(timm_model(FINETUNED), 9)
    torch.save({"model": official_from_timm(reference)}, tmp_path / "official.pth")
    assert main(["convert", str(tmp_path / "official.pth"), str(tmp_path / "hf"), "--to", "hf"]) == 0
    assert "(official, embed_dim 16, depths [2, 2, 2, 2], window 8, 5 classes)" in capsys.readouterr().out
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["pretrained_window_sizes"] == [4, 4, 4, 2]
    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "timm"), "--to", "timm", "--from", "hf"]) == 0
    assert json.loads((tmp_path / "timm" / "config.json").read_text())["model_args"]["pretrained_window_sizes"] == [
        4,
        4,
        4,
        2,
    ]
    assert main(["convert", str(tmp_path / "timm"), str(tmp_path / "native")]) == 0
    model = swinkit.create_model(pretrained=tmp_path / "native")
    assert model.config == swinkit.get_config("swinv2_t", drop_path_rate=0.1, **FINETUNED.kwargs())
    original = read_checkpoint(tmp_path / "official.pth").state_dict
    assert original.keys() == model.state_dict().keys()
    assert all(torch.equal(model.state_dict()[key], tensor) for key, tensor in original.items())
