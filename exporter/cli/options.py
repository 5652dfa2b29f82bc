"""Options that several commands share, defined once."""

from __future__ import annotations

import argparse
from pathlib import Path

from exporter.util.paths import DEFAULT_ARCHIVE

__all__ = ["add_archive_option", "fixed_port_number", "port_number"]


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
