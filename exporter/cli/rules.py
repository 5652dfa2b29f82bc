"""``batch-metrics rules``: generate the Prometheus rule file, or check a file against it.

The rules come from the thresholds file (the one ``trends`` reads: --thresholds, else
BATCH_METRICS_THRESHOLDS, else the packaged one) and the PromQL of exporter/prometheus/promql.py.
With --check FILE the exit status is 0 when FILE is up to date and 1 when it is stale.
With --config-dir DIR, every file the thresholds shape under DIR (the rule file and the
Grafana files) is written, or with --check checked, together.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Final

from exporter.cli.threshold_files import RULES_FILE, threshold_files
from exporter.prometheus.rules import render_rules
from exporter.signals.thresholds import Thresholds, load_thresholds
from exporter.util import generated
from exporter.util.atomic import replace_atomically
from exporter.util.errors import EXIT_USAGE, CommandError

__all__ = ["DEFAULT_RULES_FILE", "add_arguments", "run"]

DEFAULT_RULES_FILE: Final = RULES_FILE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "examples:\n"
        f"  batch-metrics rules --output {DEFAULT_RULES_FILE}\n"
        f"  batch-metrics rules --check {DEFAULT_RULES_FILE}\n"
        "  batch-metrics rules --config-dir .    # the rule file and the Grafana files"
    )
    parser.add_argument(
        "--thresholds", type=Path, default=None, help="thresholds file (default: packaged)"
    )
    parser.add_argument(
        "--config-dir",
        type=Path,
        metavar="DIR",
        help="write (with --check: check) every file the thresholds shape under DIR: the rule "
        "file and the Grafana files (DIR: a clone's root, or where 'stack --init' wrote)",
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


def _verdict(stale: list[Path], command: str, checked: str) -> int:
    """What --check prints and returns: each stale file with the command that regenerates it."""
    for path in stale:
        print(f"{path} is stale: regenerate it with '{command}'", file=sys.stderr)
    if not stale:
        print(f"{checked} is up to date", file=sys.stderr)
    return 1 if stale else 0


def _config_dir(root: Path, thresholds: Thresholds, *, check: bool) -> int:
    if not root.is_dir():
        raise CommandError(f"--config-dir: no directory {root}", EXIT_USAGE)
    rendered = threshold_files(thresholds)
    try:
        if check:
            stale = [root / relative for relative in generated.stale(root, rendered)]
            command = f"batch-metrics rules --config-dir {root}"
            return _verdict(stale, command, f"every file the thresholds shape under {root}")
        for relative in generated.write(root, rendered):
            print(f"wrote {root / relative}", file=sys.stderr)
    except OSError as exc:
        raise CommandError(f"cannot update the files under {root}: {exc}") from exc
    return 0


def run(args: argparse.Namespace) -> int:
    thresholds = load_thresholds(args.thresholds)
    if args.config_dir is not None:
        if args.output != "-" or args.check not in (None, DEFAULT_RULES_FILE):
            raise CommandError("--config-dir takes neither --output nor a --check FILE", EXIT_USAGE)
        return _config_dir(args.config_dir, thresholds, check=args.check is not None)
    text = render_rules(thresholds)
    if args.check is not None:
        path: Path = args.check
        try:
            current = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror or exc}", 2) from exc
        stale = [path] if current != text else []
        return _verdict(stale, f"batch-metrics rules --output {path}", str(path))
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
