"""``batch-metrics backfill``: the archive's history, for Prometheus.

Every record counts at its end time (docs/architecture.md, "Windows: when a record counts");
only the times at which records end get samples, so the output grows with the records, not
with the span. Either let it write TSDB blocks itself (runs promtool)::

    batch-metrics backfill --tsdb /var/lib/prometheus/metrics2

or write OpenMetrics and run promtool yourself::

    batch-metrics backfill --output history.om
    promtool tsdb create-blocks-from openmetrics --max-block-duration=100000h \\
        history.om /var/lib/prometheus/metrics2

Then restart Prometheus (or start it on that data directory) to query the past. Load each
record once: a second load of the same records with the same labels overlaps the first, and
records that a live ``serve`` scrape counts must not be backfilled too (``batch-metrics
stack`` and the compose stack keep track of both: docs/prometheus.md). Summary figures go to
stderr; OpenMetrics text to --output (default: stdout).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from exporter.cli.options import add_archive_option
from exporter.index.ledger import Ledger, ledger_path
from exporter.index.store import ArchiveIndex
from exporter.prometheus.backfill import BackfillStats, write_openmetrics
from exporter.prometheus.blocks import BlocksError, write_blocks
from exporter.prometheus.history import load_missing
from exporter.util.atomic import atomic_open
from exporter.util.errors import CommandError
from exporter.util.paths import require_archive

__all__ = ["add_arguments", "parse_label", "run"]

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def parse_label(text: str) -> tuple[str, str]:
    """argparse type: ``NAME=VALUE``, a Prometheus label."""
    name, sep, value = text.partition("=")
    if not sep or not _LABEL_NAME.match(name) or name.startswith("__"):
        raise argparse.ArgumentTypeError(f"not a label NAME=VALUE: {text!r}")
    if name in {"le", "operation", "outcome", "stage", "type", "model", "error_type"}:
        raise argparse.ArgumentTypeError(f"label {name!r} is one of the metrics' own labels")
    return name, value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_archive_option(parser)
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--output",
        "-o",
        default="-",
        metavar="FILE",
        help="where to write the OpenMetrics text, '-' for stdout (default: %(default)s)",
    )
    target.add_argument(
        "--tsdb",
        type=Path,
        metavar="DIR",
        help="write TSDB blocks into this Prometheus data directory (runs promtool)",
    )
    parser.add_argument(
        "--missing",
        action="store_true",
        help="only history a `serve --live-only` leaves out and no backfill loaded yet, "
        "labelled job=batch-metrics-history (what the stacks run at start; docs/prometheus.md)",
    )
    parser.add_argument(
        "--loaded-marker",
        type=Path,
        metavar="FILE",
        help="with --missing --output: the file your loading step fills with FILE.id's content "
        "once promtool succeeded (default: the output file's name + .loaded)",
    )
    parser.add_argument(
        "--label",
        type=parse_label,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="add this label to every series (repeatable), e.g. job=batch-metrics-history",
    )


def _write_file(target: Path, index: ArchiveIndex, labels: dict[str, str]) -> BackfillStats:
    """Write atomically: a temporary file beside ``target``, renamed into place when complete."""
    with atomic_open(target, newline="\n") as handle:
        return write_openmetrics(index.summaries(), handle, labels=labels)


def _missing(
    args: argparse.Namespace, index: ArchiveIndex, labels: dict[str, str]
) -> BackfillStats:
    if args.tsdb is None and args.output == "-":
        raise CommandError("--missing needs --tsdb DIR or --output FILE", 2)
    output = None if args.tsdb is not None else Path(args.output)
    with Ledger(ledger_path(index.archive)) as ledger:
        loaded = load_missing(
            index,
            ledger,
            time.time(),
            tsdb=args.tsdb,
            output=output,
            labels=labels,
            marker=args.loaded_marker,
        )
    if loaded.live:
        print(f"backfill: {loaded.live} records left to the live exporter", file=sys.stderr)
    return loaded.stats


def run(args: argparse.Namespace) -> int:
    archive = require_archive(args.archive)
    labels = dict(args.label)
    with ArchiveIndex(archive) as index:
        result = index.refresh()
        try:
            if args.missing:
                stats = _missing(args, index, labels)
            elif args.tsdb is not None:
                stats = write_blocks(index.summaries(), args.tsdb, labels=labels)
            elif args.output == "-":
                stats = write_openmetrics(index.summaries(), sys.stdout, labels=labels)
                sys.stdout.flush()
            else:
                stats = _write_file(Path(args.output), index, labels)
        except BlocksError as exc:
            raise CommandError(str(exc)) from exc
        except OSError as exc:
            where = args.tsdb if args.tsdb is not None else args.output
            raise CommandError(f"cannot write {where}: {exc.strerror or exc}") from exc
    uncountable = f", {stats.skipped} records too large to count" if stats.skipped else ""
    print(
        f"backfill: {stats.records} records, {stats.series} series, {stats.samples} samples"
        f" ({len(result.invalid)} invalid files{uncountable} skipped)",
        file=sys.stderr,
    )
    return 0
