"""``batch-metrics stack``: the monitoring stack without Docker, on loopback.

Runs Prometheus, Alertmanager, Pushgateway (binaries from your package manager: Debian's
prometheus, prometheus-alertmanager, prometheus-pushgateway; Homebrew's prometheus,
alertmanager, pushgateway) and `batch-metrics serve`, with the configuration docker-compose.yml
uses (prometheus/, alertmanager/), rewritten for 127.0.0.1. The configuration is read from
--config-dir; by default from the current directory when it holds prometheus/ and
alertmanager/ (a clone, or files written by --init), else from the copies installed with the
package, so it works in any project directory. Ports default to the compose file's. Prints the
URLs, runs until Ctrl-C or SIGTERM, then stops every server. Data stays in --state-dir between
runs. Grafana is not started: point yours at the Prometheus URL and load grafana/provisioning
(docs/monitoring-stack.md).

--init writes the compose stack's files (docker-compose.yml, .env.example, prometheus/,
alertmanager/, grafana/, otel-collector/, tempo/) into --config-dir (default: .) and exits;
files you changed are kept unless --force.

Alerts judge by the thresholds in effect (--thresholds, else BATCH_METRICS_THRESHOLDS, else
the packaged file), as `trends` does: a stale rule file in --config-dir is replaced by the
rules they give, with a warning, and --init writes the rule file and the Grafana files from
them.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from exporter.cli.options import fixed_port_number
from exporter.cli.threshold_files import RULES_FILE, threshold_files
from exporter.index.ledger import Ledger, ledger_path
from exporter.index.store import ArchiveIndex
from exporter.prometheus.blocks import BlocksError
from exporter.prometheus.history import load_missing
from exporter.prometheus.rules import render_rules
from exporter.signals.thresholds import Thresholds, load_thresholds
from exporter.stack.native import DEFAULT_PORTS, StackError, StackOptions, start_stack
from exporter.stack.packaged import config_source, write_stack_files
from exporter.util import generated
from exporter.util.errors import EXIT_USAGE, CommandError

__all__ = ["add_arguments", "run"]

_DURATION = re.compile(r"^[0-9]+(ms|s|m|h)$")


def _duration(text: str) -> str:
    if not _DURATION.match(text):
        raise argparse.ArgumentTypeError(f"not a Prometheus duration like 15s or 1m: {text!r}")
    return text


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "batch-metrics" / "stack"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "examples:\n"
        "  batch-metrics stack --ce-dir ~/project/.ce\n"
        "  batch-metrics stack --prometheus-port 19090\n"
        "  batch-metrics stack --init      # then: cp .env.example .env; docker compose up -d"
    )
    parser.add_argument(
        "--config-dir",
        type=Path,
        default=None,
        help="directory holding prometheus/ and alertmanager/ (default: . when it holds them, "
        "else the copies installed with the package)",
    )
    parser.add_argument(
        "--init",
        action="store_true",
        help="write the compose stack's files into --config-dir (default: .) and exit",
    )
    parser.add_argument(
        "--force", action="store_true", help="with --init: replace files that differ"
    )
    parser.add_argument(
        "--thresholds",
        type=Path,
        metavar="PATH",
        help="thresholds file (default: $BATCH_METRICS_THRESHOLDS, else the packaged one)",
    )
    parser.add_argument(
        "--ce-dir",
        type=Path,
        default=Path(".ce"),
        help="the orchestrator's .ce directory (default: .ce)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=_default_state_dir(),
        help="rendered configs and data (default: $XDG_STATE_HOME/batch-metrics/stack)",
    )
    for name, port in DEFAULT_PORTS.items():
        parser.add_argument(
            f"--{name}-port", type=fixed_port_number, default=port, help=f"(default: {port})"
        )
    parser.add_argument("--no-pushgateway", action="store_true", help="run without the Pushgateway")
    parser.add_argument(
        "--scrape-interval", type=_duration, help="override prometheus.yml's (e.g. 1s for a demo)"
    )
    parser.add_argument(
        "--evaluation-interval", type=_duration, help="override prometheus.yml's rule interval"
    )
    parser.add_argument(
        "--alert-for",
        type=_duration,
        help="override every alert's `for` (e.g. 0s to see alerts at once in a demo)",
    )


def _init(target: Path, thresholds: Thresholds, *, force: bool) -> int:
    rendered = threshold_files(thresholds)
    try:
        written, kept = write_stack_files(target, overwrite=force)
        # the packaged copies hold the packaged thresholds: the ones in effect may differ
        mine = {str(relative) for relative in written}
        shaped = generated.write(target, {k: v for k, v in rendered.items() if k in mine})
    except OSError as exc:
        raise CommandError(f"cannot write the stack's files into {target}: {exc}") from exc
    print(f"wrote {len(written)} files into {target}", file=sys.stderr)
    if shaped:
        print(
            f"of which {len(shaped)} from the thresholds in effect: {', '.join(shaped)}",
            file=sys.stderr,
        )
    for relative in kept:
        print(f"kept {target / relative}: it differs (--force replaces it)", file=sys.stderr)
    print(
        "next: cp .env.example .env (set GF_SECURITY_ADMIN_PASSWORD), then docker compose up -d;"
        " or without Docker: batch-metrics stack",
        file=sys.stderr,
    )
    return 0


def _load_history(archive: Path, tsdb: Path) -> None:
    """Before Prometheus starts: the archive's history it does not hold yet, as blocks.

    What the live exporter (``serve --live-only``) counts, or a previous start loaded, is left
    out (the archive's ledger says which: docs/prometheus.md, "History and the live scrape").
    """
    with ArchiveIndex(archive) as index, Ledger(ledger_path(archive)) as ledger:
        index.refresh()
        try:
            loaded = load_missing(index, ledger, time.time(), tsdb=tsdb)
        except BlocksError as exc:
            raise StackError(str(exc)) from exc
    print(f"history       {loaded.stats.records} records loaded into {tsdb}", flush=True)


def run(args: argparse.Namespace) -> int:
    thresholds = load_thresholds(args.thresholds)
    if args.init:
        return _init(args.config_dir or Path(), thresholds, force=args.force)
    if args.force:
        raise CommandError("--force goes with --init", EXIT_USAGE)
    config_dir = config_source(args.config_dir)
    if config_dir is None:
        raise CommandError(
            "no prometheus/ and alertmanager/ here and none installed with the package: "
            "pass --config-dir",
            EXIT_USAGE,
        )
    options = StackOptions(
        config_dir=config_dir.resolve(),
        ce_dir=args.ce_dir.resolve(),
        state_dir=args.state_dir.resolve(),
        ports={name: getattr(args, f"{name}_port") for name in DEFAULT_PORTS},
        scrape_interval=args.scrape_interval,
        evaluation_interval=args.evaluation_interval,
        alert_for=args.alert_for,
        pushgateway=not args.no_pushgateway,
        generated_rules={RULES_FILE.name: render_rules(thresholds)},
    )
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with start_stack(options, load_history=_load_history) as processes:
            for process in processes:
                print(f"{process.name:<13} {process.url}", flush=True)
            print("stack ready (Ctrl-C stops it)", flush=True)
            while not stop.wait(0.5):
                for process in processes:
                    if process.popen.poll() is not None:
                        raise CommandError(
                            f"{process.name} exited with code {process.popen.returncode}: "
                            f"{process.tail()}"
                        )
    except StackError as exc:
        raise CommandError(str(exc)) from exc
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
