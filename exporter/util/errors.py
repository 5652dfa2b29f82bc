"""Errors that end a command with one clear line and a non-zero exit code.

This module imports nothing heavy, so the CLI can catch these without loading pydantic or the
OpenTelemetry SDK before it knows which command runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from pydantic import ValidationError

__all__ = [
    "EXIT_FINDINGS",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_USAGE",
    "CommandError",
    "UserError",
    "describe_validation_error",
]

# The exit status convention of every command (shown in ``batch-metrics --help``).
EXIT_OK: Final = 0
# The command ran and found what it checks for (invalid records, a stale rule file, bottlenecks
# with --fail-on-bottleneck), or could not finish (a file it cannot write, a server that died).
EXIT_FINDINGS: Final = 1
# Usage or bad input: an unknown option, a bad value, a missing archive, file or directory.
EXIT_USAGE: Final = 2
# Done, but part of the input was unavailable (``analyze`` without git, say): the result is partial.
EXIT_PARTIAL: Final = 3


class UserError(Exception):
    """Bad input or an unusable environment: ``str()`` is the one line shown to the user.

    The archive, model, thresholds and pricing errors derive from it; the CLI prints it as
    ``batch-metrics: error: ...`` and exits with ``exit_code``.
    """

    exit_code: int = 1


class CommandError(UserError):
    """A command cannot do what was asked."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def describe_validation_error(exc: ValidationError, root: str = "value") -> str:
    """One line for a pydantic error: where the first problem is, what it is, how many more.

    ``root`` names the location of an error in the whole value (``record``, say).
    """
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or root
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"
