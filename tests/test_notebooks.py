"""The example notebooks: stored without outputs, and run top to bottom in a real Jupyter kernel.

The kernel is this interpreter (a kernelspec written to a temporary ``JUPYTER_PATH``, so
nothing is registered globally) and imports the same swinkit as the tests. Each notebook
asserts the values it shows (shapes, window counts, FLOP totals, accuracies, exported
logits); a failing assert fails its test with the cell's traceback.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import swinkit

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = {"swin_explained": EXAMPLES / "swin_explained.ipynb", "finetune": EXAMPLES / "finetune.ipynb"}
KERNEL_NAME = "swinkit-tests"


def test_the_examples_folder_holds_both_notebooks() -> None:
    assert sorted(path.name for path in EXAMPLES.glob("*.ipynb")) == ["finetune.ipynb", "swin_explained.ipynb"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_without_outputs(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS[name], as_version=4)
    nbformat.validate(notebook)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code_cells
    for index, cell in enumerate(code_cells):
        where = f"{name}.ipynb, code cell {index} ({cell.source.splitlines()[0]!r})"
        assert cell.outputs == [], f"{where} has stored outputs; clear them before committing"
        assert cell.execution_count is None, f"{where} has an execution count; clear outputs before committing"
        assert "execution" not in cell.metadata, f"{where} has execution timings in its metadata"


@pytest.fixture(scope="module")
def kernel_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for ``JUPYTER_PATH`` holding one kernelspec that runs this interpreter."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "swinkit tests", "language": "python"}))
    return root


def run_notebook(name: str, kernel_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    """Execute a notebook in ``workdir`` (its files go there) and return it with its outputs."""
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_path))
    # The kernel imports the swinkit under test, also when the tests run from a source tree.
    source_root = str(Path(swinkit.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [source_root, os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # One thread per kernel: the notebooks' models are tiny, and where the CPU is shared with
    # other processes two OpenMP threads spend most of their time waiting for each other
    # (an epoch of the digits model took 65-72 s with two threads and 8 s with one here).
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebook = nbformat.read(NOTEBOOKS[name], as_version=4)
    client = NotebookClient(
        notebook, timeout=600, kernel_name=KERNEL_NAME, resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()
    return notebook


def outputs(notebook: nbformat.NotebookNode) -> tuple[str, list[bytes]]:
    """All printed text of a run notebook, and its PNG images."""
    text, images = [], []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                text.append(output.text)
            elif output.output_type in ("display_data", "execute_result"):
                text.append(output.data.get("text/plain", ""))
                if "image/png" in output.data:
                    images.append(base64.b64decode(output.data["image/png"]))
    return "\n".join(text), images


def test_swin_explained_runs(kernel_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notebook = run_notebook("swin_explained", kernel_path, tmp_path, monkeypatch)
    text, images = outputs(notebook)
    assert "stage 4: (1, 768, 7, 7)   stride 32" in text
    assert "windows: 4 regular, 9 displaced" in text
    assert f"{swinkit.count_flops('swin_t').total:,} FLOPs (= count_flops)" in text
    assert "Swin V2-T: 28,347,154 parameters" in text
    # Patches, windows, relative position bias, cost plot, attention maps, V2's coordinates: inline PNGs.
    assert len(images) == 6 and all(image.startswith(b"\x89PNG") for image in images)
    assert list(tmp_path.iterdir()) == []  # its training run went to a temporary folder


def test_finetune_runs(kernel_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notebook = run_notebook("finetune", kernel_path, tmp_path, monkeypatch)
    text, images = outputs(notebook)
    work = tmp_path / "finetune_work"
    assert sorted(path.name for path in (work / "runs").iterdir()) == ["full", "lora", "pretrain"]
    for run in ("full", "lora"):
        assert (work / "runs" / run / "metrics.csv").read_text().count("\n") == 1 + 6
    assert (work / "runs" / "lora" / "best" / "adapter" / "adapter_model.safetensors").is_file()
    assert sorted(path.name for path in (work / "export" / "hf").iterdir()) == [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ]
    assert "dropped: ['head.bias', 'head.weight']" in text
    assert "LoRA rank 8, alpha 16 on 16 layers" in text
    for run in ("full fine-tuning", "LoRA r8"):
        assert re.search(rf"^{run} +216 ", text, re.MULTILINE), f"no evaluation line for {run} on the 216 test images"
    # Samples, augmented views, curves, confusion matrix, predictions, attention maps.
    assert len(images) == 6 and all(image.startswith(b"\x89PNG") for image in images)
