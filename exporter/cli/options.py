"""Options that several commands share, defined once."""

from __future__ import annotations

import argparse
from pathlib import Path

from exporter.util.paths import DEFAULT_ARCHIVE

__all__ = [
    "add_archive_option",
    "fixed_port_number",
    "non_negative_number",
    "port_number",
    "positive_int",
    "positive_seconds",
]


def add_archive_option(
    parser: argparse.ArgumentParser,
    *,
    default: Path | None = DEFAULT_ARCHIVE,
    help_text: str = "archive directory (default: %(default)s)",
) -> None:
    """``--archive DIR``: the archive directory (``.ce/completed-batches`` unless told)."""
    parser.add_argument(
        "--archive",
        type=Path,
        default=default,
        metavar="DIR",
        help=help_text,
    )


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0 (any free one) to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 0..65535")
    return port


def fixed_port_number(text: str) -> int:
    """argparse type: a TCP port other services are told about, so not 0 (any free one)."""
    port = port_number(text)
    if port == 0:
        raise argparse.ArgumentTypeError("port 0 (any free port) cannot be told to other services")
    return port


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def non_negative_number(text: str) -> float:
    """argparse type: a finite number >= 0 (NaN and infinity are refused)."""
    number = _number(text)
    if not 0 <= number < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text!r}")
    return number


def positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0."""
    number = _number(text)
    if not 0 < number < float("inf"):
        raise argparse.ArgumentTypeError(f"seconds must be positive and finite: {text!r}")
    return number


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value
