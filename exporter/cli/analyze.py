"""``batch-metrics analyze``: reconstruct records of a past batch from the traces it left.

Sources, best first: the orchestrator's files (.ce/orchestration/), PRP front matter
(PRPs/feature-requests/, PRPs/executed/) timed by git log, then git log alone. Each record
says which it used (``source``) and what it could not measure (``notes``). Re-running is
idempotent; records written by instrumentation are never replaced.
Exit status: 0 written, 1 no data for the batch, 2 bad input,
3 written, but a source (git) was unavailable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Final

from exporter.archive.model import InvalidBatchId, check_batch_id, dump_record
from exporter.archive.pricing import load_pricing
from exporter.history.analyze import analyze_batch, save_analysis
from exporter.util.datafile import DataFileError
from exporter.util.errors import CommandError
from exporter.util.paths import DEFAULT_ARCHIVE
from instrumentation.semconv import OPERATIONS, Operation

__all__ = ["EXIT_NO_DATA", "EXIT_SOURCE_UNAVAILABLE", "add_arguments", "run"]

EXIT_NO_DATA: Final = 1
EXIT_USAGE: Final = 2
EXIT_SOURCE_UNAVAILABLE: Final = 3

_EPILOG: Final = """\
examples:
  batch-metrics analyze --batch 47 --operation all
  batch-metrics analyze --batch 47 --operation execute --root ~/src/project
  batch-metrics analyze --batch 47 --operation review --dry-run     # print, write nothing
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = _EPILOG
    parser.add_argument("--batch", required=True, metavar="ID", help="batch id, e.g. 47")
    parser.add_argument(
        "--operation",
        choices=(*OPERATIONS, "all"),
        default="all",
        help="operation to analyze (default: all)",
    )
    parser.add_argument(
        "--all",
        dest="operation",
        action="store_const",
        const="all",
        help="same as --operation all (the seed's flag)",
    )
    parser.add_argument(
        "--root", type=Path, default=Path(), help="project root (default: current directory)"
    )
    parser.add_argument(
        "--archive",
        type=Path,
        help=f"archive directory (default: ROOT/{DEFAULT_ARCHIVE})",
    )
    parser.add_argument("--pricing", type=Path, metavar="PATH", help="model pricing file")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the records as JSON, write nothing"
    )


def run(args: argparse.Namespace) -> int:
    try:
        batch_id = check_batch_id(args.batch)
    except InvalidBatchId as exc:
        raise CommandError(str(exc), EXIT_USAGE) from exc
    root: Path = args.root
    if not root.is_dir():
        raise CommandError(f"project root {root} is not a directory", EXIT_USAGE)
    archive: Path = args.archive if args.archive is not None else root / DEFAULT_ARCHIVE
    operations: tuple[Operation, ...] = OPERATIONS if args.operation == "all" else (args.operation,)
    try:
        pricing = load_pricing(args.pricing)
    except DataFileError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from exc
    analysis = analyze_batch(root, batch_id, operations, pricing)
    for line in (*analysis.warnings, *analysis.unavailable):
        print(f"batch-metrics: warning: {line}", file=sys.stderr)
    for operation in analysis.missing:
        print(
            f"batch-metrics: batch {batch_id} {operation}: no orchestrator files, PRPs or "
            "commits found; nothing written",
            file=sys.stderr,
        )
    if not analysis.records:
        raise CommandError(f"no data found for batch {batch_id} under {root}", EXIT_NO_DATA)
    if args.dry_run:
        for record in analysis.records:
            print(dump_record(record), end="")
    else:
        for outcome in save_analysis(archive, analysis.records):
            r = outcome.record
            if outcome.path is None:
                print(f"batch {r.batch_id} {r.operation}: not written: {outcome.reason}")
            else:
                print(f"batch {r.batch_id} {r.operation} ({r.source}): saved {outcome.path}")
    return EXIT_SOURCE_UNAVAILABLE if analysis.unavailable else 0
