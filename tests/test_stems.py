"""The small-data stems (``stem="conv"``, ``"spt"``): the patch embedding's token map, saving, the default kept."""

import pytest
import torch

import swinkit
from swinkit.model import VARIANTS
from swinkit.checkpoints import CheckpointError
from swinkit.model.flops import count_flops
from swinkit.model.stems import diagonal_shifts

TINY = {"embed_dim": 16, "depths": (1, 1), "num_heads": (1, 2), "window_size": 4, "in_chans": 1, "num_classes": 3}


def test_the_default_stem_is_the_patch_embedding_of_every_released_variant():
    assert all(config.stem == "patch" for config in VARIANTS.values())
    model = swinkit.create_model("swin_atto")
    assert type(model.patch_embed).__name__ == "PatchEmbed"
    assert sorted(model.state_dict()) == sorted(swinkit.create_model("swin_atto", stem="patch").state_dict())


@pytest.mark.parametrize("stem", ["patch", "conv", "spt"])
@pytest.mark.parametrize("patch", [1, 2, 4])
@pytest.mark.parametrize(
    ("remainder", "grid"), [("pad", lambda side, p: -(-side // p)), ("crop", lambda side, p: side // p)]
)
def test_every_stem_gives_the_patch_grid_of_the_patch_embedding(stem, patch, remainder, grid):
    model = swinkit.create_model("swin_atto", stem=stem, patch_size=patch, patch_remainder=remainder, **TINY).eval()
    pixels = torch.randn(2, 1, 13, 18)
    tokens = model.patch_embed(pixels)
    assert tokens.shape == (2, grid(13, patch), grid(18, patch), 16)
    assert model(pixels).shape == (2, 3)
    # The same LayerNorm closes every stem: unit variance per token at initialisation.
    assert torch.allclose(tokens.var(dim=-1, unbiased=False).mean(), torch.tensor(1.0), atol=1e-2)


def test_the_conv_stem_halves_down_to_the_patch_with_at_least_two_convolutions():
    strides = {patch: [layer[0].stride[0] for layer in swinkit.create_model("swin_atto", stem="conv", patch_size=patch,
                                                                              **TINY).patch_embed.convs]
               for patch in (1, 2, 4, 8)}  # fmt: skip
    assert strides == {1: [1, 1], 2: [1, 2], 4: [2, 2], 8: [2, 2, 2]}
    with pytest.raises(ValueError, match="patch_size must be a power of two"):
        swinkit.get_config("swin_atto", stem="conv", patch_size=3)
    with pytest.raises(ValueError, match="stem must be one of 'patch', 'conv', 'spt'"):
        swinkit.get_config("swin_atto", stem="overlap")


def test_shifted_patch_tokenization_stacks_the_image_and_its_four_diagonal_shifts():
    image = torch.arange(16.0).view(1, 1, 4, 4)
    stacked = diagonal_shifts(image, 1)
    assert stacked.shape == (1, 5, 4, 4)
    assert torch.equal(stacked[0, 0], image[0, 0])
    assert torch.equal(stacked[0, 1, 1:, 1:], image[0, 0, :3, :3]) and stacked[0, 1, 0].abs().sum() == 0  # down-right
    assert torch.equal(stacked[0, 4, :3, :3], image[0, 0, 1:, 1:]) and stacked[0, 4, 3].abs().sum() == 0  # up-left
    assert torch.equal(stacked[0, 2, 1:, :3], image[0, 0, :3, 1:])  # down-left
    assert torch.equal(stacked[0, 3, :3, 1:], image[0, 0, 1:, :3])  # up-right


def test_stems_count_their_flops():
    base = count_flops(swinkit.get_config("swin_atto", in_chans=1)).by_term["embedding"]
    assert base == 16 * 16 * 32 * 1 * 4
    assert count_flops(swinkit.get_config("swin_atto", in_chans=1, stem="spt")).by_term["embedding"] == 5 * base
    # Conv stem, patch 2: a stride-1 3x3 conv at 32x32 (1 -> 32), a stride-2 one at 16x16 (32 -> 32), the 1x1 one.
    conv = count_flops(swinkit.get_config("swin_atto", in_chans=1, stem="conv")).by_term["embedding"]
    assert conv == 32 * 32 * 32 * 9 + 16 * 16 * 32 * 32 * 9 + 16 * 16 * 32 * 32


@pytest.mark.parametrize("stem", ["conv", "spt"])
def test_a_stem_travels_with_native_checkpoints_and_other_formats_refuse_it(stem, tmp_path):
    model = swinkit.create_model("swin_atto", stem=stem, **TINY).eval()
    with torch.no_grad():  # BatchNorm statistics other than the initial ones must travel too
        model.train()(torch.randn(4, 1, 32, 32))
    model.eval()
    swinkit.save_pretrained(model, tmp_path / "native")
    loaded = swinkit.create_model(pretrained=tmp_path / "native").eval()
    assert loaded.config == model.config
    pixels = torch.randn(2, 1, 32, 32)
    assert torch.equal(loaded(pixels), model(pixels))
    for name in ("hf", "timm"):
        with pytest.raises(CheckpointError, match=f"a {name} export cannot keep stem='{stem}'"):
            swinkit.save_pretrained(model, tmp_path / name, format=name)
