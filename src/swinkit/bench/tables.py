"""The one writer of benchmark results: a JSON file of every figure and the Markdown tables the README quotes."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

#: Where the results go by default, from the repository's root: ``benchmarks/results``.
RESULTS = Path("benchmarks") / "results"


def markdown_table(header: Sequence[object], rows: Iterable[Sequence[object]]) -> list[str]:
    """The lines of a Markdown table: ``header``, the rule under it, one line per row (an empty cell stays ``| |``)."""

    def line(cells: Sequence[object]) -> str:
        return "|" + "|".join(f" {cell} " if str(cell) else " " for cell in cells) + "|"

    return [line(header), line(["---"] * len(header)), *(line(row) for row in rows)]


def write_results(folder: Path | str, stem: str, results: dict, markdown: str) -> tuple[Path, Path]:
    """Write ``results`` to ``folder/stem.json`` and ``markdown`` to ``folder/stem.md``; returns both paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data, table = folder / f"{stem}.json", folder / f"{stem}.md"
    data.write_text(json.dumps(results, indent=2) + "\n")
    table.write_text(markdown)
    print(f"wrote {data} and {table}")
    return data, table
