"""The HTTP side of ``batch-metrics serve``: ``/metrics``, ``/health`` and a landing page.

:func:`create_app` builds a WSGI application over an injected registry (no global state):
``/metrics`` answers as prometheus_client's exposition app does, so content negotiation
(Prometheus text 0.0.4 or OpenMetrics 1.0 by ``Accept``), gzip and ``name[]`` filtering behave
as in every client_python exporter, but renders the archive's families only when they change
(:mod:`exporter.prometheus.exposition`); ``/health`` answers 200 with a JSON status while the
last archive scan succeeded and every record file could be read, and 503 when the scan failed,
the archive directory is missing, or record files cannot be read (see archive_problem); ``/``
links to both. Only GET and HEAD on those three paths are served (405 with ``Allow`` for
other methods, 404 for other paths); with basic auth configured every path needs credentials
(401 with ``WWW-Authenticate``).

:class:`MetricsServer` runs that app on the hardened WSGI server of
:mod:`exporter.prometheus.httpd` (bounded connections, per-phase deadlines, optional TLS;
docs/security.md) and rescans the archive (stat every file) in the background. Every response
carries ``X-Content-Type-Options: nosniff`` and a ``Server`` header without versions.
"""

from __future__ import annotations

import html
import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from exporter.index.ledger import Ledger
from exporter.index.store import ArchiveIndex
from exporter.prometheus.collector import ArchiveCollector
from exporter.prometheus.exposition import CachingRegistry, make_metrics_app
from exporter.prometheus.httpd import SERVER_NAME, HardenedServer, Limits
from exporter.prometheus.live import HeartbeatCollector
from exporter.prometheus.webconfig import BasicAuth, WebConfig

__all__ = [
    "DEFAULT_PORT",
    "PATHS",
    "Limits",
    "MetricsServer",
    "archive_problem",
    "build_registry",
    "create_app",
]

_log = logging.getLogger(__name__)

# 9464 is the OTel Prometheus exporter's default; a long-running orchestrator using the
# in-process reader on the same host keeps it, so the archive exporter takes its own port.
DEFAULT_PORT: Final = 9477
PATHS: Final = ("/", "/metrics", "/health")
_METHODS: Final = ("GET", "HEAD")
_UNREADABLE: Final = "cannot read"  # how exporter.archive.files explains an unreadable file
_COMMON_HEADERS: Final = [("X-Content-Type-Options", "nosniff"), ("Server", SERVER_NAME)]
_CHALLENGE: Final = ("WWW-Authenticate", f'Basic realm="{SERVER_NAME}", charset="UTF-8"')

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
    index: ArchiveIndex,
    orchestration: Path | None = None,
    *,
    ledger: Ledger | None = None,
    live_only: bool = False,
) -> tuple[CachingRegistry, ArchiveCollector]:
    """A fresh registry with the archive collector and, if given, the heartbeat collector."""
    registry = CachingRegistry()
    collector = ArchiveCollector(index, ledger, live_only=live_only)
    registry.register(collector)
    if orchestration is not None:
        registry.register(HeartbeatCollector(orchestration))
    return registry, collector


def archive_problem(index: ArchiveIndex) -> str | None:
    """Why the archive cannot be served in full (one line), or None.

    A missing archive directory, and record files this process may not read (a record written
    owner-only by another user, say) are failures of the exporter, not invalid records: the
    figures would silently leave those batches out.
    """
    archive = index.archive
    if not archive.is_dir():
        return f"no archive directory at {archive}"
    invalid = index.invalid_files()
    unreadable = sorted(name for name, why in invalid.items() if why.startswith(_UNREADABLE))
    if not unreadable:
        return None
    more = f" and {len(unreadable) - 3} more" if len(unreadable) > 3 else ""
    reason = invalid[unreadable[0]].removeprefix(_UNREADABLE).strip(": ")
    return (
        f"cannot read {len(unreadable)} record file(s) in {archive}: {reason} "
        f"({', '.join(unreadable[:3])}{more})"
    )


def _respond(
    start_response: StartResponse,
    status: str,
    content_type: str,
    body: bytes,
    extra: Iterable[tuple[str, str]] = (),
) -> list[bytes]:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), *extra]
    start_response(status, headers)
    return [body]


def create_app(
    registry: CachingRegistry, collector: ArchiveCollector, *, auth: BasicAuth | None = None
) -> WSGIApplication:
    """The exporter's WSGI app over ``registry``; ``collector`` reports the scan status."""
    metrics_app = make_metrics_app(registry)
    landing = _LANDING.format(archive=html.escape(str(collector.index.archive))).encode()

    def route(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if auth is not None and not auth.allows(environ.get("HTTP_AUTHORIZATION")):
            return _respond(
                start_response, "401 Unauthorized", "text/plain", b"unauthorized\n", [_CHALLENGE]
            )
        path = environ.get("PATH_INFO") or "/"
        if path not in PATHS:
            return _respond(start_response, "404 Not Found", "text/plain", b"not found\n")
        if environ.get("REQUEST_METHOD") not in _METHODS:
            return _respond(
                start_response,
                "405 Method Not Allowed",
                "text/plain",
                b"method not allowed\n",
                [("Allow", ", ".join(_METHODS))],
            )
        if path == "/metrics":
            # answered as GET; a HEAD gets the GET's headers (app() below drops the body).
            as_get = {**environ, "REQUEST_METHOD": "GET"}
            return metrics_app(as_get, start_response)
        if path == "/health":
            status = collector.status
            error = status.error if not status.ok else archive_problem(collector.index)
            body = {
                "status": "ok" if error is None else "error",
                "records": status.records,
                "invalid_records": status.invalid,
                "last_scan_timestamp": status.finished_at,
                "error": error,
            }
            code = "200 OK" if error is None else "503 Service Unavailable"
            return _respond(start_response, code, "application/json", json.dumps(body).encode())
        return _respond(start_response, "200 OK", "text/html; charset=utf-8", landing)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def with_headers(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            return start_response(status, [*headers, *_COMMON_HEADERS], exc_info)

        body = route(environ, with_headers)
        if environ.get("REQUEST_METHOD") != "HEAD":
            return body
        close = getattr(body, "close", None)
        if close is not None:
            close()
        return []  # HEAD: the headers (Content-Length included) without the body

    return app


@dataclass
class MetricsServer:
    """A running exporter: HTTP(S) on ``host:port`` plus the background rescan thread."""

    host: str
    port: int
    _httpd: HardenedServer
    _threads: tuple[threading.Thread, ...]
    _stop: threading.Event
    scheme: str = "http"

    @classmethod
    def start(
        cls,
        registry: CachingRegistry,
        collector: ArchiveCollector,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        rescan_interval: float = 60.0,
        web: WebConfig | None = None,
        limits: Limits | None = None,
    ) -> MetricsServer:
        """Bind (port 0 picks a free port), load the archive, and serve in daemon threads.

        Binding comes first: a port in use fails at once, not after loading a large archive,
        and scrapes that arrive during the load wait in the listen backlog instead of being
        refused. No thread starts before the load, which may fork worker processes.
        """
        web = web or WebConfig()
        httpd = HardenedServer((host, port), limits or Limits(), web.ssl_context)
        try:
            collector.update()
        except BaseException:
            httpd.server_close()
            raise
        httpd.set_app(create_app(registry, collector, auth=web.auth))
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
        scheme = "https" if web.ssl_context is not None else "http"
        return cls(str(bound_host), int(bound_port), httpd, (serving, rescanning), stop, scheme)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def wait(self) -> None:
        """Block until :meth:`stop` is called (from another thread or a signal handler)."""
        self._stop.wait()

    def stop(self) -> None:
        """Stop serving and rescanning, cut open connections, close the socket (idempotent)."""
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
