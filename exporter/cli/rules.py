"""``batch-metrics rules``: generate the Prometheus rule file, or check a file against it.

The rules come from the thresholds file (the one ``trends`` reads: --thresholds, else
BATCH_METRICS_THRESHOLDS, else the packaged one) and the PromQL of exporter/prometheus/promql.py.
With --check FILE the exit status is 0 when FILE is up to date and 1 when it is stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Final

from exporter.prometheus.rules import render_rules
from exporter.signals.thresholds import load_thresholds
from exporter.util.atomic import replace_atomically
from exporter.util.errors import CommandError

__all__ = ["DEFAULT_RULES_FILE", "add_arguments", "run"]

DEFAULT_RULES_FILE: Final = Path("prometheus/rules/batch-metrics.rules.yml")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "examples:\n"
        f"  batch-metrics rules --output {DEFAULT_RULES_FILE}\n"
        f"  batch-metrics rules --check {DEFAULT_RULES_FILE}"
    )
    parser.add_argument(
        "--thresholds", type=Path, default=None, help="thresholds file (default: packaged)"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--output",
        "-o",
        default="-",
        metavar="FILE",
        help="write the rule file here, '-' for stdout (default: %(default)s)",
    )
    mode.add_argument(
        "--check",
        type=Path,
        nargs="?",
        const=DEFAULT_RULES_FILE,
        metavar="FILE",
        help=f"exit 1 if FILE differs from what would be generated (default: {DEFAULT_RULES_FILE})",
    )


def run(args: argparse.Namespace) -> int:
    text = render_rules(load_thresholds(args.thresholds))
    if args.check is not None:
        path: Path = args.check
        try:
            current = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror or exc}", 2) from exc
        if current != text:
            print(
                f"{path} is stale: regenerate it with 'batch-metrics rules --output {path}'",
                file=sys.stderr,
            )
            return 1
        print(f"{path} is up to date", file=sys.stderr)
        return 0
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    target = Path(args.output)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        replace_atomically(target, text)
    except OSError as exc:
        raise CommandError(f"cannot write {target}: {exc.strerror or exc}") from exc
    return 0
