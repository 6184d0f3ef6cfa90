"""SimMIM: swinkit's masked-image model gives transformers' reconstruction and loss (V1 and V2) with the
same weights and mask; SimMIM checkpoints of transformers, swinkit and the official layout load with
their mask token and decoder, and swinkit's load back into transformers; a classifier fine-tunes from
any of them; the mask generator follows the official one. Reference weights are random, every
parameter drawn off its initial value (the mask token included, which transformers sets to zeros)."""

import re

import numpy as np
import pytest
import torch
from torch import nn

import swinkit
from swinkit.checkpoints import CheckpointError
from swinkit.checkpoints.simmim import create_simmim, load_simmim, save_simmim
from swinkit.model import MaskGenerator, SimMIM
from swinkit.model.simmim import choose_mask_patch, masked_l1_loss
from swinkit.train.layer_decay import default_layer_decay, layer_id
from swinkit.preprocessing import Preprocessing
from swinkit.train.optim import build_optimizer
from swinkit.viz.figure import save_figure
from swinkit.viz.reconstruction import MASKED_GREY, draw_reconstructions, reconstruction_panels

transformers = pytest.importorskip("transformers")

TOLERANCE = 1e-5
# 64 pixels, patch 4, four stages: maps 16, 8, 4, 2 with window 2 (shifts in the first three).
ARCH = {"image_size": 64, "patch_size": 4, "embed_dim": 16, "depths": [2, 2, 2, 2], "num_heads": [1, 2, 2, 4]}
STRIDE = 32


def randomise(model: nn.Module, seed: int) -> nn.Module:
    """Draw every parameter: LayerNorms around 1, V2 logit scales around log 10, bias tables, the V2
    position MLP and the mask token with std 0.5, the rest std 0.02."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            for name, param in module.named_parameters(recurse=False):
                noise = torch.randn(param.shape, generator=generator)
                if isinstance(module, nn.LayerNorm) and name == "weight":
                    param.copy_(1 + 0.1 * noise)
                elif name == "logit_scale":
                    param.copy_(2.3 + 0.5 * noise)
                elif name in ("relative_position_bias_table", "mask_token") or (
                    isinstance(module, nn.Linear) and module.in_features == 2
                ):
                    param.copy_(0.5 * noise)
                else:
                    param.copy_(0.02 * noise)
    return model.eval()


def hf_simmim(version: int, seed: int = 0):
    if version == 1:
        config = transformers.SwinConfig(window_size=2, encoder_stride=STRIDE, **ARCH)
        return randomise(transformers.SwinForMaskedImageModeling(config), seed)
    config = transformers.Swinv2Config(window_size=2, encoder_stride=STRIDE, pretrained_window_sizes=[0] * 4, **ARCH)
    return randomise(transformers.Swinv2ForMaskedImageModeling(config), seed)


def inputs(batch: int = 2, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and a random mask on the 16x16 patch grid (about 60% masked)."""
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(batch, 3, 64, 64, generator=generator)
    return pixels, torch.rand(batch, 16, 16, generator=generator) < 0.6


def hf_outputs(model, pixels, mask):
    with torch.no_grad():
        out = model(pixels, bool_masked_pos=mask.flatten(1))
    return out.reconstruction, out.loss


def ours(model: SimMIM, pixels, mask):
    with torch.no_grad():
        reconstruction = model(pixels, mask)
    return reconstruction, model.loss(pixels, reconstruction, mask)


def assert_same(reference, got) -> tuple[float, float]:
    (ref_rec, ref_loss), (rec, loss) = reference, got
    assert rec.shape == ref_rec.shape == (2, 3, 64, 64)
    assert ref_rec.std() > 0.01, "reconstruction too flat to reveal a mapping bug"
    differences = (rec - ref_rec).abs().max().item(), (loss - ref_loss).abs().item()
    assert max(differences) <= TOLERANCE, differences
    return differences


def official_layout(state: dict[str, torch.Tensor], version: int) -> dict[str, torch.Tensor]:
    """swinkit's SimMIM state dict renamed, here in the test, to the official SimMIM names: merging at
    the end of the previous stage under ``encoder.layers``, ``encoder.mask_token``, ``decoder.0``, and
    the buffers the official model stores (which must be ignored)."""
    official = {}
    for key, tensor in state.items():
        merging = r"^encoder\.stages\.(\d+)\.downsample"
        key = re.sub(merging, lambda m: f"encoder.layers.{int(m[1]) - 1}.downsample", key)
        key = re.sub(r"^encoder\.stages\.", "encoder.layers.", key)
        key = {"mask_token": "encoder.mask_token"}.get(key, key).replace("decoder.proj.", "decoder.0.")
        official[key] = tensor
        if key.endswith("attn.proj.weight"):
            block = key.removesuffix("attn.proj.weight")
            official[block + "attn.relative_position_index"] = torch.zeros(16, dtype=torch.long)
            official[block + "attn_mask"] = torch.zeros(4, 4, 4) if version == 1 else torch.zeros(1)
    assert "encoder.layers.0.downsample.reduction.weight" in official and "encoder.mask_token" in official
    return official


@pytest.mark.parametrize("version", [1, 2])
def test_transformers_simmim_checkpoint_loads_and_gives_its_reconstruction_and_loss(version, tmp_path):
    reference = hf_simmim(version)
    reference.save_pretrained(tmp_path / "hf")
    model = create_simmim(tmp_path / "hf").eval()
    assert model.config.version == version and model.config.window_size == 2 and model.stride == STRIDE
    assert torch.equal(model.mask_token, reference.base_model.embeddings.mask_token)
    pixels, mask = inputs()
    assert_same(hf_outputs(reference, pixels, mask), ours(model, pixels, mask))
    assert model.load_report.format == "hf" and not model.load_report.dropped


@pytest.mark.parametrize("version", [1, 2])
def test_swinkit_simmim_saves_for_transformers_and_as_its_own_with_the_same_outputs(version, tmp_path):
    name = "simmim_swin_t" if version == 1 else "simmim_swinv2_t"
    model = swinkit.create_model(name, img_size=64, window_size=2, embed_dim=16, depths=(2, 2, 2, 2),
                                 num_heads=(1, 2, 2, 4))
    randomise(model, 3)
    pixels, mask = inputs(seed=4)
    expected = ours(model, pixels, mask)
    save_simmim(model, tmp_path / "hf", format="hf")
    cls = transformers.SwinForMaskedImageModeling if version == 1 else transformers.Swinv2ForMaskedImageModeling
    reference = cls.from_pretrained(tmp_path / "hf").eval()
    assert_same(hf_outputs(reference, pixels, mask), expected)
    save_simmim(model, tmp_path / "native", preprocessing={"mean": (0.5, 0.4, 0.3), "std": (0.2, 0.2, 0.2)})
    again = create_simmim(tmp_path / "native").eval()
    assert again.load_report.format == "native" and again.pretrained_cfg["mean"] == [0.5, 0.4, 0.3]
    for key, tensor in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], tensor), key
    assert_same(expected, ours(again, pixels, mask))


@pytest.mark.parametrize("version", [1, 2])
def test_official_simmim_layout_loads_with_mask_token_and_decoder(version, tmp_path):
    reference = hf_simmim(version, seed=5)
    reference.save_pretrained(tmp_path / "hf")
    state = create_simmim(tmp_path / "hf").state_dict()
    torch.save({"model": official_layout(state, version), "epoch": 99}, tmp_path / "simmim.pth")
    model = create_simmim(tmp_path / "simmim.pth", window_size=2, img_size=64).eval()
    assert model.load_report.format == "official" and model.load_report.ignored
    pixels, mask = inputs(seed=6)
    assert_same(hf_outputs(reference, pixels, mask), ours(model, pixels, mask))


def test_a_classifier_fine_tunes_from_each_simmim_layout_without_mask_token_and_decoder(tmp_path):
    reference = hf_simmim(1, seed=7)
    reference.save_pretrained(tmp_path / "hf")
    simmim = create_simmim(tmp_path / "hf").eval()
    save_simmim(simmim, tmp_path / "native")
    torch.save({"model": official_layout(simmim.state_dict(), 1)}, tmp_path / "official.pth")
    pixels, mask = inputs(seed=8)
    for source in (tmp_path / "hf", tmp_path / "native", tmp_path / "official.pth"):
        classifier = swinkit.create_model(pretrained=source, num_classes=3).eval()
        assert isinstance(classifier, swinkit.SwinTransformer) and classifier.num_classes == 3
        report = classifier.load_report
        assert report.dropped == ["decoder.proj.bias", "decoder.proj.weight", "mask_token"], source
        assert report.initialised == ["head.bias", "head.weight"] and not report.missing
        with torch.no_grad():
            features = classifier.forward_features(pixels)
            assert torch.allclose(features, simmim.encoder.forward_features(pixels), atol=1e-6)
            masked = classifier.forward_features(pixels, mask, simmim.mask_token)
            assert torch.equal(simmim.decoder(masked), simmim(pixels, mask))


def test_a_classifier_checkpoint_is_not_a_simmim_one(tmp_path):
    swinkit.save_pretrained(swinkit.create_model("swin_atto"), tmp_path / "classifier")
    with pytest.raises(CheckpointError, match="not a SimMIM checkpoint"):
        create_simmim(tmp_path / "classifier")
    with pytest.raises(ValueError, match=r"create_simmim\(pretrained, 'simmim_swin_atto'\)"):
        swinkit.create_model("simmim_swin_atto", pretrained=tmp_path / "classifier")
    model = swinkit.create_model("simmim_swin_atto")
    bigger = swinkit.create_model("simmim_swin_atto", in_chans=1)
    save_simmim(bigger, tmp_path / "gray")
    with pytest.raises(CheckpointError, match="decoder.proj.weight"):
        load_simmim(model, tmp_path / "gray")


def test_without_a_mask_the_backbone_is_unchanged_and_an_empty_mask_changes_nothing():
    model = swinkit.create_model("simmim_swin_atto").eval()
    randomise(model, 9)
    pixels = torch.randn(2, 3, 32, 32)
    nothing = torch.zeros(2, 16, 16, dtype=torch.bool)
    everything = torch.ones(2, 16, 16, dtype=torch.bool)
    with torch.no_grad():
        plain = model.encoder.forward_features(pixels)
        assert torch.equal(model.encoder.forward_features(pixels, nothing, model.mask_token), plain)
        assert torch.equal(model(pixels), model(pixels, nothing))
        blank = model.encoder.forward_features(torch.randn(2, 3, 32, 32), everything, model.mask_token)
        assert torch.allclose(model.encoder.forward_features(pixels, everything, model.mask_token), blank)
        assert not torch.allclose(plain, blank)
    with pytest.raises(ValueError, match="both a mask and a mask token"):
        model.encoder.forward_features(pixels, nothing)
    with pytest.raises(ValueError, match=r"booleans of shape \(batch, patch rows, patch columns\) = \(2, 16, 16\)"):
        model(pixels, torch.zeros(2, 8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="multiples of it, got 36x36"):
        model(torch.randn(1, 3, 36, 36))


def test_the_loss_is_l1_over_masked_pixels_and_channels():
    pixels = torch.zeros(1, 3, 8, 8)
    reconstruction = torch.zeros(1, 3, 8, 8)
    reconstruction[:, :, :4, :4] = 2.0  # the masked top-left patch, all channels: |2| each
    reconstruction[:, 0, 4:, 4:] = 5.0  # an unmasked patch: not counted
    mask = torch.tensor([[[True, False], [False, False]]])
    loss = masked_l1_loss(pixels, reconstruction, mask, patch_size=4)
    assert loss.item() == pytest.approx(2.0 * 16 * 3 / (16 + 1e-5) / 3, rel=1e-6)
    with pytest.raises(ValueError, match=r"mask must have shape \(batch, H/4, W/4\) = \(1, 2, 2\)"):
        masked_l1_loss(pixels, reconstruction, mask[:, :1], patch_size=4)


def test_the_official_mask_and_masks_sized_from_the_data():
    official = MaskGenerator(192)
    assert (official.grid, official.mask_count) == ((6, 6), 22)
    masks = official(4, torch.Generator().manual_seed(0))
    assert masks.shape == (4, 48, 48) and masks.dtype == torch.bool
    assert masks.sum(dim=(1, 2)).tolist() == [22 * 64] * 4
    blocks = masks.reshape(4, 6, 8, 6, 8)
    assert torch.equal(blocks.amin(dim=(2, 4)), blocks.amax(dim=(2, 4)))  # whole 32-pixel squares
    assert not torch.equal(masks[0], masks[1])
    assert torch.equal(official(4, torch.Generator().manual_seed(0)), masks)
    assert choose_mask_patch(192, 32) == 32 and choose_mask_patch(224, 32) == 32
    assert choose_mask_patch(32, 8) == 8 and choose_mask_patch((64, 96), 8) == 8 and choose_mask_patch(256, 32) == 32
    compact = swinkit.create_model("simmim_swin_atto").mask_generator()
    assert (compact.mask_patch, compact.model_patch, compact.grid, compact.mask_count) == (8, 2, (4, 4), 10)
    assert compact(1).shape == (1, 16, 16)
    with pytest.raises(ValueError, match="multiple of the model's total stride 32"):
        MaskGenerator(192, mask_patch=16)
    with pytest.raises(ValueError, match=r"divide the input size 224x224; for this input choose among \[32, 224\]"):
        MaskGenerator(224, mask_patch=64)
    with pytest.raises(ValueError, match=r"mask ratio must be in \(0, 1\)"):
        MaskGenerator(192, ratio=1.0)
    with pytest.raises(ValueError, match="make the input size a multiple of 32|a multiple of 32"):
        choose_mask_patch(200, 32)


def test_registered_names_build_the_official_pretraining_models():
    model = swinkit.create_model("simmim_swin_b", device="meta")
    assert (model.config.img_size, model.config.window_size, model.config.embed_dim) == ((192, 192), 6, 128)
    assert model.decoder.proj.out_channels == 32 * 32 * 3 and model.config.drop_path_rate == 0.0
    v2 = swinkit.create_model("simmim_swinv2_b", device="meta")
    assert (v2.config.version, v2.config.window_size, v2.config.drop_path_rate) == (2, 12, 0.1)
    assert swinkit.create_model("simmim_swin_atto").stride == 8
    with pytest.raises(ValueError, match="num_classes=0"):
        SimMIM(swinkit.get_config("swin_atto"))


def test_hooks_and_lora_adapters_on_qkv_see_the_simmim_encoder():
    peft = pytest.importorskip("peft")
    model = swinkit.create_model("simmim_swin_atto").eval()
    pixels = torch.randn(1, 3, 32, 32)
    mask = model.mask_generator()(1, torch.Generator().manual_seed(0))
    fired = []
    for name, module in model.named_modules():
        if name.endswith("attn.qkv") or name == "decoder.proj":
            module.register_forward_hook(lambda m, i, o, name=name: fired.append(name))
    with torch.no_grad():
        before = model(pixels, mask)
    assert len(fired) == 6 + 1 and fired[-1] == "decoder.proj"
    adapted = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["qkv"]))
    layers = [name for name, m in adapted.named_modules() if isinstance(m, peft.tuners.lora.LoraLayer)]
    assert len(layers) == 6
    with torch.no_grad():
        assert torch.equal(adapted(pixels, mask), before)  # lora_B starts at zero
        for name, parameter in adapted.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.5)
        assert not torch.allclose(adapted(pixels, mask), before, atol=1e-4)


def test_layer_wise_lr_decay_gives_the_official_rates_and_defaults():
    model = swinkit.create_model("swin_b", embed_dim=16, num_heads=(1, 1, 1, 1), num_classes=3)  # depths 2, 2, 18, 2
    optimizer = build_optimizer(model, lr=1.0, weight_decay=0.05, layer_decay=0.9)
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    expected = {  # name: (layer id of the official get_swin_layer, decays)
        "patch_embed.proj.weight": 25,
        "patch_embed.norm.bias": 25,
        "stages.0.blocks.1.attn.qkv.weight": 23,  # id 2
        "stages.1.downsample.reduction.weight": 23,  # official layers.0.downsample: id sum(depths[:1]) = 2
        "stages.2.blocks.5.mlp.fc1.weight": 15,  # id 2 + 2 + 5 + 1 = 10
        "stages.3.downsample.norm.weight": 3,  # official layers.2.downsample: id 22
        "stages.3.blocks.1.attn.proj.weight": 1,  # id 24
        "norm.weight": 0,
        "head.weight": 0,
    }
    parameters = dict(model.named_parameters())
    for name, power in expected.items():
        group = group_of[id(parameters[name])]
        assert group["lr"] == pytest.approx(0.9**power, rel=1e-12), name
        exempt = name.endswith("bias") or ".norm" in name or name.startswith("norm")
        assert group["weight_decay"] == (0.0 if exempt else 0.05), name
    table = "stages.0.blocks.0.attn.relative_position_bias_table"
    assert group_of[id(parameters[table])]["weight_decay"] == 0.0
    simmim = swinkit.create_model("simmim_swin_atto")
    groups = build_optimizer(simmim, lr=1.0, weight_decay=0.05).param_groups
    assert next(g for g in groups if any(p is simmim.mask_token for p in g["params"]))["weight_decay"] == 0.0
    assert layer_id("mask_token", (2, 2, 2)) == 0
    defaults = {name: default_layer_decay(swinkit.get_config(name)) for name in ("swin_b", "swin_l", "swinv2_b")}
    assert defaults == {"swin_b": 0.9, "swin_l": 0.7, "swinv2_b": 0.75}
    assert default_layer_decay(swinkit.get_config("swin_atto")) == 0.9


def test_the_reconstruction_picture_shows_original_masked_and_predicted_patches(tmp_path):
    preprocessing = Preprocessing.default((8, 8), 3)
    mean = torch.tensor(preprocessing.mean).view(1, 3, 1, 1)
    std = torch.tensor(preprocessing.std).view(1, 3, 1, 1)
    pixels = (torch.full((2, 3, 8, 8), 0.2) - mean) / std  # 0.2 everywhere once denormalised
    reconstruction = (torch.full((2, 3, 8, 8), 0.9) - mean) / std
    mask = torch.tensor([[[True, False], [False, False]], [[False, False], [False, True]]])
    panels = reconstruction_panels(pixels, mask, reconstruction, preprocessing)
    assert panels.shape == (2, 3, 8, 8, 3)
    assert np.allclose(panels[:, 0], 0.2, atol=1e-6)
    assert np.allclose(panels[0, 1, :4, :4], MASKED_GREY) and np.allclose(panels[0, 1, 4:], 0.2, atol=1e-6)
    assert np.allclose(panels[0, 2, :4, :4], 0.9, atol=1e-6) and np.allclose(panels[0, 2, :4, 4:], 0.2, atol=1e-6)
    assert np.allclose(panels[1, 2, 4:, 4:], 0.9, atol=1e-6) and np.allclose(panels[1, 2, :4], 0.2, atol=1e-6)
    path = save_figure(draw_reconstructions(pixels, mask, reconstruction, preprocessing, "epoch 1"), tmp_path / "r.png")
    assert path.stat().st_size > 1000


def test_unlabelled_images_are_read_from_any_depth_and_split(tmp_path):
    from PIL import Image

    from swinkit.data.images import BadImagesError
    from swinkit.data.sources import load_unlabelled

    for index, folder in enumerate(["", "a", "a/b/c", "d", "d", "d", "e", "e", "e", "e"]):
        (tmp_path / "set" / folder).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (12, 10), (index * 20, 0, 0)).save(tmp_path / "set" / folder / f"{index}.png")
    (tmp_path / "set" / ".DS_Store").write_bytes(b"ignored")
    data = load_unlabelled(tmp_path / "set", val_split=0.2, seed=3)
    assert (len(data.train), len(data.val), data.classes) == (8, 2, ["image"])
    assert set(data.train.labels) == {0} and data.train[0][0].size == (12, 10)
    names = set(data.train.paths) | set(data.val.paths)
    assert len(names) == 10 and any("/a/b/c/" in name for name in names)
    assert load_unlabelled(tmp_path / "set", val_split=0.2, seed=3).val.paths == data.val.paths
    (tmp_path / "set" / "notes.txt").write_text("not an image")
    with pytest.raises(BadImagesError, match="notes.txt"):
        load_unlabelled(tmp_path / "set")
    assert len(load_unlabelled(tmp_path / "set", val_split=0, skip_bad_images=True).train) == 10
    with pytest.raises(ValueError, match="is not a folder"):
        load_unlabelled(tmp_path / "missing")
