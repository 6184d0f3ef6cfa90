"""Checkpoints saved by transformers, timm and torchvision (and in the official layout) load into
swinkit and give the reference model's logits and four stage outputs; swinkit exports load back
into transformers and timm. Reference weights are random (nothing is downloaded) and drawn so
that every parameter, LayerNorms and bias tables included, matters."""

import argparse
import dataclasses
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import swinkit

transformers = pytest.importorskip("transformers")
timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")

from timm.layers.pos_embed_rel import resize_rel_pos_bias_table_simple  # noqa: E402
from timm.models.swin_transformer import checkpoint_filter_fn  # noqa: E402
from torchvision.models.swin_transformer import SwinTransformer as TorchvisionSwin  # noqa: E402

TOLERANCE = 1e-5


@dataclasses.dataclass(frozen=True)
class Spec:
    """One architecture, built identically by every library. Every tiny stage map is at least
    the window (Hugging Face cannot run a stage whose map is smaller than its window)."""

    name: str
    img_size: int
    embed_dim: int
    depths: tuple
    num_heads: tuple
    window_size: int
    num_classes: int

    def kwargs(self) -> dict:
        """The architecture as keyword arguments of timm's and swinkit's builders."""
        return {key: value for key, value in dataclasses.asdict(self).items() if key != "name"}


TINY = Spec("tiny", 64, 16, (2, 2, 2, 2), (1, 2, 2, 4), 2, 5)
SWIN_T = Spec("swin_t", 224, 96, (2, 2, 6, 2), (3, 6, 12, 24), 7, 1000)
SPECS = {spec.name: spec for spec in (TINY, SWIN_T)}


def randomise(model: nn.Module, seed: int) -> nn.Module:
    """Draw every parameter: LayerNorm weights around 1, bias tables with std 0.5, the rest std 0.02."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            for name, param in module.named_parameters(recurse=False):
                noise = torch.randn(param.shape, generator=generator)
                if isinstance(module, nn.LayerNorm) and name == "weight":
                    param.copy_(1 + 0.1 * noise)
                elif "relative_position_bias_table" in name:
                    param.copy_(0.5 * noise)
                else:
                    param.copy_(0.02 * noise)
    return model.eval()


def hf_model(spec: Spec):
    config = transformers.SwinConfig(
        image_size=spec.img_size,
        patch_size=4,
        embed_dim=spec.embed_dim,
        depths=list(spec.depths),
        num_heads=list(spec.num_heads),
        window_size=spec.window_size,
        num_labels=spec.num_classes,
    )
    return transformers.SwinForImageClassification(config)


def timm_model(spec: Spec):
    return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, **spec.kwargs())


def torchvision_model(spec: Spec):
    if spec is SWIN_T:
        return torchvision.models.swin_t()
    return TorchvisionSwin(
        patch_size=[4, 4],
        embed_dim=spec.embed_dim,
        depths=list(spec.depths),
        num_heads=list(spec.num_heads),
        window_size=[spec.window_size, spec.window_size],
        num_classes=spec.num_classes,
    )


def hf_outputs(model, pixels):
    """Logits and the four stage outputs before merging (NCHW): ``reshaped_hidden_states[1:]``
    with ``output_hidden_states_before_downsampling``, as ``SwinBackbone`` uses them."""
    out = model(pixels, output_hidden_states=True, output_hidden_states_before_downsampling=True)
    return out.logits, list(out.reshaped_hidden_states[1:])


def timm_outputs(model, pixels):
    return model(pixels), model.forward_intermediates(pixels, indices=[0, 1, 2, 3], intermediates_only=True)


def torchvision_outputs(model, pixels):
    """Stage outputs: ``features[1], [3], [5], [7]`` run step by step (NHWC, permuted to NCHW)."""
    stages, x = [], pixels
    for index, module in enumerate(model.features):
        x = module(x)
        if index % 2 == 1:
            stages.append(x.permute(0, 3, 1, 2))
    return model(pixels), stages


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


def official_from_timm(state_dict):
    """The official layout, written independently from timm's: merging at the end of the previous stage, bare head."""
    official = {}
    for key, tensor in state_dict.items():
        key = re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m[1]) - 1}.downsample", key)
        official[re.sub(r"^head\.fc\.", "head.", key)] = tensor
    return official


# Each saver writes a reference model the way its library (or the official repository) does and
# returns the path to give swinkit, the reference model and its output function.
def save_hf(spec, tmp):
    model = randomise(hf_model(spec), 1)
    model.save_pretrained(tmp / "hf")
    return tmp / "hf", model, hf_outputs


def save_hf_bin_new_names(spec, tmp):
    model = randomise(hf_model(spec), 2)
    state = model.state_dict()
    assert any("attention.q_proj" in key for key in state), "expected transformers-5 names in memory"
    torch.save(state, tmp / "pytorch_model.bin")
    return tmp / "pytorch_model.bin", model, hf_outputs


def save_timm(spec, tmp):
    model = randomise(timm_model(spec), 3)
    timm.models.save_for_hf(model, tmp / "timm", safe_serialization=True)
    return tmp / "timm", model, timm_outputs


def save_timm_training_checkpoint(spec, tmp):
    model = randomise(timm_model(spec), 4)
    args = argparse.Namespace(model="swin_tiny_patch4_window7_224", lr=1e-3)
    torch.save(
        {"epoch": 3, "arch": "swin", "state_dict": model.state_dict(), "args": args}, tmp / "checkpoint-3.pth.tar"
    )
    return tmp / "checkpoint-3.pth.tar", model, timm_outputs


def save_torchvision(spec, tmp):
    model = randomise(torchvision_model(spec), 5)
    torch.save(model.state_dict(), tmp / "swin.pth")
    return tmp / "swin.pth", model, torchvision_outputs


def _official_checkpoint(spec, seed):
    model = randomise(timm_model(spec), seed)
    timm_state = {key: value for key, value in model.state_dict().items() if "attn_mask" not in key}
    official = official_from_timm(timm_state)
    # timm's own converter reads this official dict back to timm's exact state dict.
    refiltered = checkpoint_filter_fn({"model": official}, model)
    assert refiltered.keys() == {k for k in timm_state if "relative_position_index" not in k}
    assert all(torch.equal(refiltered[key], timm_state[key]) for key in refiltered)
    return official, model


def save_official(spec, tmp):
    official, model = _official_checkpoint(spec, 6)
    torch.save({"model": official}, tmp / "official.pth")
    return tmp / "official.pth", model, timm_outputs


def save_timm_old_layout(spec, tmp):
    official, model = _official_checkpoint(spec, 7)
    torch.save(official, tmp / "timm_old.pth")  # bare, with the relative_position_index buffers
    return tmp / "timm_old.pth", model, timm_outputs


SAVERS = {
    "hf": (save_hf, "hf"),
    "hf_bin_new_names": (save_hf_bin_new_names, "hf"),
    "timm": (save_timm, "timm"),
    "timm_training_checkpoint": (save_timm_training_checkpoint, "timm"),
    "torchvision": (save_torchvision, "torchvision"),
    "official": (save_official, "official"),
    "timm_old_layout": (save_timm_old_layout, "official"),
}
CASES = [(lib, "tiny") for lib in SAVERS] + [(lib, "swin_t") for lib in ("hf", "timm", "torchvision", "official")]


@pytest.mark.parametrize(("lib", "size"), CASES)
def test_reference_checkpoint_gives_reference_outputs(lib, size, tmp_path):
    spec = SPECS[size]
    save, expected_format = SAVERS[lib]
    path, reference, outputs = save(spec, tmp_path)
    model = swinkit.create_model(pretrained=path).eval()
    assert model.load_report.format == expected_format
    assert (model.config.embed_dim, model.config.depths, model.config.num_heads) == (
        spec.embed_dim,
        spec.depths,
        spec.num_heads,
    )
    assert (model.config.window_size, model.num_classes) == (spec.window_size, spec.num_classes)
    pixels = torch.randn(2, 3, spec.img_size, spec.img_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, stages = max_differences(outputs(reference, pixels), swinkit_outputs(model, pixels))
    print(f"\n{lib}/{size}: max |logits diff| {logits:.2e}, max |stage diff| {stages:.2e}")
    assert logits <= TOLERANCE and stages <= TOLERANCE


#: Sides that are not multiples of the patch, where padding (Hugging Face) and cropping (torchvision) differ.
ODD_SIZES = [(225, 301), (97, 130)]


@pytest.mark.parametrize(("size", "height", "width"), [("tiny", 225, 301), ("tiny", 97, 130), ("swin_t", 225, 301)])
def test_hugging_face_checkpoint_at_an_odd_size(size, height, width, tmp_path):
    spec = SPECS[size]
    path, _, _ = save_hf(spec, tmp_path)
    model = swinkit.create_model(pretrained=path).eval()
    assert model.config.patch_remainder == "pad"  # the default, and what Hugging Face's model does
    reference = transformers.SwinForImageClassification.from_pretrained(path).eval()  # fresh: HF mutates shift sizes
    pixels = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, stages = max_differences(hf_outputs(reference, pixels), swinkit_outputs(model, pixels))
    print(f"\nhf/{size} at {height}x{width}: max |logits diff| {logits:.2e}, max |stage diff| {stages:.2e}")
    assert logits <= TOLERANCE and stages <= TOLERANCE


@pytest.mark.parametrize(("height", "width"), ODD_SIZES)
def test_torchvision_checkpoint_crops_the_remainder_as_torchvision_does(height, width, tmp_path):
    """torchvision's weights choose ``patch_remainder="crop"``: its answers at sides that are not whole patches.

    The tiny spec's stage maps all exceed its window at these sizes; the full-size test below
    covers maps no larger than the window, where torchvision has a window rule of its own.
    """
    path, reference, outputs = save_torchvision(TINY, tmp_path)
    model = swinkit.create_model(pretrained=path).eval()
    assert model.config.patch_remainder == "crop"
    pixels = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, stages = max_differences(outputs(reference, pixels), swinkit_outputs(model, pixels))
        padded = swinkit.create_model(pretrained=path, patch_remainder="pad").eval()  # the user's choice wins
        padding_changes = (padded(pixels) - reference(pixels)).abs().max().item()
    print(f"\ntorchvision/tiny at {height}x{width}: max |logits diff| {logits:.2e}, max |stage diff| {stages:.2e}")
    assert logits <= TOLERANCE and stages <= TOLERANCE
    assert padded.config.patch_remainder == "pad" and padding_changes > 1e-3


def perturb(model: nn.Module, seed: int) -> nn.Module:
    """Move every parameter off its initial value: bias tables by std 0.5, logit scales by 0.3,
    LayerNorms by 0.1, the rest (the V2 position bias MLP included) by 0.02."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            for name, param in module.named_parameters(recurse=False):
                if "relative_position_bias_table" in name:
                    scale = 0.5
                elif name == "logit_scale":
                    scale = 0.3
                else:
                    scale = 0.1 if isinstance(module, nn.LayerNorm) else 0.02
                param.add_(scale * torch.randn(param.shape, generator=generator))
    return model.eval()


@pytest.mark.parametrize(("height", "width", "small_shifts"), [(225, 301, (0, 1)), (97, 130, (0, 0))])
@pytest.mark.parametrize("builder", ["swin_t", "swin_v2_t"])
def test_full_size_torchvision_weights_give_torchvision_logits_on_maps_smaller_than_the_window(
    builder, height, width, small_shifts, tmp_path
):
    """torchvision's own swin_t and swin_v2_t, loaded from their state dict, at sizes where a stage map is
    no larger than the window along a side: torchvision keeps the window, pads the map to whole windows
    and drops the shift only along such a side, which ``patch_remainder="crop"`` does too (V1 and V2)."""
    reference = perturb(getattr(torchvision.models, builder)(), 11)
    torch.save(reference.state_dict(), tmp_path / f"{builder}.pth")
    model = swinkit.create_model(pretrained=tmp_path / f"{builder}.pth").eval()
    assert (model.load_report.format, model.config.patch_remainder, model.config.small_maps) == (
        "torchvision",
        "crop",
        "pad",
    )
    last_map = model.config.replace(img_size=(height, width)).stage_resolutions[-1]
    assert min(last_map) <= model.config.window_size  # the rule under test applies in the last stage
    layout = model.stages[-1].blocks[1].layout(*last_map)
    assert layout.shifts == tuple(side * model.config.window_size // 2 for side in small_shifts)
    pixels = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits, stages = max_differences(torchvision_outputs(reference, pixels), swinkit_outputs(model, pixels))
    print(f"\ntorchvision/{builder} at {height}x{width}: max |logits diff| {logits:.2e}, max |stage diff| {stages:.2e}")
    # V2's stage outputs grow with depth (res-post-norm, no norm between stages) and its logit scales
    # sharpen the softmax: in float32 each library's own last stage is some 3e-5 off its float64 result.
    assert logits <= TOLERANCE and stages <= (TOLERANCE if builder == "swin_t" else 5e-5)


def swinkit_model(spec: Spec, seed: int = 8, labels=()):
    return randomise(swinkit.SwinTransformer(swinkit.get_config("swin_t", labels=labels, **spec.kwargs())), seed)


def assert_bit_identical(first, second):
    one, two = first.state_dict(), second.state_dict()
    assert one.keys() == two.keys()
    assert all(torch.equal(one[key], two[key]) for key in one)


# How each library reads a swinkit export back: the model, its outputs, and the label names it sees.
EXPORT_READERS = {
    "hf": (
        transformers.SwinForImageClassification.from_pretrained,
        hf_outputs,
        lambda model: [model.config.id2label[i] for i in range(model.config.num_labels)],
    ),
    "timm": (
        lambda path: timm.create_model(f"local-dir:{path}", pretrained=True),
        timm_outputs,
        lambda model: list(model.pretrained_cfg["label_names"]),
    ),
}


@pytest.mark.parametrize("size", ["tiny", "swin_t"])
@pytest.mark.parametrize("target", list(EXPORT_READERS))
def test_swinkit_export_loads_in_the_reference_library_and_back(target, size, tmp_path):
    spec = SPECS[size]
    load, outputs, label_names = EXPORT_READERS[target]
    labels = tuple(f"class {i}" for i in range(spec.num_classes)) if spec is TINY else ()
    model = swinkit_model(spec, labels=labels)
    swinkit.save_pretrained(model, tmp_path, format=target)
    reference = load(tmp_path).eval()
    pixels = torch.randn(2, 3, spec.img_size, spec.img_size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits, stages = max_differences(outputs(reference, pixels), swinkit_outputs(model, pixels))
    print(f"\nswinkit->{target}/{size}: max |logits diff| {logits:.2e}, max |stage diff| {stages:.2e}")
    assert logits <= TOLERANCE and stages <= TOLERANCE
    if labels:
        assert label_names(reference) == list(labels)
    if target == "timm":  # timm also reads the exported weights strictly into a model it builds itself
        timm_model(spec).load_state_dict(
            swinkit.checkpoints.read_state_dict(tmp_path / "model.safetensors"), strict=True
        )
    back = swinkit.create_model(pretrained=tmp_path)
    assert_bit_identical(model, back)
    assert back.config.labels == labels


def official_bicubic(table: torch.Tensor, window: int) -> torch.Tensor:
    """The official repository's resize, written out: per head, the (2M-1)^2 grid to (2W-1)^2."""
    length, heads = table.shape
    side, new_side = int(length**0.5), 2 * window - 1
    grid = F.interpolate(table.permute(1, 0).view(1, heads, side, side), size=(new_side, new_side), mode="bicubic")
    return grid.view(heads, new_side**2).permute(1, 0)


def test_224_window_7_checkpoint_fine_tunes_at_384_window_12(tmp_path):
    path, source, _ = save_timm(SWIN_T, tmp_path)
    model = swinkit.create_model("swin_t_384", pretrained=path).eval()
    tables = {key: value for key, value in source.state_dict().items() if key.endswith("relative_position_bias_table")}
    ours = model.state_dict()
    assert len(model.load_report.resized) == len(tables) == 12
    for key, table in tables.items():
        resized = ours[key.replace("layers.", "stages.")]
        assert resized.shape == (23 * 23, table.shape[1])
        assert torch.equal(resized, official_bicubic(table, 12))
        assert torch.equal(resized, resize_rel_pos_bias_table_simple(table, (12, 12), (529, table.shape[1])))
    assert all(
        torch.equal(ours[key], value)
        for key, value in swinkit.checkpoints.read_checkpoint(path).state_dict.items()
        if "bias_table" not in key
    )
    assert model.pretrained_cfg["input_size"] == [3, 384, 384] and model.pretrained_cfg["crop_pct"] == 1.0
    # The resized model runs at 384 and agrees with timm's 384/window-12 model given the same weights.
    reference = timm_model(dataclasses.replace(SWIN_T, img_size=384, window_size=12)).eval()
    reference.load_state_dict(swinkit.checkpoints.timm.from_native(ours), strict=False)
    pixels = torch.randn(1, 3, 384, 384, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        logits = model(pixels)
        assert logits.shape == (1, 1000) and torch.isfinite(logits).all()
        assert (logits - reference(pixels)).abs().max() <= TOLERANCE
    inferred = swinkit.create_model(pretrained=path, img_size=384, window_size=12)
    assert_bit_identical(model, inferred)


def test_fine_tuning_with_other_classes_drops_the_head_with_a_warning(tmp_path):
    path, reference, _ = save_hf(TINY, tmp_path)
    with pytest.warns(UserWarning, match=r"dropped head\.bias \(5,\), head\.weight \(5, 128\)"):
        model = swinkit.create_model(pretrained=path, num_classes=3)
    assert model.num_classes == 3
    assert model.load_report.dropped == ["head.bias", "head.weight"]
    assert model.load_report.initialised == ["head.bias", "head.weight"]
    assert torch.equal(model.head.bias, torch.zeros(3))
    assert torch.equal(model.norm.weight, reference.swin.layernorm.weight)
