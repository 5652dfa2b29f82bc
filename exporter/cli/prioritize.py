"""``batch-metrics prioritize``: rank Phase-2 candidates by what the archive shows.

Each candidate of the decision framework (LLM caching, subagent result caching, advanced
error recovery, streaming progress, multi-model orchestration, and any you add) is checked
against its metric triggers; score = impact points x (effort_max + 1 - effort). Edit a copy of
the candidates file to change candidates, triggers, impact levels or effort.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Final

from exporter.cli.options import add_archive_option
from exporter.index.store import RecordFilter
from exporter.reports.prioritize import (
    load_framework,
    measure_signals,
    rank,
    render_plan,
)
from exporter.reports.render import open_index, warn_invalid
from exporter.reports.since import parse_since
from exporter.util.datafile import DataFileError
from exporter.util.errors import CommandError

__all__ = ["add_arguments", "run"]

_EPILOG: Final = """\
examples:
  batch-metrics prioritize
  batch-metrics prioritize --since 30d --format json
  batch-metrics prioritize --candidates my-candidates.yaml
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = _EPILOG
    add_archive_option(parser)
    parser.add_argument(
        "--candidates", type=Path, metavar="PATH", help="candidates file (default: built-in)"
    )
    parser.add_argument("--since", metavar="WHEN", help="only runs after WHEN (7d, 2w, a date)")
    parser.add_argument(
        "--format", choices=("markdown", "json"), default="markdown", help="output format"
    )


def run(args: argparse.Namespace) -> int:
    try:
        framework = load_framework(args.candidates)
    except DataFileError as exc:
        raise CommandError(str(exc), 2) from exc
    since = None
    if args.since is not None:
        try:
            since = parse_since(args.since).timestamp()
        except ValueError as exc:
            raise CommandError(str(exc), 2) from exc
    with open_index(args.archive) as index:
        signals = measure_signals(index, RecordFilter(since=since))
        warn_invalid(index.invalid_files())
    if signals.records == 0:
        raise CommandError(f"no archived runs in {args.archive} to prioritize from")
    ranked = rank(framework, signals)
    if args.format == "json":
        print(
            json.dumps(
                {
                    "signals": signals.model_dump(),
                    "candidates": [r.model_dump() for r in ranked],
                },
                indent=2,
            )
        )
    else:
        print(render_plan(ranked, signals), end="")
    return 0
