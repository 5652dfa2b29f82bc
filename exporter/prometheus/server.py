"""The HTTP side of ``batch-metrics serve``: ``/metrics``, ``/health`` and a landing page.

:func:`create_app` builds a WSGI application over an injected registry (no global state):
``/metrics`` is prometheus_client's exposition app, so content negotiation (Prometheus text
0.0.4 or OpenMetrics 1.0 by ``Accept``), gzip and ``name[]`` filtering behave as in every
client_python exporter; ``/health`` answers 200 with a JSON status while the last archive scan
succeeded and 503 when it failed; ``/`` links to both. Only GET and HEAD on those three paths
are served (405 with ``Allow`` for other methods, 404 for other paths); with basic auth
configured every path needs credentials (401 with ``WWW-Authenticate``).

:class:`MetricsServer` runs that app on a hardened WSGI server and rescans the archive (stat
every file) in the background. The server is built for an untrusted network (docs/security.md):

* at most ``max_connections`` connections at once, served by a thread pool of that size; a
  connection beyond it is refused at once (503 on plain HTTP), so memory and threads are bounded;
* per connection, a deadline of ``timeout`` seconds for the TLS handshake, another for the whole
  request head (a client sending one byte a second is cut off, however steadily it sends), and
  another for writing the response to a client that does not read;
* optional TLS and basic auth from a web config file (:mod:`exporter.prometheus.webconfig`);
* ``X-Content-Type-Options: nosniff`` and a ``Server`` header without versions on every response.
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import CollectorRegistry, make_wsgi_app

from exporter.index.store import ArchiveIndex
from exporter.prometheus.collector import ArchiveCollector
from exporter.prometheus.live import HeartbeatCollector
from exporter.prometheus.webconfig import BasicAuth, WebConfig

__all__ = ["DEFAULT_PORT", "PATHS", "Limits", "MetricsServer", "build_registry", "create_app"]

_log = logging.getLogger(__name__)

# 9464 is the OTel Prometheus exporter's default; a long-running orchestrator using the
# in-process reader on the same host keeps it, so the archive exporter takes its own port.
DEFAULT_PORT: Final = 9477
PATHS: Final = ("/", "/metrics", "/health")
_METHODS: Final = ("GET", "HEAD")
_SERVER_NAME: Final = "batch-metrics"
_COMMON_HEADERS: Final = [("X-Content-Type-Options", "nosniff"), ("Server", _SERVER_NAME)]
_CHALLENGE: Final = ("WWW-Authenticate", f'Basic realm="{_SERVER_NAME}", charset="UTF-8"')
_BUSY: Final = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n"
    b"Connection: close\r\n\r\ntoo many connections\n"
)
_NOT_TLS: Final = (
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 48\r\n"
    b"Connection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
)
_TLS_HANDSHAKE: Final = 0x16  # first byte of every TLS connection (a handshake record)

_LANDING: Final = """<!doctype html>
<html><head><meta charset="utf-8"><title>batch-metrics exporter</title></head>
<body><h1>batch-metrics exporter</h1>
<p>Prometheus metrics of LLM-agent batch operations, derived from the archive
<code>{archive}</code>.</p>
<ul><li><a href="/metrics">/metrics</a>: the metrics (Prometheus text or OpenMetrics)</li>
<li><a href="/health">/health</a>: the exporter's own status (JSON)</li></ul>
</body></html>
"""


@dataclass(frozen=True)
class Limits:
    """Bounds on what clients may cost: connections at once, and seconds per phase."""

    max_connections: int = 32
    timeout: float = 10.0  # each of: TLS handshake, request head, response write

    def __post_init__(self) -> None:
        if self.max_connections < 1 or not self.timeout > 0:
            raise ValueError("max_connections must be >= 1 and timeout positive")


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
    registry: CollectorRegistry, collector: ArchiveCollector, *, auth: BasicAuth | None = None
) -> WSGIApplication:
    """The exporter's WSGI app over ``registry``; ``collector`` reports the scan status."""
    metrics_app = make_wsgi_app(registry)
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
            # prometheus_client answers GET only; a HEAD gets the GET's headers (app() below
            # drops the body).
            as_get = {**environ, "REQUEST_METHOD": "GET"}
            return cast(Iterable[bytes], metrics_app(as_get, start_response))
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


class _Deadline:
    """Seconds left of a phase; sets the socket timeout to them before each blocking call."""

    def __init__(self, sock: socket.socket, seconds: float, what: str) -> None:
        self._sock = sock
        self._seconds = seconds
        self._what = what
        self._end: float | None = None

    def arm(self) -> None:
        if self._end is None:
            self._end = time.monotonic() + self._seconds
        left = self._end - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{self._what} took longer than {self._seconds:g} s")
        self._sock.settimeout(left)


class _DeadlineReader(io.RawIOBase):
    """The request stream: every read counts against one deadline for the whole head."""

    def __init__(self, sock: socket.socket, deadline: _Deadline) -> None:
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._deadline.arm()
        return self._sock.recv_into(buffer)


class _DeadlineWriter(io.BufferedIOBase):
    """The response stream: all writes together must finish within one deadline."""

    def __init__(self, sock: socket.socket, deadline: _Deadline) -> None:
        self._sock = sock
        self._deadline = deadline

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._deadline.arm()
        self._sock.sendall(data)
        return len(data)


class _Handler(WSGIRequestHandler):
    """One request per connection, under deadlines, without version banners or noisy logs."""

    server: _HardenedServer

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # replaced below; closing releases its hold on the socket
        timeout = self.server.limits.timeout
        self.rfile = io.BufferedReader(
            _DeadlineReader(self.connection, _Deadline(self.connection, timeout, "request head"))
        )
        self.wfile = _DeadlineWriter(
            self.connection, _Deadline(self.connection, timeout, "response")
        )

    def handle(self) -> None:
        try:
            super().handle()
        except OSError as exc:  # timeouts, resets, TLS errors: the client's problem, not ours
            _log.debug("connection from %s dropped: %s", self.address_string(), exc)
            self.close_connection = True

    def version_string(self) -> str:
        return _SERVER_NAME

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s - %s", self.address_string(), format % args)


class _HardenedServer(WSGIServer):
    """A WSGI server with a bounded pool of connection threads and optional TLS."""

    request_queue_size = 128  # listen backlog (socketserver's default is 5)

    def __init__(
        self,
        address: tuple[str, int],
        limits: Limits,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        # Set up before binding: a failed bind calls server_close().
        self.limits = limits
        self.ssl_context = ssl_context
        self._pool = ThreadPoolExecutor(limits.max_connections, thread_name_prefix="metrics-conn")
        self._slots = threading.BoundedSemaphore(limits.max_connections)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self._refused = 0
        self.address_family = _family(address[0])
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._refuse(request)
            return
        with self._open_lock:
            self._open.add(request)
        self._pool.submit(self._serve, request, client_address)

    def _refuse(self, request: socket.socket) -> None:
        self._refused += 1
        _log.log(
            logging.WARNING if self._refused == 1 else logging.DEBUG,
            "refusing a connection: all %d connection slots are busy",
            self.limits.max_connections,
        )
        if self.ssl_context is None:
            try:
                request.setblocking(False)
                request.send(_BUSY)
            except OSError:
                pass
        self.shutdown_request(request)

    def _serve(self, request: socket.socket, client_address: Any) -> None:
        connection: socket.socket | None = request
        try:
            if self.ssl_context is not None:
                connection = self._handshake(request)
                with self._open_lock:  # the TLS socket now owns the file descriptor
                    self._open.discard(request)
                    if connection is not None:
                        self._open.add(connection)
            if connection is not None:
                self.finish_request(connection, client_address)
        except OSError as exc:
            _log.debug("connection from %s dropped: %s", client_address[0], exc)
        except Exception:  # a bug in the app: log it, keep serving
            _log.exception("error serving a request from %s", client_address[0])
        finally:
            with self._open_lock:
                self._open.discard(request)
                if connection is not None:
                    self._open.discard(connection)
            self.shutdown_request(connection if connection is not None else request)
            self._slots.release()

    def _handshake(self, request: socket.socket) -> ssl.SSLSocket | None:
        assert self.ssl_context is not None
        request.settimeout(self.limits.timeout)  # one deadline for the whole handshake
        first = request.recv(1, socket.MSG_PEEK)
        if first and first[0] != _TLS_HANDSHAKE:
            request.sendall(_NOT_TLS)
            return None
        return self.ssl_context.wrap_socket(request, server_side=True)

    def close_connections(self) -> None:
        """Cut every open connection, so that stopping does not wait for slow clients."""
        with self._open_lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def server_close(self) -> None:
        super().server_close()
        self.close_connections()
        self._pool.shutdown(wait=True, cancel_futures=True)


def _family(host: str) -> socket.AddressFamily:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return socket.AF_INET  # let bind() report the bad address
    return infos[0][0] if infos else socket.AF_INET


@dataclass
class MetricsServer:
    """A running exporter: HTTP(S) on ``host:port`` plus the background rescan thread."""

    host: str
    port: int
    _httpd: _HardenedServer
    _threads: tuple[threading.Thread, ...]
    _stop: threading.Event
    scheme: str = "http"

    @classmethod
    def start(
        cls,
        registry: CollectorRegistry,
        collector: ArchiveCollector,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        rescan_interval: float = 60.0,
        web: WebConfig | None = None,
        limits: Limits | None = None,
    ) -> MetricsServer:
        """Load the archive, bind (port 0 picks a free port), and serve in daemon threads."""
        web = web or WebConfig()
        collector.update()
        httpd = _HardenedServer((host, port), limits or Limits(), web.ssl_context)
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
