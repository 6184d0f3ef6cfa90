"""Compilation and export: torch.compile without graph breaks or per-batch recompiles, torch.export, ONNX."""

import torch

import swinkit
from swinkit.cli import main
from swinkit.export import check_onnx, export_onnx, export_program

TINY = dict(img_size=64, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=4, num_classes=10)


def tiny():
    torch.manual_seed(0)
    return swinkit.create_model("swin_t", **TINY).eval()


def test_torch_compile_has_no_graph_break_and_does_not_recompile_per_batch():
    import torch._dynamo

    torch._dynamo.reset()
    model = tiny()
    compiled = torch.compile(model, backend="eager", fullgraph=True)  # fullgraph: any graph break raises
    counters = torch._dynamo.utils.counters
    counters.clear()
    with torch.no_grad():
        for batch in (2, 3, 4, 5, 7):
            x = torch.randn(batch, 3, 64, 64)
            torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)
    # The first size is compiled static, the second makes the batch dynamic; no more after that.
    assert counters["stats"]["unique_graphs"] <= 2
    torch._dynamo.reset()


def test_torch_export_with_a_dynamic_batch(tmp_path):
    model = tiny()
    program = export_program(model, tmp_path / "model.pt2")
    loaded = torch.export.load(str(tmp_path / "model.pt2"))
    for batch in (1, 5):
        x = torch.randn(batch, 3, 64, 64)
        with torch.no_grad():
            expected = model(x)
        torch.testing.assert_close(program.module()(x), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(loaded.module()(x), expected, rtol=1e-5, atol=1e-5)


def test_onnx_export_matches_onnxruntime(tmp_path):
    model = tiny()
    path = export_onnx(model, tmp_path / "model.onnx")
    assert check_onnx(model, path, batch_sizes=(1, 4)) <= 1e-4


def test_export_command_on_a_saved_model(tmp_path, capsys):
    swinkit.save_pretrained(tiny(), tmp_path / "model")
    code = main(
        ["export", str(tmp_path / "model"), "--onnx", str(tmp_path / "m.onnx"), "--pt2", str(tmp_path / "m.pt2")]
    )
    output = capsys.readouterr().out
    assert code == 0 and (tmp_path / "m.onnx").stat().st_size > 0 and (tmp_path / "m.pt2").stat().st_size > 0
    difference = float(output.split("max abs difference ")[1].split()[0])
    assert difference <= 1e-4
    assert main(["export", str(tmp_path / "model")]) == 2
