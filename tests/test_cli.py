"""The command line: ``swinkit models`` and argument errors."""

import subprocess
import sys

import pytest

from swinkit.cli import main


def test_models_prints_the_published_figures(capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert list(rows) == [
        "swin_t",
        "swin_s",
        "swin_b",
        "swin_l",
        "swin_t_384",
        "swin_s_384",
        "swin_b_384",
        "swin_l_384",
        "swin_atto",
        "swin_femto",
        "swin_pico",
        "swin_nano",
    ]
    assert rows["swin_t"][1:6] == ["28,288,354", "4.494", "224x224", "4", "7"]
    assert rows["swin_b_384"][1:7] == ["87,903,584", "47.105", "384x384", "4", "12", "swin_base_patch4_window12_384"]
    assert rows["swin_l_384"][1:3] == ["196,735,516", "103.952"]
    # The compact ladder for small images: 32x32, patch 2, window 4, 10 classes, no timm name.
    assert rows["swin_atto"][1:] == ["567,046", "0.021", "32x32", "2", "4"]
    assert rows["swin_femto"][1:] == ["1,268,356", "0.046", "32x32", "2", "4"]
    assert rows["swin_pico"][1:] == ["3,829,282", "0.107", "32x32", "2", "4"]
    assert rows["swin_nano"][1:] == ["12,141,604", "0.297", "32x32", "2", "4"]


def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "swinkit", "models"], capture_output=True, text=True, check=True)
    assert "swin_t " in result.stdout


def test_bad_flags_exit_with_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-command"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
