"""The errors raised when a checkpoint cannot be read, converted or loaded."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message says why and what is accepted."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle that would import or run code when unpickled; it was refused before anything ran."""
