"""``batch-metrics trends``: durations, success rates and bottlenecks across archived runs.

Reads the archive (through its index), prints the report on stdout and saves the markdown
report (by default to .ce/trend-analysis-report.md, as the seed's trend-analysis.py does).
``--format html`` saves a self-contained page with charts beside it (``--html``, by default
.ce/trend-analysis-report.html) instead of printing; with ``--no-save`` or ``--html -`` the
page goes to stdout. It needs matplotlib (the ``html`` extra).
``--recent N`` takes the N most recent runs by start time; ``--since`` a time window; both
combine with ``--operation``. Bottlenecks use the shared thresholds file.
Exit status: 0 report written, 1 bottlenecks found with --fail-on-bottleneck, 2 bad input
(no archive, say): the convention of every command (``batch-metrics --help``).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from exporter.cli.options import add_archive_option
from exporter.index.store import RecordFilter
from exporter.reports.charts import require_matplotlib
from exporter.reports.html import render_html
from exporter.reports.markdown import render_markdown
from exporter.reports.render import open_index, warn_invalid, write_text_atomic
from exporter.reports.since import parse_since
from exporter.reports.timeline import compute_timeline
from exporter.reports.trends import compute_trends
from exporter.signals.thresholds import load_thresholds
from exporter.util.errors import EXIT_FINDINGS, CommandError
from exporter.util.paths import DEFAULT_REPORT
from instrumentation.semconv import OPERATIONS

__all__ = ["DEFAULT_REPORT", "EXIT_BOTTLENECK", "add_arguments", "run"]

EXIT_BOTTLENECK: Final = EXIT_FINDINGS

_EPILOG: Final = """\
examples:
  batch-metrics trends --all
  batch-metrics trends --recent 5 --operation execute
  batch-metrics trends --since 7d --history-dir .ce/reports      # weekly, kept as history
  batch-metrics trends --all --format json --no-save | jq '.bottlenecks'
  batch-metrics trends --since 30d --format html     # .ce/trend-analysis-report.html
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = _EPILOG
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--recent", type=int, metavar="N", help="the N most recent runs (by start time)"
    )
    which.add_argument("--all", action="store_true", help="every run (the default)")
    parser.add_argument(
        "--since",
        metavar="WHEN",
        help="runs that ended at or after WHEN: 7d, 12h, 2w or an ISO date",
    )
    parser.add_argument("--operation", choices=OPERATIONS, help="one operation only")
    add_archive_option(parser)
    parser.add_argument(
        "--format",
        choices=("markdown", "json", "html"),
        default="markdown",
        help="what to print on stdout (default: markdown); html saves a page with charts "
        "(see --html) and prints nothing",
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=DEFAULT_REPORT,
        help=f"where to save the markdown report (default: {DEFAULT_REPORT})",
    )
    parser.add_argument(
        "--html",
        type=Path,
        metavar="PATH",
        help="with --format html: where to save the page ('-': stdout; default: the --report "
        "path ending .html)",
    )
    parser.add_argument("--no-save", action="store_true", help="print only, save no report")
    parser.add_argument(
        "--history-dir",
        type=Path,
        metavar="DIR",
        help="also keep a dated copy, DIR/trend-analysis-YYYY-MM-DD.md",
    )
    parser.add_argument(
        "--thresholds", type=Path, metavar="PATH", help="bottleneck thresholds file"
    )
    parser.add_argument(
        "--rescan",
        action="store_true",
        help="re-check every archive file (catches files rewritten in place)",
    )
    parser.add_argument(
        "--fail-on-bottleneck",
        action="store_true",
        help=f"exit {EXIT_BOTTLENECK} when a bottleneck is found (for CI)",
    )


def _filter(args: argparse.Namespace, now: datetime) -> RecordFilter:
    if args.recent is not None and args.recent < 1:
        raise CommandError(f"--recent must be at least 1, not {args.recent}", 2)
    since = None
    if args.since is not None:
        try:
            since = parse_since(args.since, now).timestamp()
        except ValueError as exc:
            raise CommandError(str(exc), 2) from exc
    return RecordFilter(operation=args.operation, since=since, recent=args.recent)


def _html(args: argparse.Namespace, page: str) -> None:
    """Print the page (``--no-save``, ``--html -``) or save it beside the markdown report."""
    target: Path = args.html if args.html is not None else args.report.with_suffix(".html")
    if args.no_save or str(target) == "-":
        sys.stdout.write(page)
        return
    write_text_atomic(target, page)
    print(f"batch-metrics: HTML report saved to {target}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    where = _filter(args, now)
    thresholds = load_thresholds(args.thresholds)
    page = args.format == "html"
    if page:
        require_matplotlib()  # before the work: one error line when it is missing
    with open_index(args.archive, rescan=args.rescan) as index:
        report = compute_trends(index, thresholds, where, now=now)
        timeline = compute_timeline(index, where) if page else None
    warn_invalid(report.invalid_files)
    if report.records == 0:
        print("batch-metrics: no archived runs match the selection", file=sys.stderr)
    markdown = render_markdown(report)
    if timeline is not None:
        _html(args, render_html(report, timeline, thresholds))
    elif args.format == "json":
        print(report.model_dump_json(indent=2))
    else:
        print(markdown, end="")
    if not args.no_save:
        write_text_atomic(args.report, markdown)
        print(f"batch-metrics: report saved to {args.report}", file=sys.stderr)
        if args.history_dir is not None:
            dated = args.history_dir / f"trend-analysis-{now.astimezone():%Y-%m-%d}.md"
            write_text_atomic(dated, markdown)
            print(f"batch-metrics: report kept as {dated}", file=sys.stderr)
    if args.fail_on_bottleneck and report.bottlenecks:
        return EXIT_BOTTLENECK
    return 0
