"""``benchmarks/gpu_check.py`` runs where there is no GPU (on the CPU, saying so) and fails on a difference."""

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script is executed
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


# The GPU-only checks are left out by name too, so that a machine with CUDA runs the same short check.
QUICK = ["--models", "tiny_v1", "--skip", "compile,sdpa,graphs"]


def test_eager_float32_matches_float64_stage_by_stage_within_the_tolerance(gpu_check, capsys):
    assert gpu_check.main(QUICK) == 0
    output = capsys.readouterr().out
    rows = [line.split() for line in output.splitlines() if line.startswith("tiny_v1")]
    assert [row[:4] for row in rows] == [["tiny_v1", "eager", str(batch), "fp32"] for batch in (2, 3, 5, 8)]
    for row in rows:
        logits, stages = float(row[4]), [float(value) for value in row[5:7]]
        assert 0 < logits <= 1e-4 and all(0 < value <= 1e-4 for value in stages)
        assert row[-1] == "ok"
    assert "4 checks" in output and "0 over 1e-04" in output


def test_a_difference_over_the_tolerance_fails_the_run(gpu_check, capsys):
    assert gpu_check.main([*QUICK, "--tolerance", "0"]) == 1
    output = capsys.readouterr().out
    assert output.count("FAIL") == 4 and "4 over 0e+00" in output
    with pytest.raises(SystemExit):
        gpu_check.main(["--models", "tiny_v3"])
    assert "unknown models or checks ['tiny_v3']" in capsys.readouterr().err
