"""Every fast path equals the plain path it replaces: outputs and gradients, fp32, 1e-5."""

import pytest
import torch
import torch.nn.functional as F

import swinkit
from swinkit.model import ops
from swinkit.model.layers import SwinBlock


@pytest.mark.parametrize(
    ("height", "width", "window", "shift", "small_maps"),
    [(8, 8, 4, 2, "shrink"), (7, 10, 4, 2, "shrink"), (14, 14, 7, 3, "shrink"), (5, 6, 7, 0, "shrink")]
    + [(4, 10, 7, 3, "pad"), (9, 5, 7, 3, "pad"), (3, 6, 4, 2, "fixed")],
)
def test_window_order_gathers_equal_pad_shift_partition_and_back(height, width, window, shift, small_maps):
    x = torch.randn(2, height, width, 3)
    window_h, window_w, shift_h, shift_w = ops.window_layout(height, width, window, shift, small_maps)
    padded = ops.pad_to_multiple(x, window_h, window_w)
    plain = ops.window_partition(ops.cyclic_shift(padded, (shift_h, shift_w)), window_h, window_w)
    order, inverse = ops.window_order(height, width, window_h, window_w, (shift_h, shift_w))
    fast = padded.flatten(1, 2)[:, order].reshape(plain.shape)
    torch.testing.assert_close(fast, plain, rtol=0, atol=0)
    back = ops.window_reverse(plain, window_h, window_w, *padded.shape[1:3])
    back = ops.cyclic_shift(back, (-shift_h, -shift_w))
    fast_back = fast.reshape(2, -1, 3)[:, inverse].view(x.shape)
    torch.testing.assert_close(fast_back, back[:, :height, :width], rtol=0, atol=0)
    torch.testing.assert_close(fast_back, x, rtol=0, atol=0)


def plain_block_forward(block: SwinBlock, x: torch.Tensor) -> torch.Tensor:
    """The block of Eq. 3 written with the plain steps: pad, roll, partition, explicit softmax, reverse."""
    height, width = x.shape[1:3]
    window_h, window_w, *shift = ops.window_layout(
        height, width, block.window_size, block.shift_size, block.small_maps
    )
    normed = ops.pad_to_multiple(block.norm1(x), window_h, window_w)
    padded_h, padded_w = normed.shape[1:3]
    windows = ops.window_partition(ops.cyclic_shift(normed, tuple(shift)), window_h, window_w)
    attn = block.attn
    bias = ops.relative_position_bias(attn.relative_position_bias_table, window_h, window_w)
    mask = ops.shift_window_mask(padded_h, padded_w, window_h, tuple(shift)) if any(shift) else None
    q, k, v = (
        part.view(*windows.shape[:2], attn.num_heads, -1).transpose(1, 2)
        for part in F.linear(windows, attn.qkv.weight, attn.qkv.bias).chunk(3, dim=-1)
    )
    logits = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5 + bias
    if mask is not None:
        logits = (logits.view(-1, mask.shape[0], *logits.shape[1:]) + mask.unsqueeze(1)).view(logits.shape)
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(windows.shape)
    out = attn.proj(out)
    out = ops.cyclic_shift(ops.window_reverse(out, window_h, window_w, padded_h, padded_w), (-shift[0], -shift[1]))
    x = x + out[:, :height, :width]
    mlp = block.mlp
    return x + mlp.fc2(F.gelu(mlp.fc1(block.norm2(x))))


@pytest.mark.parametrize(
    ("size", "shift", "small_maps"),
    [((8, 8), 2, "shrink"), ((9, 13), 2, "shrink"), ((8, 8), 0, "shrink"), ((3, 6), 2, "shrink")]
    + [((3, 6), 2, "pad"), ((6, 3), 2, "pad")],
)
def test_block_fast_path_equals_plain_path_in_outputs_and_gradients(size, shift, small_maps):
    torch.manual_seed(0)
    block = SwinBlock(16, 2, 4, shift, 4.0, True, 0.0, 0.0, 0.0, 1e-5, small_maps=small_maps).train()
    with torch.no_grad():
        block.attn.relative_position_bias_table.normal_(std=0.5)
    x = torch.randn(2, *size, 16, requires_grad=True)
    grad = torch.randn(2, *size, 16)
    results = []
    for forward in (block.forward, lambda inputs: plain_block_forward(block, inputs)):
        x.grad = None
        block.zero_grad()
        out = forward(x)
        out.backward(grad)
        results.append((out.detach(), x.grad.clone(), *(p.grad.clone() for p in block.parameters())))
    for fast, plain in zip(*results):
        torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)


def test_eval_cache_of_the_folded_bias_follows_the_table():
    torch.manual_seed(0)
    model = swinkit.create_model("swin_t", img_size=64, embed_dim=16, depths=(2, 2), num_heads=(1, 2), window_size=4)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    attention = model.stages[0].blocks[1].attn
    table = attention.relative_position_bias_table
    with torch.no_grad():
        first = model(x)
        entries = ops._bias_entries(table)
        cached = next(iter(entries.values()))[1]
        assert cached.shape == (16, 1, 16, 16)  # nW of the 16x16 map, heads, N, N
        assert attention.additive(model.stages[0].blocks[1].layout(16, 16)) is cached
        # An in-place change, as an optimiser step; not a constant (softmax would cancel a constant shift).
        table.add_(torch.linspace(0.0, 1.0, table.numel()).view_as(table))
        second = model(x)
    assert not torch.allclose(first, second)
    fresh = swinkit.create_model("swin_t", img_size=64, embed_dim=16, depths=(2, 2), num_heads=(1, 2), window_size=4)
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(x), second, rtol=0, atol=0)
    # While gradients are recorded nothing is cached and the table gets its gradient.
    model.train()
    entries.clear()
    model(x).sum().backward()
    assert entries == {}
    assert table.grad.abs().sum() > 0
    # The cache goes with its table.
    key = id(table)
    del model, attention, table, entries, cached
    assert key not in ops._BIAS_CACHE


def test_sixteen_bit_cpu_attention_path_matches_the_fp32_formula():
    torch.manual_seed(0)
    heads, n, head_dim = 2, 16, 8
    q, k, v = (torch.randn(2 * 4, heads, n, head_dim) for _ in range(3))
    bias, mask = torch.randn(heads, n, n), ops.shift_window_mask(8, 8, 4, 2)
    additive = ops.fold_attention_bias(bias, mask)
    expected = ops.window_attention(q, k, v, additive)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = ops.window_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), additive)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected, rtol=0.05, atol=0.05)
    # The mask matters here, so the 16-bit path really applies it.
    unmasked = ops.window_attention(q, k, v, ops.fold_attention_bias(bias, None))
    assert (unmasked - expected).abs().max() > 0.2


@pytest.mark.parametrize("chunks", [2, 3])
def test_mlp_in_slices_of_hidden_units_equals_the_plain_mlp(chunks):
    torch.manual_seed(0)
    fc1, fc2 = torch.nn.Linear(8, 32), torch.nn.Linear(32, 8)
    x = torch.randn(4, 5, 8, requires_grad=True)
    grad = torch.randn(4, 5, 8)
    results = []
    for sliced in (False, True):
        x.grad = None
        fc1.zero_grad()
        fc2.zero_grad()
        if sliced:
            out = ops.mlp(x, fc1.weight, fc1.bias, fc2.weight, fc2.bias, chunks)
        else:
            out = fc2(F.gelu(fc1(x)))
        out.backward(grad)
        results.append(
            (out.detach(), x.grad.clone(), *(p.grad.clone() for p in (*fc1.parameters(), *fc2.parameters())))
        )
    for fast, plain in zip(*results):
        torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    assert ops.mlp_chunks(torch.zeros(1), 96, 384) == 2 and ops.mlp_chunks(torch.zeros(1), 192, 768) == 1
