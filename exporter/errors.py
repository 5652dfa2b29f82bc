"""Errors that end a command with one clear line and a non-zero exit code."""

from __future__ import annotations

from exporter.archive import ArchiveError
from exporter.model import InvalidBatchId
from exporter.pricing import PricingError
from exporter.thresholds import ThresholdsError

__all__ = ["CommandError", "UserError"]


class CommandError(Exception):
    """A command cannot do what was asked; ``str()`` is the line shown to the user."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# What the CLI turns into one line on stderr. Each has a one-line ``str()``.
UserError = (CommandError, ArchiveError, InvalidBatchId, ThresholdsError, PricingError)
