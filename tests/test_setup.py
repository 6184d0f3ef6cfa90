"""``make test`` does its own set-up: the browser step of the Makefile, run with stand-in programs on PATH."""

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_browser(
    tmp_path: Path, uid: int, present: tuple[str, ...] = (), apt_status: int = 0
) -> tuple[str, list[str]]:
    """Run ``make browser`` with a PATH holding only stand-ins: ``id`` answering ``uid``, an ``apt-get``
    that records its arguments and exits with ``apt_status``, and the ``present`` browser programs.
    Returns make's output and apt-get's calls."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "apt-calls"
    bin_dir.mkdir()
    scripts = {"id": f"echo {uid}", "apt-get": f'echo "$*" >> {calls}; exit {apt_status}', **{name: "exit 0" for name in present}}
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    done = subprocess.run(
        [shutil.which("make"), "-s", "--no-print-directory", "-C", str(ROOT), "browser"],
        env={"PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, calls.read_text().splitlines() if calls.exists() else []



def test_without_root_make_says_in_one_line_what_to_run(tmp_path):
    output, calls = make_browser(tmp_path, uid=1000)
    assert calls == []
    assert output.splitlines() == [
        "chromium or chromedriver is missing, so the browser tests will be skipped; "
        "to run them: sudo apt-get install chromium chromium-driver"
    ]


def test_as_root_make_installs_debians_chromium_and_its_driver(tmp_path):
    output, calls = make_browser(tmp_path, uid=0, present=("chromium",))  # the driver alone is missing
    assert calls == ["update -qq", "install -y -qq --no-install-recommends chromium chromium-driver"]
    assert output.splitlines() == ["installing chromium chromium-driver for the browser tests"]


def test_with_both_programs_make_does_nothing(tmp_path):
    output, calls = make_browser(tmp_path, uid=0, present=("chromium", "chromedriver"))
    assert (output, calls) == ("", [])


def test_as_root_without_a_package_source_make_says_so_and_the_tests_still_run(tmp_path):
    output, calls = make_browser(tmp_path, uid=0, apt_status=100)
    assert calls == ["update -qq"]
    assert output.splitlines()[-1] == (
        "could not install chromium chromium-driver, so the browser tests will be skipped (failed with CI=true)"
    )
