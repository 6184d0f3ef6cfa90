"""The command line: ``swinkit models`` and argument errors."""

import subprocess
import sys

import pytest

from swinkit.cli import build_parser, main


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


def test_bench_passes_its_own_options_on_and_other_commands_refuse_unknown_ones(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "models", "--help"])
    assert exit_info.value.code == 0
    assert "--device" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["models", "--bogus"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("depths=2,2,2", ("depths", (2, 2, 2))),
        ("depths=[2, 2, 6, 2]", ("depths", (2, 2, 6, 2))),
        ("num_heads=3", ("num_heads", (3,))),
        ("img_size=32", ("img_size", 32)),
        ("img_size=32,48", ("img_size", (32, 48))),
        ("embed_dim=64", ("embed_dim", 64)),
        ("drop_path_rate=0.05", ("drop_path_rate", 0.05)),
        ("qkv_bias=false", ("qkv_bias", False)),
        ("labels=cat,dog", ("labels", ("cat", "dog"))),
        ("patch_remainder=crop", ("patch_remainder", "crop")),
    ],
)
def test_set_takes_comma_and_json_lists_typed_as_the_field(text, expected):
    from swinkit.cli.arguments import parse_model_override
    from swinkit.cli.train import config_from_args

    assert parse_model_override(text) == expected
    args = build_parser().parse_args(["train", "--set", text])
    assert config_from_args(args).model_overrides == {expected[0]: expected[1]}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("depths=2,,2", ["--set depths=2,,2:", "depths=2,2,6,2", "depths=[2,2,6,2]"]),
        ("depths=two", ["--set depths=two:", "integers, one per stage"]),
        ("embed_dim=6.5", ["--set embed_dim=6.5:", "an integer, e.g. embed_dim=64"]),
        ("img_size=1,2,3", ["--set img_size=1,2,3:", "img_size=32,48"]),
        ("qkv_bias=maybe", ["--set qkv_bias=maybe:", "true or false"]),
        ("depth=2", ["--set depth=2:", "'depth' is not a model field (did you mean depths?)", "window_size"]),
        ("depths", ["--set depths:", "expected KEY=VALUE"]),
    ],
)
def test_set_errors_name_the_key_the_value_and_the_accepted_forms(text, words, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--set", text])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    for word in words:
        assert word in error


def test_patch_remainder_flag_reaches_the_model_config():
    from swinkit.cli.train import config_from_args

    args = build_parser().parse_args(["train", "--patch-remainder", "crop", "--set", "embed_dim=32"])
    assert config_from_args(args).model_overrides == {"embed_dim": 32, "patch_remainder": "crop"}
    assert config_from_args(build_parser().parse_args(["train"])).model_overrides == {}
    for command in (["predict", "--model", "m", "x.png"], ["eval", "--model", "m", "--data", "d"], ["export", "m"]):
        assert build_parser().parse_args([*command, "--patch-remainder", "pad"]).patch_remainder == "pad"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["convert", "a", "b", "--patch-remainder", "trim"])
