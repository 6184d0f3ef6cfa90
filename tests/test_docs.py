"""The README and the documentation site: the README stays short, the site builds in strict mode."""

import html
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built by `mkdocs build --strict` (as `make docs` does) into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-4000:]}"
    return out


def nav_pages(entries: list) -> list[str]:
    """Every Markdown file named in an mkdocs nav, in order."""
    pages = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages.extend(nav_pages(value) if isinstance(value, list) else [value])
    return pages


def test_the_readme_is_short_and_starts_with_the_two_commands() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200
    assert lines[0] == "# swinkit"
    first_block = lines[lines.index("```bash") + 1 : lines.index("```")]
    assert [line.split()[:2] for line in first_block] == [["make", "run"], ["make", "test"]]
    assert lines.index("```bash") < 4, "the two commands come first"


def test_the_readme_links_and_pictures_point_at_files_that_exist() -> None:
    text = README.read_text(encoding="utf-8")
    targets = [target.split("#")[0] for target in re.findall(r"\]\(([^)\s]+)\)", text)]
    local = [target for target in targets if target and "://" not in target]
    assert any(target.startswith("docs/figures/") for target in local)
    assert sum(target.startswith("docs/") and target.endswith(".md") for target in local) >= 10
    for target in local:
        assert (ROOT / target).is_file(), f"README.md links to {target}, which does not exist"


def test_every_page_is_in_the_nav() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    in_nav = nav_pages(config["nav"])
    on_disk = sorted(str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md"))
    assert sorted(in_nav) == on_disk
    assert len(in_nav) == len(set(in_nav))


def test_the_site_builds_with_the_pages_figures_and_api_reference(site: Path) -> None:
    assert (site / "index.html").is_file()
    for figure in (DOCS / "figures").glob("*.png"):
        assert (site / "figures" / figure.name).is_file()
    pictures = (site / "pictures" / "index.html").read_text(encoding="utf-8")
    assert 'src="../figures/windows.png"' in pictures

    reference = html.unescape((site / "reference" / "swinkit" / "index.html").read_text(encoding="utf-8"))
    assert 'id="swinkit.create_model"' in reference
    assert "Build a Swin model, optionally from a checkpoint of any understood format." in reference
    assert ":func:" not in reference, "Sphinx roles are turned into links"
    # The role :func:`read_checkpoint` in create_model's docstring links to its entry.
    assert re.search(r'<a class="autorefs[^"]*"[^>]*href="\.\./checkpoints/#swinkit\.checkpoints\.read_checkpoint"', reference)

    ops = html.unescape((site / "reference" / "model" / "index.html").read_text(encoding="utf-8"))
    assert 'id="swinkit.model.ops.window_partition"' in ops
