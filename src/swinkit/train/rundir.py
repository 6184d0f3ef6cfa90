"""A training run's directory: settings, metrics, plots and checkpoints that survive a kill.

Layout::

    RUN/config.json            training settings, model config, classes, preprocessing
    RUN/metrics.csv            one row per epoch
    RUN/checkpoints/epoch-NNNN/  model.safetensors + swinkit.json (loadable export)
                                 + training_state.pt (everything to resume)
                                 + adapter/ (LoRA runs: the PEFT adapter)
    RUN/last -> checkpoints/epoch-NNNN   (symbolic links, swapped atomically)
    RUN/best -> checkpoints/epoch-MMMM

A checkpoint is written into a hidden temporary folder, each file flushed and synced,
then renamed into place, and only then does ``last`` (or ``best``) switch to it by an
atomic rename of a new link over the old one. A kill at any moment leaves the previous
checkpoint whole and ``last`` pointing at it; folders no link points to are removed at
the next save, and so are temporary folders a kill left behind.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from swinkit.checkpoints.io import fsync_directory, atomic_write

STATE_FILE = "training_state.pt"
METRICS_FILE = "metrics.csv"
CONFIG_FILE = "config.json"
LINKS = ("last", "best")


def new_run_path(output: str | Path, name: str | None) -> Path:
    """A folder for a new run in ``output``: ``name`` (default: the start time), with ``-2``, ``-3``... if taken."""
    root = Path(output)
    stem = name or datetime.now().strftime("%Y%m%d-%H%M%S")
    path, suffix = root / stem, 1
    while path.exists():
        suffix += 1
        path = root / f"{stem}-{suffix}"
    return path


class RunDirectory:
    """Reads and writes one run's files. Only rank 0 of a distributed run should write."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def link(self, name: str) -> Path | None:
        """The checkpoint folder ``last`` or ``best`` points to, or None when there is none yet."""
        link = self.path / name
        if not link.is_symlink() and not link.is_dir():
            return None
        target = link.resolve()
        return target if (target / STATE_FILE).is_file() else None

    def write_config(self, data: Mapping[str, Any]) -> None:
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        atomic_write(self.path / CONFIG_FILE, lambda tmp: tmp.write_text(text))

    def read_config(self) -> dict[str, Any]:
        config = self.path / CONFIG_FILE
        if not config.is_file():
            raise FileNotFoundError(f"{self.path} is not a swinkit run: it has no {CONFIG_FILE}")
        return json.loads(config.read_text())

    def write_metrics(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Rewrite ``metrics.csv`` with ``rows`` (the columns of the first row)."""
        if not rows:
            return

        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)

        atomic_write(self.path / METRICS_FILE, write)

    def read_metrics(self) -> list[dict[str, str]]:
        metrics = self.path / METRICS_FILE
        if not metrics.is_file():
            return []
        with open(metrics, newline="") as handle:
            return list(csv.DictReader(handle))

    def save_checkpoint(
        self,
        epoch: int,
        export: Callable[[Path], None],
        state: Mapping[str, Any],
        best: bool,
    ) -> Path:
        """Write checkpoint ``epoch`` (``export(folder)`` writes the loadable model), point ``last`` at it.

        With ``best``, ``best`` points at it too. Returns the checkpoint folder.
        """
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        final = self.checkpoints / f"epoch-{epoch:04d}"
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=self.checkpoints))
        try:
            export(tmp)
            torch.save(dict(state), tmp / STATE_FILE)
            for entry in sorted(tmp.rglob("*"), reverse=True):  # files before the folders holding them
                if entry.is_dir():
                    fsync_directory(entry)
                else:
                    with open(entry, "rb") as handle:
                        os.fsync(handle.fileno())
            fsync_directory(tmp)
            if final.exists():
                # Left by a run killed before its link switched: nothing points at it.
                shutil.rmtree(final)
            os.replace(tmp, final)
            fsync_directory(self.checkpoints)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        for name in ("last", "best") if best else ("last",):
            self._point(name, final)
        self._prune()
        return final

    def _point(self, name: str, target: Path) -> None:
        link = self.path / name
        tmp = self.path / f".{name}.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(target.relative_to(self.path), tmp)
        os.replace(tmp, link)
        fsync_directory(self.path)

    def _prune(self) -> None:
        keep = {self.link(name) for name in LINKS}
        for folder in self.checkpoints.iterdir():
            if folder.resolve() not in keep:
                shutil.rmtree(folder)

    def load_state(self) -> dict[str, Any]:
        """The training state of ``last`` (read with ``weights_only=True``)."""
        last = self.link("last")
        if last is None:
            raise FileNotFoundError(f"{self.path} has no checkpoint to resume from (no 'last' link)")
        return torch.load(last / STATE_FILE, map_location="cpu", weights_only=True)
