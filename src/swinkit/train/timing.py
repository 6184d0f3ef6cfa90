"""Time: budgets (``--time 10m``), epochs fitted to them from timed steps, estimates and progress lines.

The arithmetic is kept apart from the clock so that it can be tested with made-up times:
:func:`epoch_seconds` adds up an epoch, :func:`fit_epochs` fits epochs into a budget,
:func:`refit` shortens a run whose epochs turn out slower than measured (and lengthens,
early on, one whose epochs are faster), and
:class:`ProgressLog` prints epoch and progress lines from any clock.
"""

from __future__ import annotations

import math
import os
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

#: Estimated runs longer than this get a warning saying how to shorten them.
LONG_RUN = 3 * 3600.0
#: Away from a terminal, a progress line at least this often within an epoch (seconds).
PROGRESS_INTERVAL = 20.0
#: A run projected to end earlier than its budget by more than twice this share is lengthened
#: early on (see :func:`refit`).
OVERRUN_TOLERANCE = 0.05
#: Within this share of its epochs, a run projected to end well before its budget is lengthened.
LENGTHEN_WITHIN = 0.25

_NUMBER = r"\d+(?:\.\d+)?"
_DURATION = re.compile("".join(f"(?:(?P<{unit}>{_NUMBER}){unit})?" for unit in "dhms"))
_UNIT_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
NO_BUDGET = ("none", "off", "0")


def parse_duration(text: str) -> float:
    """Seconds from ``"90s"``, ``"10m"``, ``"1h30m"``, ``"2h"`` or ``"1d"``; 0 (no budget) from ``"none"``.

    ``"off"`` and ``"0"`` also mean no budget.

    Raises ValueError naming the text and the accepted forms.
    """
    cleaned = text.strip().lower().replace(" ", "")
    if cleaned in NO_BUDGET:
        return 0.0
    match = _DURATION.fullmatch(cleaned)
    if not cleaned or match is None or not any(match.groupdict().values()):
        raise ValueError(
            f"time {text!r} is not a duration; write it like 90s, 10m, 1h30m, 2h or 1d (or 'none' for no budget)"
        )
    seconds = sum(float(value) * _UNIT_SECONDS[unit] for unit, value in match.groupdict().items() if value)
    if seconds <= 0:
        raise ValueError(f"time {text!r} must be longer than 0 seconds (or 'none' for no budget)")
    return seconds


def process_age() -> float:
    """Seconds since this process started (from Linux's ``/proc``), or 0 where that cannot be read.

    The command line counts them against a time budget: starting Python and importing
    PyTorch is part of the wall-clock time a user sees.
    """
    try:
        with open("/proc/self/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as handle:
            uptime = float(handle.read().split()[0])
        return max(0.0, uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def format_duration(seconds: float) -> str:
    """``"45s"``, ``"3m05s"``, ``"2h10m"``, ``"4d02h"``: two units at most, for people."""
    seconds = max(0.0, seconds)
    if seconds < 59.5:
        return f"{seconds:.0f}s" if seconds >= 9.5 else f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    minutes = round(seconds / 60)
    if minutes < 24 * 60:
        return f"{minutes // 60}h{minutes % 60:02d}m"
    hours = round(seconds / 3600)
    return f"{hours // 24}d{hours % 24:02d}h"


def epoch_seconds(
    steps: int, step_seconds: float, val_images: int, eval_image_seconds: float, save_seconds: float
) -> float:
    """One epoch: ``steps`` optimiser steps, evaluating ``val_images``, and saving a checkpoint."""
    return steps * step_seconds + val_images * eval_image_seconds + save_seconds


def fit_epochs(budget: float, elapsed: float, per_epoch: float, final_seconds: float, max_epochs: int) -> int:
    """The most epochs of ``per_epoch`` seconds that end within ``budget`` seconds, between 1 and ``max_epochs``.

    ``elapsed`` has already gone (reading data, timing steps); ``final_seconds`` is what
    follows the last epoch (the final evaluation and plots).
    """
    if per_epoch <= 0:
        return max_epochs
    available = budget - elapsed - final_seconds
    return max(1, min(max_epochs, math.floor(available / per_epoch)))


def refit(
    budget: float,
    elapsed: float,
    done: int,
    planned: int,
    per_epoch: float,
    final_seconds: float,
    most: int | None = None,
) -> int:
    """Epochs to plan after ``done`` of ``planned`` took ``elapsed`` seconds, epochs now taking ``per_epoch``.

    A run projected to end past ``budget`` (its epochs and the ``final_seconds`` after
    them) gets as many epochs as still fit, at least ``done`` (it then stops after this
    epoch): a budget is a limit, not a target. After its first epoch, or within the
    first :data:`LENGTHEN_WITHIN` of its epochs, a run projected to end more than twice
    that tolerance early gets as many as fit, up to ``most``: the learning-rate schedule has
    barely moved yet. Otherwise the plan stands.
    """
    if per_epoch <= 0:
        return planned
    projected = elapsed + (planned - done) * per_epoch + final_seconds
    fits = done + math.floor((budget - elapsed - final_seconds) / per_epoch)
    if projected > budget:
        return max(done, min(planned, fits))
    early = done <= max(1, LENGTHEN_WITHIN * planned)  # the first epoch always counts as early
    if most is not None and early and projected < budget * (1 - 2 * OVERRUN_TOLERANCE):
        return max(planned, min(most, fits))
    return planned


def time_calls(
    call: Callable[[], object], *, warmup: int = 1, repeats: int = 3, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Median seconds of ``call()`` over ``repeats`` calls, after ``warmup`` calls that are not timed."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = clock()
        call()
        times.append(clock() - start)
    return statistics.median(times)


class ProgressLog:
    """Lines about a run's progress: epoch lines with elapsed and remaining time, and progress lines within epochs.

    ``clock`` gives seconds (``time.monotonic`` by default; tests pass a fake); ``start`` is
    the clock's time when the run began. Away from a terminal (``interactive`` false), a
    progress line saying what the run is doing (:meth:`set_activity`, :meth:`batch_done`)
    is printed whenever ``interval`` seconds have passed since the last line: after a
    batch, and by a heartbeat thread (:meth:`start_heartbeat`) during long batches,
    evaluations and the timing of steps, so that a log shows life at least that often.
    Nothing is printed when ``enabled`` is false.
    """

    def __init__(
        self,
        *,
        enabled: bool = True,
        interactive: bool = False,
        clock: Callable[[], float] = time.monotonic,
        start: float | None = None,
        interval: float = PROGRESS_INTERVAL,
        stream: TextIO | None = None,
    ) -> None:
        self.enabled = enabled
        self.interactive = interactive
        self.clock = clock
        self.start = clock() if start is None else start
        self.interval = interval
        self.stream = stream
        self.last_line = self.clock()
        self.epoch_start = self.last_line
        self.epoch_durations: list[float] = []
        self.planned_epoch: float | None = None
        self.final_seconds = 0.0
        self.activity: str | None = None
        self.position: tuple[int, int, int, int] | None = None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def elapsed(self) -> float:
        """Seconds since the run began."""
        return self.clock() - self.start

    def line(self, text: str) -> None:
        """Print a line (and restart the progress interval)."""
        with self._lock:
            if self.enabled:
                print(text, file=self.stream or sys.stdout, flush=True)
            self.last_line = self.clock()

    def set_activity(self, text: str | None) -> None:
        """What the run is doing now, for progress lines (None: nothing worth a line)."""
        with self._lock:
            self.activity = text
            self.position = None

    def epoch_started(self) -> None:
        self.epoch_start = self.clock()

    def epoch_ended(self) -> float:
        """Record the epoch's whole duration (training, evaluation, checkpoint); returns it."""
        duration = self.clock() - self.epoch_start
        self.epoch_durations.append(duration)
        return duration

    def per_epoch(self) -> float | None:
        """Seconds per epoch: the mean of the measured epochs after the first when there are some, else the plan's."""
        measured = self.epoch_durations[1:] or self.epoch_durations
        if measured:
            return sum(measured) / len(measured)
        return self.planned_epoch

    def remaining(self, epochs_left: float) -> float | None:
        """Seconds the run still needs for ``epochs_left`` epochs and what follows them, or None before any estimate."""
        per_epoch = self.per_epoch()
        if per_epoch is None:
            return None
        return epochs_left * per_epoch + self.final_seconds

    def times(self, epochs_left: float) -> str:
        """``"elapsed 1m05s, remaining ~3m20s"``."""
        remaining = self.remaining(epochs_left)
        text = f"elapsed {format_duration(self.elapsed())}"
        return text if remaining is None else f"{text}, remaining ~{format_duration(remaining)}"

    def batch_done(self, epoch: int, epochs: int, batch: int, batches: int, loss: float) -> None:
        """After each batch: away from a terminal, a progress line once ``interval`` seconds have passed."""
        with self._lock:
            self.activity = f"epoch {epoch}/{epochs}  batch {batch}/{batches}  train loss {loss:.4f}"
            self.position = (epoch, epochs, batch, batches)
        self.beat()

    def beat(self) -> None:
        """Print the current activity with the times, if ``interval`` seconds have passed since the last line."""
        with self._lock:
            due = self.clock() - self.last_line >= self.interval
            if self.interactive or self.activity is None or not due:
                return
            tail = f"elapsed {format_duration(self.elapsed())}"
            if self.position is not None:
                epoch, epochs, batch, batches = self.position
                within = self.clock() - self.epoch_start
                remaining = self.remaining(epochs - epoch)
                if remaining is not None:
                    remaining += (batches - batch) / batch * within if batch else 0.0
                    tail += f", remaining ~{format_duration(remaining)}"
            self.line(f"{self.activity}  {tail}")

    def start_heartbeat(self, period: float = 1.0) -> None:
        """Call :meth:`beat` every ``period`` seconds from a thread (away from a terminal, when enabled)."""
        if not self.enabled or self.interactive or self._thread is not None:
            return
        self._stop.clear()

        def run() -> None:
            while not self._stop.wait(period):
                self.beat()

        self._thread = threading.Thread(target=run, name="swinkit-progress", daemon=True)
        self._thread.start()

    def stop_heartbeat(self) -> None:
        """Stop the thread of :meth:`start_heartbeat`."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
