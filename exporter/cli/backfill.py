"""``batch-metrics backfill``: write the archive's history as OpenMetrics for promtool.

Each sample carries its record's completion time (on a regular --step grid, as a scrape would
have seen it), series are sorted and the text ends with ``# EOF``, ready for::

    batch-metrics backfill --output history.om
    promtool tsdb create-blocks-from openmetrics history.om /var/lib/prometheus/metrics2

Then restart Prometheus (or start it on that data directory) to query the past. Summary
figures go to stderr; the OpenMetrics text to --output (default: stdout).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path

from exporter.cli.options import add_archive_option
from exporter.index.store import ArchiveIndex
from exporter.prometheus.backfill import (
    DEFAULT_MAX_SAMPLES,
    DEFAULT_STEP,
    BackfillStats,
    BackfillTooLarge,
    write_openmetrics,
)
from exporter.util.errors import CommandError

__all__ = ["add_arguments", "run"]


def _step(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of seconds: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("the step must be at least 1 second")
    return value


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("the limit must be at least 1")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_archive_option(parser)
    parser.add_argument(
        "--output",
        "-o",
        default="-",
        metavar="FILE",
        help="where to write the OpenMetrics text, '-' for stdout (default: %(default)s)",
    )
    parser.add_argument(
        "--step",
        type=_step,
        default=DEFAULT_STEP,
        metavar="SECONDS",
        help="seconds between samples of each series (default: %(default)s)",
    )
    parser.add_argument(
        "--max-samples",
        type=_limit,
        default=DEFAULT_MAX_SAMPLES,
        metavar="N",
        help="refuse to write more samples than this (default: %(default)s)",
    )


def _write_file(target: Path, index: ArchiveIndex, step: int, limit: int) -> BackfillStats:
    """Write atomically: a temporary file beside ``target``, renamed into place when complete."""
    directory = target.parent if str(target.parent) else Path()
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            stats = write_openmetrics(index.summaries(), handle, step=step, max_samples=limit)
        Path(name).replace(target)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(name).unlink()
        raise
    return stats


def run(args: argparse.Namespace) -> int:
    archive: Path = args.archive
    if not archive.is_dir():
        raise CommandError(f"archive {archive} is not a directory", 2)
    with ArchiveIndex(archive) as index:
        result = index.refresh()
        try:
            if args.output == "-":
                stats = write_openmetrics(
                    index.summaries(), sys.stdout, step=args.step, max_samples=args.max_samples
                )
                sys.stdout.flush()
            else:
                stats = _write_file(Path(args.output), index, args.step, args.max_samples)
        except BackfillTooLarge as exc:
            raise CommandError(str(exc)) from exc
        except OSError as exc:
            raise CommandError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    uncountable = f", {stats.skipped} records too large to count" if stats.skipped else ""
    print(
        f"backfill: {stats.records} records, {stats.series} series, {stats.samples} samples"
        f" ({len(result.invalid)} invalid files{uncountable} skipped)",
        file=sys.stderr,
    )
    return 0
