"""The end of a data-chosen run: what the recipe chose, and what the small-data benchmark measured for it.

The benchmark (``swinkit bench small-data``) trains the recipe and a ResNet-18 in the same
time budget on small data sets at several numbers of images a class, and writes its
figures to the package file :data:`MEASURED_FILE`::

    {"machine": str, "date": str,
     "rows": [{"set": str, "images_per_class": int, "budget_s": float, "swinkit_model": str,
               "swinkit_top1": [mean, spread], "resnet18_top1": [mean, spread], "floor_top1": float}]}

:func:`report_lines` picks the rows nearest to a run's images a class (by ratio) and words
them; a missing or unreadable file is reported as such, never raised.
"""

from __future__ import annotations

import json
import math
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

from swinkit.train.config import TrainConfig
from swinkit.train.timing import format_duration

#: The benchmark's figures, shipped with the package.
MEASURED_FILE = "small_data_measured.json"
#: Where :func:`report_lines` reads them by default (tests point it elsewhere).
MEASURED: Traversable | Path = resources.files("swinkit.train") / MEASURED_FILE


def read_measurements(path: Traversable | Path | None = None) -> tuple[dict[str, Any] | None, str]:
    """The benchmark's figures from ``path`` (default :data:`MEASURED`), or None and why they cannot be read."""
    source = MEASURED if path is None else path
    if not source.is_file():
        return None, f"no small-data benchmark measurement is recorded ({MEASURED_FILE} is missing)"
    try:
        data = json.loads(source.read_text())
        rows = data["rows"]
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise ValueError("'rows' must be a list of objects")
    except (OSError, ValueError, KeyError, TypeError) as error:
        return None, f"no small-data benchmark measurement could be read ({MEASURED_FILE}: {error})"
    return data, ""


def nearest_rows(rows: list[dict[str, Any]], images_per_class: float) -> list[dict[str, Any]]:
    """The rows whose ``images_per_class`` is nearest to ``images_per_class`` by ratio (every set measured there)."""
    usable = [row for row in rows if isinstance(row.get("images_per_class"), (int, float))]
    usable = [row for row in usable if row["images_per_class"] > 0]
    if not usable or images_per_class <= 0:
        return []

    def distance(row: dict[str, Any]) -> float:
        return abs(math.log(row["images_per_class"] / images_per_class))

    best = min(distance(row) for row in usable)
    return [row for row in usable if distance(row) == best]


def chosen_line(config: TrainConfig, parameters: int, stem: str) -> str:
    """One line of what the run trained with: model, stem, batch, epochs, augmentation, regularisation, EMA."""
    mixing = f"MixUp {config.mixup or 0:g}, CutMix {config.cutmix or 0:g}, erasing {config.re_prob or 0:g}"
    ema = f"EMA on (decay {config.ema_decay:.4g})" if config.ema == "on" else "EMA off"
    drop_path = "the model's" if config.drop_path is None else f"{config.drop_path:g}"
    return (
        f"recipe chosen: {config.model} ({parameters / 1e6:.2f} M parameters, patch "
        f"{config.model_overrides.get('patch_size', '?')}, stem {stem}), batch {config.batch_size}, "
        f"{config.epochs} epochs; augmentation {config.auto_augment or 'none'}, {mixing}; label smoothing "
        f"{config.label_smoothing or 0:g}, drop-path {drop_path}; "
        f"{ema}"
    )


def measured_line(row: dict[str, Any], data: dict[str, Any], model: str | None) -> str:
    """The benchmark's figure for one row, against ResNet-18 and the floor, with its date and machine."""

    def figure(pair: Any) -> str:
        mean, spread = pair
        return f"{mean:.1f} ± {spread:.1f} %"

    other = row.get("swinkit_model")
    chose = f", where it chose {other}" if other and other != model else ""
    return (
        f"the small-data benchmark measured this recipe at {row['images_per_class']} images/class on "
        f"'{row['set']}': {figure(row['swinkit_top1'])} top-1 vs ResNet-18 {figure(row['resnet18_top1'])} (floor "
        f"{row['floor_top1']:.1f} %), same budget of {format_duration(float(row['budget_s']))}{chose} "
        f"({data.get('date', 'undated')}, {data.get('machine', 'unknown machine')})"
    )


def report_lines(
    config: TrainConfig, images_per_class: float, parameters: int, stem: str, path: Traversable | Path | None = None
) -> list[str]:
    """What the recipe chose and the benchmark's figures nearest to ``images_per_class``; never raises on the file."""
    lines = [chosen_line(config, parameters, stem)]
    data, why = read_measurements(path)
    if data is None:
        return [*lines, why]
    rows = nearest_rows(data["rows"], images_per_class)
    if not rows:
        return [*lines, f"no small-data benchmark measurement is recorded ({MEASURED_FILE} has no usable row)"]
    for row in rows:
        try:
            lines.append(measured_line(row, data, config.model))
        except (KeyError, TypeError, ValueError) as error:
            lines.append(f"a small-data benchmark row for '{row.get('set')}' could not be read ({error!r})")
    return lines
