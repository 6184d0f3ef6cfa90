"""The command line: ``swinkit models`` and argument errors."""

import subprocess
import sys

import pytest

from swinkit.cli import main


def test_models_prints_the_published_figures(capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    v1_table = lines[: lines.index("")]  # the Swin V2 table follows after a blank line
    rows = {line.split()[0]: line.split() for line in v1_table[2:]}
    assert list(rows) == [
        "swin_t",
        "swin_s",
        "swin_b",
        "swin_l",
        "swin_t_384",
        "swin_s_384",
        "swin_b_384",
        "swin_l_384",
    ]
    assert rows["swin_t"][1:5] == ["28,288,354", "4.494", "224x224", "7"]
    assert rows["swin_b_384"][1:6] == ["87,903,584", "47.105", "384x384", "12", "swin_base_patch4_window12_384"]
    assert rows["swin_l_384"][1:3] == ["196,735,516", "103.952"]


def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "swinkit", "models"], capture_output=True, text=True, check=True)
    assert "swin_t " in result.stdout


def test_bad_flags_exit_with_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-command"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_bench_passes_its_own_options_on_and_other_commands_refuse_unknown_ones(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--help"])
    assert exit_info.value.code == 0
    assert "--device" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["models", "--bogus"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
