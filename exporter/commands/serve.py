"""``batch-metrics serve``: expose the archive (and running tasks) as Prometheus metrics.

A long-running HTTP server: ``/metrics`` (Prometheus text or OpenMetrics by ``Accept``),
``/health`` and a landing page at ``/``. The figures are derived from the archive, so they
survive restarts of the orchestrator and of this server alike; new records show at the next
scrape, and the archive is re-checked file by file every ``--rescan-interval`` seconds to catch
records rewritten in place. Running tasks and their heartbeat ages come from the orchestrator's
heartbeat files under ``--orchestration-dir``. Stop it with Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from exporter.archive import DEFAULT_ARCHIVE
from exporter.errors import CommandError
from exporter.index import ArchiveIndex
from exporter.prometheus.live import DEFAULT_ORCHESTRATION_DIR
from exporter.prometheus.server import DEFAULT_PORT, MetricsServer, build_registry

__all__ = ["add_arguments", "run"]

_ENV_PREFIX = "BATCH_METRICS_"


def _env(name: str, default: str) -> str:
    return os.environ.get(_ENV_PREFIX + name) or default


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 0..65535")
    return port


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("the rescan interval must be positive")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (__doc__ or "").split("\n\n", 1)[1].strip()
    parser.epilog = (
        "Options also read BATCH_METRICS_ARCHIVE, BATCH_METRICS_ORCHESTRATION_DIR, "
        "BATCH_METRICS_BIND and BATCH_METRICS_PORT.\n\nexamples:\n"
        "  batch-metrics serve\n  batch-metrics serve --bind 0.0.0.0 --port 9477"
    )
    parser.add_argument(
        "--archive",
        type=Path,
        default=Path(_env("ARCHIVE", str(DEFAULT_ARCHIVE))),
        help="archive directory (default: %(default)s)",
    )
    parser.add_argument(
        "--orchestration-dir",
        type=Path,
        default=Path(_env("ORCHESTRATION_DIR", str(DEFAULT_ORCHESTRATION_DIR))),
        help="orchestrator's directory with tasks/batch-*/task-*.hb (default: %(default)s)",
    )
    parser.add_argument(
        "--bind",
        default=_env("BIND", "127.0.0.1"),
        help="address to listen on (default: %(default)s)",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=_port(_env("PORT", str(DEFAULT_PORT))),
        help="port to listen on, 0 for any free one (default: %(default)s)",
    )
    parser.add_argument(
        "--rescan-interval",
        type=_interval,
        default=60.0,
        metavar="SECONDS",
        help="re-check every archive file this often (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    archive: Path = args.archive
    if archive.exists() and not archive.is_dir():
        raise CommandError(f"archive {archive} is not a directory", 2)
    index = ArchiveIndex(archive)
    registry, collector = build_registry(index, args.orchestration_dir)
    try:
        server = MetricsServer.start(
            registry,
            collector,
            host=args.bind,
            port=args.port,
            rescan_interval=args.rescan_interval,
        )
    except OSError as exc:
        index.close()
        raise CommandError(
            f"cannot listen on {args.bind}:{args.port}: {exc.strerror or exc}"
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
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        index.close()
    return 0
