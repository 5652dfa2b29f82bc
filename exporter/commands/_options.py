"""Options that several commands share, defined once."""

from __future__ import annotations

import argparse
from pathlib import Path

from exporter.paths import DEFAULT_ARCHIVE

__all__ = ["add_archive_option"]


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
