"""``batch-metrics analyze``: reconstruct records of a past batch from the traces it left.

Sources, ranked: the orchestrator's task files, then its batch result (.ce/orchestration/),
then PRP front matter (PRPs/feature-requests/, PRPs/executed/) for outcomes; git log (which
commit did which operation, from its subject convention and the files it changed) for timing
where nothing better exists. Each record says which source gave what (``notes``); the rules are
in docs/sources.md. Re-running is idempotent; records written by instrumentation are never
replaced. Exit status: 0 written, 1 no data for the batch, 2 bad input, 3 git unavailable
(one error line; records from the other sources are still written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Final

from exporter.archive.model import InvalidBatchId, check_batch_id, dump_record
from exporter.archive.pricing import load_pricing
from exporter.history.analyze import Analysis, analyze_batch, save_analysis
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
  batch-metrics analyze --batch 47 --verbose      # also: each commit's operation and why

the sources and the rules that combine them: docs/sources.md
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
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="list the batch documents that are not items, and each commit's operation and why",
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
    for line in analysis.warnings:
        print(f"batch-metrics: warning: {line}", file=sys.stderr)
    if args.verbose:
        _explain(analysis)
    if not analysis.records:
        if analysis.unavailable:
            raise CommandError(analysis.unavailable[0], EXIT_SOURCE_UNAVAILABLE)
        raise CommandError(f"no data found for batch {batch_id} under {root}", EXIT_NO_DATA)
    for line in analysis.unavailable:
        print(f"batch-metrics: error: {line}", file=sys.stderr)
    if analysis.missing:
        print(
            f"batch-metrics: batch {batch_id}: no evidence of {', '.join(analysis.missing)}; "
            "nothing written for it",
            file=sys.stderr,
        )
    _report(analysis, archive, dry_run=args.dry_run)
    return EXIT_SOURCE_UNAVAILABLE if analysis.unavailable else 0


def _report(analysis: Analysis, archive: Path, *, dry_run: bool) -> None:
    if dry_run:
        for record in analysis.records:
            print(dump_record(record), end="")
        return
    for outcome in save_analysis(archive, analysis.records):
        r = outcome.record
        if outcome.path is None:
            print(f"batch {r.batch_id} {r.operation}: not written: {outcome.reason}")
        else:
            print(f"batch {r.batch_id} {r.operation} ({r.source}): saved {outcome.path}")


def _explain(analysis: Analysis) -> None:
    for path in analysis.ignored:
        print(f"batch-metrics: ignored (not an item of the batch): {path}", file=sys.stderr)
    for c in analysis.commits:
        print(
            f"batch-metrics: commit {c.commit.sha[:10]} {c.commit.time.isoformat()} "
            f"{c.operation or 'no operation'} ({c.rule}): {c.commit.subject[:100]}",
            file=sys.stderr,
        )
