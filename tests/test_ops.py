"""The functional core: partition, shift, mask, relative position index, window attention."""

import math

import pytest
import torch

from swinkit.model import ops


def test_window_partition_round_trip_and_layout():
    x = torch.randn(2, 8, 12, 5)
    windows = ops.window_partition(x, 4, 3)
    assert windows.shape == (2 * 2 * 4, 12, 5)
    # Window 1 of image 0 is rows 0..3, columns 3..5, read row-major.
    torch.testing.assert_close(windows[1], x[0, 0:4, 3:6].reshape(12, 5), rtol=0, atol=0)
    torch.testing.assert_close(ops.window_reverse(windows, 4, 3, 8, 12), x, rtol=0, atol=0)


def test_cyclic_shift_round_trip_moves_content_to_top_left():
    x = torch.arange(2 * 6 * 6 * 1, dtype=torch.float32).view(2, 6, 6, 1)
    shifted = ops.cyclic_shift(x, 2)
    assert shifted[0, 0, 0, 0] == x[0, 2, 2, 0]
    assert shifted[0, -1, -1, 0] == x[0, 1, 1, 0]
    torch.testing.assert_close(ops.cyclic_shift(shifted, -2), x, rtol=0, atol=0)
    assert ops.cyclic_shift(x, 0) is x


def test_pad_to_multiple_pads_bottom_right_with_zeros():
    x = torch.ones(1, 5, 7, 2)
    padded = ops.pad_to_multiple(x, 4, 4)
    assert padded.shape == (1, 8, 8, 2)
    assert padded[:, :5, :7].eq(1).all() and padded[:, 5:].eq(0).all() and padded[:, :, 7:].eq(0).all()
    assert ops.pad_to_multiple(x, 5, 7) is x


def test_shifted_window_regions_match_the_slides_nine_region_layout():
    regions = ops.shifted_window_regions(8, 8, window=4, shift=2)
    assert regions.unique().tolist() == list(range(9))
    expected_rows = [0, 0, 0, 0, 1, 1, 2, 2]
    for i in range(8):
        for j in range(8):
            assert regions[i, j] == expected_rows[i] * 3 + expected_rows[j]


def test_shift_window_mask_values_and_cache():
    mask = ops.shift_window_mask(8, 8, 4, 2)
    assert mask.shape == (4, 16, 16)
    assert set(mask.unique().tolist()) == {ops.MASK_VALUE, 0.0}
    # The top-left window holds one sub-window only: nothing is masked.
    assert mask[0].eq(0).all()
    # The bottom-right window holds four sub-windows of 4 tokens each: 4 * 4 * 4 allowed pairs.
    assert mask[3].eq(0).sum() == 64
    assert ops.shift_window_mask(8, 8, 4, 2) is mask


def test_relative_position_index_matches_definition():
    window, side = 3, 5
    index = ops.relative_position_index(window, window, side)
    for a in range(window * window):
        for b in range(window * window):
            (i1, j1), (i2, j2) = divmod(a, window), divmod(b, window)
            assert index[a, b] == (i1 - i2 + window - 1) * side + (j1 - j2 + window - 1)
    # A window smaller than the table's takes the centre of the same table.
    small = ops.relative_position_index(2, 3, side)
    assert small.max() < side * side and small[0, 0] == (side * side) // 2


def naive_window_attention(windows, qkv_w, qkv_b, proj_w, proj_b, heads, bias, mask):
    batch, n, channels = windows.shape
    head_dim = channels // heads
    q, k, v = (windows @ qkv_w.T + qkv_b).view(batch, n, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    logits = q @ k.transpose(-1, -2) / math.sqrt(head_dim) + bias
    if mask is not None:
        logits = logits.view(batch // mask.shape[0], mask.shape[0], heads, n, n) + mask[None, :, None]
        logits = logits.view(batch, heads, n, n)
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(batch, n, channels)
    return out @ proj_w.T + proj_b


@pytest.mark.parametrize("with_mask", [False, True])
def test_window_attention_equals_the_formula_of_eq4(with_mask):
    torch.manual_seed(0)
    channels, heads, n = 8, 2, 16
    windows = torch.randn(2 * 4, n, channels)
    qkv_w, qkv_b = torch.randn(3 * channels, channels), torch.randn(3 * channels)
    proj_w, proj_b = torch.randn(channels, channels), torch.randn(channels)
    bias = torch.randn(heads, n, n)
    mask = ops.shift_window_mask(8, 8, 4, 2) if with_mask else None
    q, k, v = ops.split_heads(windows @ qkv_w.T + qkv_b, heads)
    got = ops.window_attention(q, k, v, ops.fold_attention_bias(bias, mask)) @ proj_w.T + proj_b
    want = naive_window_attention(windows, qkv_w, qkv_b, proj_w, proj_b, heads, bias, mask)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("height", "width", "small_maps", "expected"),
    [
        (56, 56, "shrink", (7, 7, 3, 3)),
        (7, 7, "shrink", (7, 7, 0, 0)),
        (8, 10, "shrink", (7, 7, 3, 3)),
        (7, 12, "shrink", (7, 7, 0, 0)),
        (3, 5, "shrink", (3, 5, 0, 0)),
        (3, 5, "fixed", (7, 7, 3, 3)),
        # torchvision's rule: the window stays, the shift goes only along a side one window covers.
        (7, 12, "pad", (7, 7, 0, 3)),
        (8, 4, "pad", (7, 7, 3, 0)),
        (3, 5, "pad", (7, 7, 0, 0)),
        (56, 56, "pad", (7, 7, 3, 3)),
    ],
)
def test_window_layout(height, width, small_maps, expected):
    assert ops.window_layout(height, width, 7, 3, small_maps) == expected


def test_shift_along_one_side_bands_only_that_side():
    regions = ops.shifted_window_regions(7, 14, window=7, shift=(0, 3))
    assert torch.equal(regions, regions[:1].expand(7, 14))  # every row alike: no band along H
    assert regions[0].tolist() == [0] * 7 + [1] * 4 + [2] * 3
    mask = ops.shift_window_mask(7, 14, 7, (0, 3))
    assert mask.shape == (2, 49, 49) and not mask[0].any() and mask[1].eq(ops.MASK_VALUE).any()


def test_attention_probabilities_are_the_weights_window_attention_applies():
    torch.manual_seed(0)
    channels, heads, n = 8, 2, 16
    windows = torch.randn(2 * 4, n, channels)
    qkv_w, qkv_b = torch.randn(3 * channels, channels), torch.randn(3 * channels)
    bias, mask = torch.randn(heads, n, n), ops.shift_window_mask(8, 8, 4, 2)
    additive = ops.fold_attention_bias(bias, mask)
    q, k, v = ops.split_heads(windows @ qkv_w.T + qkv_b, heads)
    probs = ops.window_attention_probs(q, k, additive)
    torch.testing.assert_close(probs.sum(-1), torch.ones(8, heads, n))
    plain_v = (windows @ qkv_w.T + qkv_b)[..., 2 * channels :].view(8, n, heads, channels // heads).transpose(1, 2)
    torch.testing.assert_close(v, plain_v, rtol=0, atol=0)
    mixed = (probs @ v).transpose(1, 2).reshape(8, n, channels)
    got = ops.window_attention(q, k, v, additive)
    torch.testing.assert_close(got, mixed, rtol=1e-5, atol=1e-5)
    # Masked pairs get (numerically) no weight: the bottom-right window's four sub-windows.
    assert probs[3][:, mask[3] != 0].max() < 1e-20


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_gelu_linear_equals_the_plain_path_in_outputs_and_gradients(dtype):
    torch.manual_seed(0)
    hidden = torch.randn(2, 5, 16, requires_grad=True)
    linear = torch.nn.Linear(16, 4)
    grad = torch.randn(2, 5, 4)
    results = []
    for fused in (False, True):
        hidden.grad = None
        linear.zero_grad()
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            out = (
                ops.gelu_linear(hidden, linear.weight, linear.bias)
                if fused
                else linear(torch.nn.functional.gelu(hidden))
            )
        out.backward(grad.to(out.dtype))
        results.append(
            (out.detach().float(), hidden.grad.clone(), linear.weight.grad.clone(), linear.bias.grad.clone())
        )
    tolerance = 1e-5 if dtype is None else 2e-2
    for plain, fused in zip(*results):
        torch.testing.assert_close(fused, plain, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])  # the bias tables are float32
@pytest.mark.parametrize("with_mask", [False, True])
def test_the_fused_kernel_gets_a_dense_mask_in_the_queries_dtype(monkeypatch, dtype, with_mask):
    """The additive bias and mask reach ``scaled_dot_product_attention`` dense and in q's dtype.

    Kernels that read a mask by the queries' dtype or by its strides (pytorch/pytorch#191612) then
    read what the formula means; on CUDA the cuDNN kernel is not among those allowed.
    """
    seen = []
    fused = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **options):
        seen.append((attn_mask.dtype, attn_mask.is_contiguous()))
        return fused(q, k, v, attn_mask=attn_mask, **options)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    torch.manual_seed(0)
    heads, n = 2, 16
    q, k, v = (torch.randn(8, heads, n, 8, dtype=dtype) for _ in range(3))
    table = torch.randn(49, heads)
    shift = 2 if with_mask else 0
    layout = ops.WindowLayout(8, 8, 4, 4, shift, shift, 8, 8)
    additive = ops.attention_bias(table, layout, 7)
    with torch.no_grad():
        out = ops.window_attention(q, k, v, additive)
    assert seen == [(dtype, True)]
    expected = (ops.window_attention_probs(q, k, additive) @ v).transpose(1, 2).reshape(8, n, heads * 8)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert torch.nn.attention.SDPBackend.CUDNN_ATTENTION not in ops.MASKED_CUDA_BACKENDS
    assert torch.nn.attention.SDPBackend.EFFICIENT_ATTENTION in ops.MASKED_CUDA_BACKENDS
