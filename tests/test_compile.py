"""torch.compile with inductor, the backend users get, gives eager's numbers: Swin V1 and V2, evaluation and a
training step, at an odd image size, over several batch sizes in sequence on one compiled model.

A GPU check once found compiled outputs off after a second batch size; on CPUs inductor agrees, and these
tests keep it so (``benchmarks/gpu_check.py`` runs the same comparison on a GPU). Inductor compiles are slow
on small machines: the models are as small as covers window padding, the shift mask and a merging.
"""

import pytest
import torch
import torch._dynamo
import torch.nn.functional as F
from torch import nn

import swinkit

#: 37x45 pixels: neither side a multiple of the patch, and the 10x12 token map no multiple of the window,
#: so the patch embedding, the windows and the shift mask all see padding.
SIZE = (37, 45)
#: Batch sizes in sequence on one compiled model: the first compiles a static graph, the second a dynamic one.
BATCHES = (2, 3, 5, 8)
TOLERANCE = 1e-5


def tiny(version: int, depths: tuple[int, ...] = (2, 1)) -> nn.Module:
    """A W-MSA and an SW-MSA block, then (by default) a merging and a one-block stage, with weights drawn off
    their initial values."""
    torch.manual_seed(version)
    model = swinkit.create_model(
        "swin_t" if version == 1 else "swinv2_t",
        img_size=SIZE,
        embed_dim=16,
        depths=depths,
        num_heads=(1, 2)[: len(depths)],
        window_size=4,
        num_classes=5,
        drop_path_rate=0.0,
    )
    with torch.no_grad():
        for module in model.modules():
            for name, param in module.named_parameters(recurse=False):
                noise = torch.randn_like(param)
                # LayerNorms around 1: V2's post-norms start at 0, which would hide its attention and MLP.
                param.copy_(1 + 0.1 * noise if isinstance(module, nn.LayerNorm) and name == "weight" else 0.1 * noise)
    return model


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("version", [1, 2])
def test_inductor_evaluation_equals_eager_over_batch_sizes(version):
    model = tiny(version).eval()
    compiled = torch.compile(model, fullgraph=True)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for batch in BATCHES:
            pixels = torch.randn(batch, 3, *SIZE, generator=generator)
            expected = model(pixels)
            assert expected.std() > 0.05, "logits too flat to reveal a difference"
            torch.testing.assert_close(compiled(pixels), expected, rtol=TOLERANCE, atol=TOLERANCE)
    # A static graph for the first size, a dynamic batch from the second on: no compile per size.
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 2


@pytest.mark.parametrize("version", [1, 2])
def test_inductor_training_step_equals_eager_in_loss_and_gradients(version):
    """One stage, one batch size, static: compiling the backward pass is the slow part (the merging and the
    sizes in sequence are the test above's)."""
    model = tiny(version, depths=(2,)).train()
    compiled = torch.compile(model, dynamic=False, fullgraph=True)
    generator = torch.Generator().manual_seed(1)
    for batch in BATCHES[1:2]:
        pixels = torch.randn(batch, 3, *SIZE, generator=generator)
        labels = torch.randint(0, 5, (batch,), generator=generator)
        results = []
        for run in (model, compiled):
            model.zero_grad()
            loss = F.cross_entropy(run(pixels), labels)
            loss.backward()
            results.append((loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}))
        (eager_loss, eager_grads), (compiled_loss, compiled_grads) = results
        torch.testing.assert_close(compiled_loss, eager_loss, rtol=TOLERANCE, atol=TOLERANCE)
        assert eager_grads.keys() == compiled_grads.keys()
        for name, grad in eager_grads.items():
            torch.testing.assert_close(compiled_grads[name], grad, rtol=TOLERANCE, atol=TOLERANCE, msg=name)
        assert max(grad.abs().max() for grad in eager_grads.values()) > 1e-3
