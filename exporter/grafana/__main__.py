"""``python -m exporter.grafana [--check] [--root DIR] [--thresholds FILE]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from exporter.grafana.provisioning import stale, write
from exporter.signals.thresholds import load_thresholds
from exporter.util.datafile import DataFileError


def main(argv: Sequence[str] | None = None) -> int:
    """Regenerate the Grafana files under ``--root``, or with ``--check`` only report stale ones."""
    parser = argparse.ArgumentParser(
        prog="python -m exporter.grafana",
        description="Regenerate grafana/ (dashboards, datasource, alert rules) from code.",
    )
    parser.add_argument("--root", type=Path, default=Path(), help="repository root (default: .)")
    parser.add_argument(
        "--thresholds",
        type=Path,
        default=None,
        help="thresholds file (default: $BATCH_METRICS_THRESHOLDS, else the packaged one)",
    )
    parser.add_argument(
        "--check", action="store_true", help="fail if a file is stale; write nothing"
    )
    args = parser.parse_args(argv)
    try:
        thresholds = load_thresholds(args.thresholds)
    except DataFileError as exc:
        print(f"exporter.grafana: error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        outdated = stale(args.root, thresholds)
        for relative in outdated:
            print(f"stale: {relative} (run: python -m exporter.grafana)", file=sys.stderr)
        return 1 if outdated else 0
    for relative in write(args.root, thresholds):
        print(f"wrote {relative}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
