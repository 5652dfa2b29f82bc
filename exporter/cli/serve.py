"""``batch-metrics serve``: expose the archive (and running tasks) as Prometheus metrics.

A long-running HTTP server: ``/metrics`` (Prometheus text or OpenMetrics by ``Accept``),
``/health`` and a landing page at ``/``. The figures are derived from the archive, so they
survive restarts of the orchestrator and of this server alike; new records show at the next
scrape, and the archive is re-checked file by file every ``--rescan-interval`` seconds to catch
records rewritten in place. A missing or unlistable archive is an error (exit 2); record files
it may not read (another user's, owner-only) make ``/health`` fail. Running tasks and their
heartbeat ages come from the orchestrator's heartbeat files under ``--orchestration-dir``.
Stop it with Ctrl-C or SIGTERM.

It listens on 127.0.0.1 unless told otherwise. ``--web.config.file`` adds TLS and basic auth in
the format of Prometheus' exporters (docs/security.md); connections are bounded in number and
in time, so slow or idle clients cannot pin it.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from exporter.cli.options import add_archive_option, port_number, positive_int, positive_seconds
from exporter.index.ledger import Ledger, ledger_path
from exporter.index.store import ArchiveIndex, default_index_path
from exporter.prometheus.live import DEFAULT_ORCHESTRATION_DIR
from exporter.prometheus.server import (
    DEFAULT_PORT,
    Limits,
    MetricsServer,
    archive_problem,
    build_registry,
)
from exporter.prometheus.webconfig import WebConfig, load_web_config
from exporter.util.errors import CommandError
from exporter.util.paths import DEFAULT_ARCHIVE, require_archive
from exporter.util.settings import load_settings

__all__ = ["add_arguments", "run"]

_log = logging.getLogger(__name__)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (__doc__ or "").split("\n\n", 1)[1].strip()
    parser.epilog = (
        "Options also read BATCH_METRICS_ARCHIVE, BATCH_METRICS_ORCHESTRATION_DIR, "
        "BATCH_METRICS_BIND, BATCH_METRICS_PORT and BATCH_METRICS_WEB_CONFIG.\n\nexamples:\n"
        "  batch-metrics serve\n"
        "  batch-metrics serve --bind 0.0.0.0 --port 9477 --web.config.file web.yml"
    )
    env = load_settings()  # checked by main() already: a bad value is one error line
    add_archive_option(parser, default=env.archive or DEFAULT_ARCHIVE)
    parser.add_argument(
        "--orchestration-dir",
        type=Path,
        default=env.orchestration_dir or DEFAULT_ORCHESTRATION_DIR,
        help="orchestrator's directory with tasks/batch-*/task-*.hb (default: %(default)s)",
    )
    parser.add_argument(
        "--bind",
        default=env.bind or "127.0.0.1",
        help="address to listen on (default: %(default)s)",
    )
    parser.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT if env.port is None else env.port,
        help="port to listen on, 0 for any free one (default: %(default)s)",
    )
    parser.add_argument(
        "--rescan-interval",
        type=positive_seconds,
        default=60.0,
        metavar="SECONDS",
        help="re-check every archive file this often (default: %(default)s)",
    )
    parser.add_argument(
        "--web.config.file",
        "--web-config",
        dest="web_config",
        type=Path,
        default=env.web_config,
        metavar="FILE",
        help="TLS and basic auth, in the format of Prometheus' exporter-toolkit "
        "(docs/security.md; default: none, plain HTTP)",
    )
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        default=Limits.timeout,
        metavar="SECONDS",
        help="limit for a client's TLS handshake, for its request head, and for taking the "
        "response, each (default: %(default)s)",
    )
    parser.add_argument(
        "--live-only",
        action="store_true",
        help="count only runs that end after this archive's first live start and arrive on "
        "time; older and late runs are history for `backfill --missing` (what the stacks do; "
        "docs/prometheus.md)",
    )
    parser.add_argument(
        "--max-connections",
        type=positive_int,
        default=Limits.max_connections,
        metavar="N",
        help="connections served at once; more are refused (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    web = load_web_config(Path(args.web_config)) if args.web_config else WebConfig()
    archive = require_archive(args.archive)
    if not _is_loopback(args.bind) and web.ssl_context is None and web.auth is None:
        _log.warning(
            "listening on %s without TLS or basic auth: anyone who can reach it can read the "
            "metrics (see --web.config.file)",
            args.bind,
        )
    # An index of its own: its running totals follow the index's deltas, which another
    # process refreshing a shared index file would consume first.
    index = ArchiveIndex(archive, default_index_path(archive, purpose="serve"))
    # What was counted, so that counters never go down, also across restarts.
    ledger = Ledger(ledger_path(archive))
    registry, collector = build_registry(
        index, args.orchestration_dir, ledger=ledger, live_only=args.live_only
    )
    try:
        server = MetricsServer.start(
            registry,
            collector,
            host=args.bind,
            port=args.port,
            rescan_interval=args.rescan_interval,
            web=web,
            limits=Limits(args.max_connections, args.timeout),
        )
    except OSError as exc:
        index.close()
        ledger.close()
        hint = " (choose another with --port)" if exc.errno == errno.EADDRINUSE else ""
        raise CommandError(
            f"cannot listen on {args.bind}:{args.port}: {exc.strerror or exc}{hint}"
        ) from exc

    def _stop(signum: int, frame: FrameType | None) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, _stop)
    status = collector.status
    print(
        f"serving {status.records} records of {archive} on {server.url}/metrics "
        f"({status.invalid} invalid files skipped)",
        file=sys.stderr,
        flush=True,
    )
    problem = status.error if not status.ok else archive_problem(index)
    if problem is not None:
        print(f"batch-metrics: error: {problem}; /health fails", file=sys.stderr, flush=True)
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        index.close()
        ledger.close()
    return 0
