"""``batch-metrics recover``: record the batches of processes that died mid-run; tidy up.

A running batch keeps an in-flight marker in the archive's hidden ``.inflight/`` directory. If
its process is gone (killed, crashed, the machine rebooted), this writes the marker's figures
(items finished, tokens, stages so far) as a record with status ``crashed`` and removes the
marker. A marker from another host is recovered once it is older than ``--stale-after``. Safe
to run at any time and as often as wanted: a live process's marker is left alone and a run
already recorded is not written twice. It also removes temporary files of interrupted writes
(``.tmp-*``) older than ``--temp-age``. One line per action on stdout; exit 0, or 1 when a
marker could not be read (it is reported and kept).
"""

from __future__ import annotations

import argparse
import json
from datetime import timedelta

from exporter.archive.recovery import DEFAULT_STALE_AFTER, DEFAULT_TEMP_MAX_AGE, recover
from exporter.cli.options import add_archive_option, non_negative_number
from exporter.util.paths import require_archive

__all__ = ["add_arguments", "run"]

EXIT_INVALID_MARKER = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "examples:\n  batch-metrics recover\n"
        "  batch-metrics recover --archive /data/completed-batches --dry-run"
    )
    add_archive_option(parser)
    parser.add_argument(
        "--stale-after",
        type=non_negative_number,
        metavar="HOURS",
        default=DEFAULT_STALE_AFTER.total_seconds() / 3600,
        help="recover another host's marker not updated for this long (default: %(default)g hours)",
    )
    parser.add_argument(
        "--temp-age",
        type=non_negative_number,
        metavar="MINUTES",
        default=DEFAULT_TEMP_MAX_AGE.total_seconds() / 60,
        help="remove temporary files older than this (default: %(default)g minutes)",
    )
    parser.add_argument("--dry-run", action="store_true", help="say what would be done, do nothing")
    parser.add_argument("--json", action="store_true", help="print the actions as JSON")


def run(args: argparse.Namespace) -> int:
    archive = require_archive(args.archive)
    actions = recover(
        archive,
        stale_after=timedelta(hours=args.stale_after),
        temp_max_age=timedelta(minutes=args.temp_age),
        dry_run=args.dry_run,
    )
    if args.json:
        document = [{"action": a.kind, "path": str(a.path), "detail": a.detail} for a in actions]
        print(json.dumps(document, indent=2))
    else:
        prefix = "would do: " if args.dry_run else ""
        for action in actions:
            print(f"{prefix}{action}")
        if not actions:
            print("nothing to recover")
    return EXIT_INVALID_MARKER if any(a.kind == "invalid" for a in actions) else 0
