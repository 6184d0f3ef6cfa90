"""The pictures of ``swinkit.viz`` and the ``show``/``flops`` commands, tied to the model's own tensors."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import swinkit
from swinkit.cli import main
from swinkit.model import ops
from swinkit.model.layers import SwinBlock
from swinkit.viz import (
    attention_maps,
    cost_curve,
    draw_attention,
    draw_flops,
    draw_windows,
    flops_table,
    select_blocks,
    window_figure_data,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# The slides' example (8x8 map, M = 4, shift 2): labels of the cyclically shifted map.
SLIDES_REGIONS = np.array(
    [
        [0, 0, 0, 0, 1, 1, 2, 2],
        [0, 0, 0, 0, 1, 1, 2, 2],
        [0, 0, 0, 0, 1, 1, 2, 2],
        [0, 0, 0, 0, 1, 1, 2, 2],
        [3, 3, 3, 3, 4, 4, 5, 5],
        [3, 3, 3, 3, 4, 4, 5, 5],
        [6, 6, 6, 6, 7, 7, 8, 8],
        [6, 6, 6, 6, 7, 7, 8, 8],
    ]
)
# The same example without the cyclic shift: 9 windows of 2x2, 2x4, 4x2 and 4x4 tokens.
SLIDES_NAIVE_WINDOWS = np.array(
    [
        [0, 0, 1, 1, 1, 1, 2, 2],
        [0, 0, 1, 1, 1, 1, 2, 2],
        [3, 3, 4, 4, 4, 4, 5, 5],
        [3, 3, 4, 4, 4, 4, 5, 5],
        [3, 3, 4, 4, 4, 4, 5, 5],
        [3, 3, 4, 4, 4, 4, 5, 5],
        [6, 6, 7, 7, 7, 7, 8, 8],
        [6, 6, 7, 7, 7, 7, 8, 8],
    ]
)


def _is_png(path) -> bool:
    data = path.read_bytes()
    return len(data) > 1000 and data.startswith(PNG_SIGNATURE)


# --- windows, shift and masks ------------------------------------------------------------------


def test_default_example_is_the_slides_nine_regions():
    data = window_figure_data()
    assert (data.height, data.width, data.window, data.shift) == (8, 8, 4, 2)
    assert data.num_windows == 4 and data.num_naive_windows == 9
    np.testing.assert_array_equal(data.regions, SLIDES_REGIONS)
    np.testing.assert_array_equal(data.naive_windows, SLIDES_NAIVE_WINDOWS)
    quadrants = np.kron(np.array([[0, 1], [2, 3]]), np.ones((4, 4), dtype=int))
    np.testing.assert_array_equal(data.regular_windows, quadrants)
    rows, cols = np.indices((8, 8))
    np.testing.assert_array_equal(data.shifted_source[..., 0], (rows + 2) % 8)  # rolled toward the top-left
    np.testing.assert_array_equal(data.shifted_source[..., 1], (cols + 2) % 8)
    # Window 0 is one sub-window; the bottom-right window holds four of 2x2 tokens.
    assert (data.masks[0] == 0).all()
    assert sorted(np.unique(data.window_regions[3], return_counts=True)[1].tolist()) == [4, 4, 4, 4]
    assert ((data.masks[3] == 0).sum(axis=1) == 4).all()


@pytest.mark.parametrize("height, width, window, shift", [(8, 8, 4, 2), (10, 13, 4, 2), (14, 21, 7, 3), (9, 12, 3, 1)])
def test_drawn_masks_are_the_model_masks(height, width, window, shift):
    data = window_figure_data(height, width, window, shift)
    block = SwinBlock(8, 2, window, shift, 4.0, True, 0.0, 0.0, 0.0, 1e-5).eval()
    layout = block.layout(height, width)
    assert (data.padded_height, data.padded_width, data.shift) == (layout.padded_h, layout.padded_w, layout.shift)
    model_mask = ops.shift_window_mask(layout.padded_h, layout.padded_w, layout.window_h, layout.shift)
    np.testing.assert_array_equal(data.masks, model_mask.numpy())
    # Masked pairs are exactly the pairs of tokens from different windows of the naive partition.
    naive = data.naive_windows.reshape(-1)[data.window_tokens]
    np.testing.assert_array_equal(data.masks == 0, naive[:, :, None] == naive[:, None, :])
    # And the block's own attention gives them no weight.
    with torch.no_grad():
        probs, _ = block.attention_probabilities(torch.randn(1, height, width, 8))
    masked = torch.from_numpy(data.masks == ops.MASK_VALUE)[None, :, None].expand_as(probs)
    assert probs[masked].max() < 1e-30
    assert probs[~masked].min() > 0
    # The figure shows those very arrays.
    figure = draw_windows(data)
    drawn = [axes.images[0].get_array() for axes in figure.axes if axes.get_title().startswith("mask")]
    assert len(drawn) == data.num_windows
    for index, array in enumerate(drawn):
        np.testing.assert_array_equal(np.asarray(array), data.masks[index])


@pytest.mark.parametrize("height, width, window", [(8, 8, 4), (16, 8, 4), (56, 56, 7), (12, 18, 6)])
def test_displaced_partition_has_the_papers_window_count(height, width, window):
    data = window_figure_data(height, width, window)
    assert data.num_windows == (height // window) * (width // window)
    assert data.num_naive_windows == (height // window + 1) * (width // window + 1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"shift": 0}, "shift must be"),
        ({"shift": 4}, "shift must be"),
        ({"height": 4, "width": 9}, "no larger than the window"),
        ({"window": 0}, "window must be a positive integer"),
    ],
)
def test_window_figure_data_rejects_what_the_model_would_not_do(kwargs, message):
    with pytest.raises(ValueError, match=message):
        window_figure_data(**kwargs)


# --- attention maps ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = swinkit.create_model(
        "swin_t", img_size=64, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=4, num_classes=3
    )
    with torch.no_grad():  # a larger bias table makes the maps less uniform than at initialisation
        for module in model.modules():
            if hasattr(module, "relative_position_bias_table"):
                module.relative_position_bias_table.normal_(0, 1)
    return model.eval(), torch.randn(3, 64, 64)


def test_attention_rows_sum_to_one_and_stay_in_windows(tiny):
    model, pixels = tiny
    maps = attention_maps(model, pixels, query=(22, 22))  # token (5, 5) in stage 1
    assert [(m.stage, m.block) for m in maps] == [(s, b) for s in range(4) for b in range(2)]
    for item in maps:
        np.testing.assert_allclose(item.heads.sum(axis=(1, 2)), 1.0, atol=1e-5)
        assert (item.padding_mass == 0).all()
    regular, shifted = maps[0], maps[1]
    assert regular.query == (5, 5) and not regular.shifted and shifted.layout.shift == 2
    outside = np.ones((16, 16), dtype=bool)
    outside[4:8, 4:8] = False  # the query's regular window
    assert (regular.heads[:, outside] == 0).all()
    outside = np.ones((16, 16), dtype=bool)
    outside[2:6, 2:6] = False  # its shifted window, across the regular borders at 4
    assert (shifted.heads[:, outside] == 0).all()
    assert shifted.heads[:, 2:4, 2:6].sum() > 0.05
    # Stage 3 has a 4x4 map: one window and no shift in both blocks; stage 4 a 2x2 window.
    assert maps[5].block_shift == 2 and not maps[5].shifted
    assert (maps[7].layout.window_h, maps[7].layout.window_w) == (2, 2)
    assert (maps[5].heads > 0).all()


def test_shifted_attention_stays_in_the_sub_window(tiny):
    model, pixels = tiny
    (item,) = attention_maps(model, pixels, query=(63, 63), blocks=[(0, 1)])
    # Token (15, 15) shares its shifted window with the rows and columns that wrapped around
    # from the top and left; the mask keeps it inside its 2x2 sub-window.
    inside = np.zeros((16, 16), dtype=bool)
    inside[14:, 14:] = True
    np.testing.assert_allclose(item.heads[:, inside].sum(axis=1), 1.0, atol=1e-5)
    assert item.heads[:, ~inside].max() < 1e-30


def test_attention_map_is_the_models_probability_row(tiny):
    model, pixels = tiny
    regular, shifted = attention_maps(model, pixels, query=(22, 22), blocks=[(0, 0), (0, 1)])
    first, second = model.stages[0].blocks
    with torch.no_grad():
        tokens = model.patch_embed(pixels[None])
        bias = ops.relative_position_bias(first.attn.relative_position_bias_table, 4, 4)
        windows = ops.window_partition(first.norm1(tokens), 4, 4)
        q, k, _ = ops.split_heads(first.attn.qkv(windows), 1)
        probs = ops.window_attention_probs(q, k, ops.fold_attention_bias(bias, None))
        # Token (5, 5) is token (1, 1) of window (1, 1), window 5 of 16.
        np.testing.assert_allclose(regular.heads[:, 4:8, 4:8], probs[5, :, 5].view(1, 4, 4).numpy(), atol=1e-6)

        after_first = first(tokens)
        bias = ops.relative_position_bias(second.attn.relative_position_bias_table, 4, 4)
        windows = ops.window_partition(ops.cyclic_shift(second.norm1(after_first), 2), 4, 4)
        mask = ops.shift_window_mask(16, 16, 4, 2)
        q, k, _ = ops.split_heads(second.attn.qkv(windows), 1)
        probs = ops.window_attention_probs(q, k, ops.fold_attention_bias(bias, mask))
        # Shifted by 2, token (5, 5) sits at (3, 3): the last token of window 0, which holds rows and columns 2..5.
        np.testing.assert_allclose(shifted.heads[:, 2:6, 2:6], probs[0, :, 15].view(1, 4, 4).numpy(), atol=1e-6)


def test_attention_reports_padding_and_leaves_the_model_as_it_was(tiny):
    model, _ = tiny
    model.train()
    (item,) = attention_maps(model, torch.randn(1, 3, 60, 60), query=(59, 59), blocks=[(0, 0)])
    assert model.training
    assert all(len(block._forward_pre_hooks) == 0 for stage in model.stages for block in stage.blocks)
    model.eval()
    assert item.heads.shape == (1, 15, 15) and item.layout.padded_h == 16
    assert item.padding_mass[0] > 0  # the query's window is the padded corner: 7 of its 16 keys are padding
    np.testing.assert_allclose(item.heads.sum(axis=(1, 2)) + item.padding_mass, 1.0, atol=1e-5)


def test_attention_rejects_bad_requests(tiny):
    model, pixels = tiny
    with pytest.raises(ValueError, match="one image"):
        attention_maps(model, torch.randn(2, 3, 64, 64))
    with pytest.raises(ValueError, match="outside the 64x64 input"):
        attention_maps(model, pixels, query=(64, 0))
    with pytest.raises(ValueError, match="does not exist"):
        attention_maps(model, pixels, blocks=[(0, 2)])
    with pytest.raises(ValueError, match="stage indices 0..3"):
        select_blocks(model, stage=4)
    assert select_blocks(model) == [(s, b) for s in range(4) for b in range(2)]
    assert select_blocks(model, stage=1, block=1) == [(1, 1)]


def test_draw_attention_overlays_each_map(tiny):
    model, pixels = tiny
    maps = attention_maps(model, pixels, blocks=[(0, 0), (2, 1)])
    figure = draw_attention(np.full((64, 64, 3), 0.5), maps, max_heads=1)
    assert len(figure.axes) == 4
    overlay = figure.axes[0].images[1].get_array()
    assert overlay.shape == (64, 64, 4)
    # Clear where the map is zero, coloured in the query's window (token (8, 8): pixels 32..47).
    np.testing.assert_array_equal(np.asarray(overlay[..., 3]) > 0, np.kron(maps[0].mean > 0, np.ones((4, 4))) > 0)


# --- cost of attention -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model, img_size", [("swin_t", 224), ("swin_b_384", 384), ("swin_s", (100, 301)), ("swin_t", 1024)]
)
def test_flops_table_totals_equal_count_flops(model, img_size):
    table = flops_table(model, img_size)
    count = swinkit.count_flops(model, img_size)
    assert table.total == count.total
    for row in table.rows[1:-1]:
        assert row.projections == count.by_stage[row.name]["projections"]
        assert row.window_attention == count.by_stage[row.name]["attention"]


def test_flops_table_terms_are_eq1_and_eq2():
    stage1 = flops_table("swin_t", 224).rows[1]
    assert (stage1.name, stage1.height, stage1.width, stage1.dim, stage1.blocks) == ("stage1", 56, 56, 96, 2)
    assert stage1.projections == 2 * 4 * 56 * 56 * 96**2
    assert stage1.window_attention == 2 * 2 * 7**2 * 56 * 56 * 96
    assert stage1.global_attention == 2 * 2 * (56 * 56) ** 2 * 96
    assert stage1.global_attention // stage1.window_attention == 56 * 56 // 7**2


def test_cost_curve_and_plot():
    curve = cost_curve("swin_t", [224, 448], seconds=[0.1, 0.3])
    assert curve.window_total == (swinkit.count_flops("swin_t", 224).total, swinkit.count_flops("swin_t", 448).total)
    # Four times the tokens: window attention x4, global attention x16.
    assert curve.window_attention[1] == 4 * curve.window_attention[0]
    assert curve.global_attention[1] == 16 * curve.global_attention[0]
    figure = draw_flops(curve)
    assert len(figure.axes) == 3  # the costs, the times, and the times' GFLOPs axis
    np.testing.assert_allclose(figure.axes[0].lines[0].get_ydata(), np.array(curve.window_total) / 1e9)
    with pytest.raises(ValueError, match="one time per size"):
        cost_curve("swin_t", [224], seconds=[1.0, 2.0])


# --- commands ------------------------------------------------------------------------------------


def test_show_windows_writes_a_png(tmp_path, capsys):
    out = tmp_path / "windows.png"
    assert main(["show", "windows", "-o", str(out)]) == 0
    assert _is_png(out)
    assert "4 windows, 9 without the cyclic shift" in capsys.readouterr().out
    assert main(["show", "windows", "--size", "4", "4", "-o", str(tmp_path / "x.png")]) == 2


def test_show_attention_writes_a_png(tmp_path, tiny):
    model, _ = tiny
    swinkit.save_pretrained(model, tmp_path / "model")
    image = tmp_path / "image.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 100, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "attention.png"
    assert main(["show", "attention", "--model", str(tmp_path / "model"), "--image", str(image), "-o", str(out)]) == 0
    assert _is_png(out)
    picked = tmp_path / "one.png"
    args = ["--stage", "1", "--block", "1", "--head", "0", "--query", "5", "60", "-o", str(picked)]
    assert main(["show", "attention", "--model", str(tmp_path / "model"), "--image", str(image), *args]) == 0
    assert _is_png(picked)


def test_flops_command_prints_the_table_and_plots(tmp_path, capsys, tiny):
    assert main(["flops", "--model", "swin_t", "--img-size", "224"]) == 0
    out = capsys.readouterr().out
    assert f"{swinkit.count_flops('swin_t', 224).total:,} FLOPs (= count_flops)" in out
    parts = [line.split()[0] for line in out.splitlines()[4:10]]
    assert parts == ["embedding", "stage1", "stage2", "stage3", "stage4", "head"]
    model, _ = tiny
    swinkit.save_pretrained(model, tmp_path / "model")
    plot = tmp_path / "flops.png"
    argv = ["flops", "--model", str(tmp_path / "model"), "--plot", str(plot), "--sizes", "32", "64", "--measure"]
    argv += ["--repeats", "1"]
    assert main(argv) == 0
    assert _is_png(plot)
    assert "measured forward time (CPU, " in capsys.readouterr().out


def test_importing_viz_leaves_the_matplotlib_backend_alone():
    code = "import sys, swinkit.viz, swinkit.cli; print('matplotlib.pyplot' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
