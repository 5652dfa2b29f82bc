"""The HTTP side of ``batch-metrics serve``: ``/metrics``, ``/health`` and a landing page.

:func:`create_app` builds a WSGI application over an injected registry (no global state):
``/metrics`` is prometheus_client's exposition app, so content negotiation (Prometheus text
0.0.4 or OpenMetrics 1.0 by ``Accept``), gzip and ``name[]`` filtering behave as in every
client_python exporter; ``/health`` answers 200 with a JSON status while the last archive scan
succeeded and 503 when it failed; ``/`` links to both. :class:`MetricsServer` runs that app
on a threading WSGI server and rescans the archive (stat every file) in the background.
"""

from __future__ import annotations

import html
import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast
from wsgiref.simple_server import WSGIRequestHandler, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from exporter.index import ArchiveIndex
from exporter.prometheus.collector import ArchiveCollector
from exporter.prometheus.live import HeartbeatCollector

__all__ = ["DEFAULT_PORT", "MetricsServer", "build_registry", "create_app"]

_log = logging.getLogger(__name__)

# 9464 is the OTel Prometheus exporter's default; a long-running orchestrator using the
# in-process reader on the same host keeps it, so the archive exporter takes its own port.
DEFAULT_PORT: Final = 9477

_LANDING: Final = """<!doctype html>
<html><head><meta charset="utf-8"><title>batch-metrics exporter</title></head>
<body><h1>batch-metrics exporter</h1>
<p>Prometheus metrics of LLM-agent batch operations, derived from the archive
<code>{archive}</code>.</p>
<ul><li><a href="/metrics">/metrics</a>: the metrics (Prometheus text or OpenMetrics)</li>
<li><a href="/health">/health</a>: the exporter's own status (JSON)</li></ul>
</body></html>
"""


def build_registry(
    index: ArchiveIndex, orchestration: Path | None = None
) -> tuple[CollectorRegistry, ArchiveCollector]:
    """A fresh registry with the archive collector and, if given, the heartbeat collector."""
    registry = CollectorRegistry(auto_describe=False)
    collector = ArchiveCollector(index)
    registry.register(collector)
    if orchestration is not None:
        registry.register(HeartbeatCollector(orchestration))
    return registry, collector


def _respond(
    start_response: StartResponse, status: str, content_type: str, body: bytes
) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def create_app(registry: CollectorRegistry, collector: ArchiveCollector) -> WSGIApplication:
    """The exporter's WSGI app over ``registry``; ``collector`` reports the scan status."""
    metrics_app = make_wsgi_app(registry)
    landing = _LANDING.format(archive=html.escape(str(collector.index.archive))).encode()

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == "/metrics":
            return cast(Iterable[bytes], metrics_app(environ, start_response))
        if path == "/health":
            status = collector.status
            body = {
                "status": "ok" if status.ok else "error",
                "records": status.records,
                "invalid_records": status.invalid,
                "last_scan_timestamp": status.finished_at,
                "error": status.error,
            }
            code = "200 OK" if status.ok else "503 Service Unavailable"
            return _respond(start_response, code, "application/json", json.dumps(body).encode())
        if path == "/":
            return _respond(start_response, "200 OK", "text/html; charset=utf-8", landing)
        return _respond(start_response, "404 Not Found", "text/plain", b"not found\n")

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s - %s", self.address_string(), format % args)


@dataclass
class MetricsServer:
    """A running exporter: HTTP on ``host:port`` plus the background rescan thread."""

    host: str
    port: int
    _httpd: ThreadingWSGIServer
    _threads: tuple[threading.Thread, ...]
    _stop: threading.Event

    @classmethod
    def start(
        cls,
        registry: CollectorRegistry,
        collector: ArchiveCollector,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        rescan_interval: float = 60.0,
    ) -> MetricsServer:
        """Load the archive, bind (port 0 picks a free port), and serve in daemon threads."""
        collector.update()
        httpd = make_server(
            host,
            port,
            create_app(registry, collector),
            ThreadingWSGIServer,
            handler_class=_QuietHandler,
        )
        stop = threading.Event()
        serving = threading.Thread(
            target=httpd.serve_forever, args=(0.1,), name="metrics-http", daemon=True
        )
        rescanning = threading.Thread(
            target=_every,
            args=(stop, rescan_interval, collector.rescan),
            name="archive-rescan",
            daemon=True,
        )
        serving.start()
        rescanning.start()
        bound_host, bound_port = httpd.server_address[:2]
        return cls(str(bound_host), int(bound_port), httpd, (serving, rescanning), stop)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def wait(self) -> None:
        """Block until :meth:`stop` is called (from another thread or a signal handler)."""
        self._stop.wait()

    def stop(self) -> None:
        """Stop serving and rescanning, and close the socket (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=10)


def _every(stop: threading.Event, interval: float, action: Callable[[], object]) -> None:
    while not stop.wait(interval):
        action()
