"""The HTTP plumbing of ``batch-metrics serve``: a WSGI server built for an untrusted network.

The application (routes, ``/health``, the rescan thread) is :mod:`exporter.prometheus.server`;
this module only serves it (docs/security.md):

* at most ``max_connections`` connections at once, served by a thread pool of that size; a
  connection beyond it is refused at once (503 on plain HTTP), so memory and threads are bounded;
* per connection, a deadline of ``timeout`` seconds for the TLS handshake, another for the whole
  request head (a client sending one byte a second is cut off, however steadily it sends), and
  another for writing the response to a client that does not read;
* optional TLS (an ``ssl.SSLContext`` from :mod:`exporter.prometheus.webconfig`);
* a ``Server`` header without versions.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

__all__ = ["SERVER_NAME", "HardenedServer", "Limits", "address_family"]

_log = logging.getLogger("exporter.prometheus.server")

SERVER_NAME: Final = "batch-metrics"
_BUSY: Final = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n"
    b"Connection: close\r\n\r\ntoo many connections\n"
)
_NOT_TLS: Final = (
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 48\r\n"
    b"Connection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
)
_TLS_HANDSHAKE: Final = 0x16  # first byte of every TLS connection (a handshake record)


@dataclass(frozen=True)
class Limits:
    """Bounds on what clients may cost: connections at once, and seconds per phase."""

    max_connections: int = 32
    timeout: float = 10.0  # each of: TLS handshake, request head, response write

    def __post_init__(self) -> None:
        if self.max_connections < 1 or not self.timeout > 0:
            raise ValueError("max_connections must be >= 1 and timeout positive")


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

    server: HardenedServer

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
        return SERVER_NAME

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s - %s", self.address_string(), format % args)


class HardenedServer(WSGIServer):
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
        self.address_family = address_family(address[0])
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


def address_family(host: str) -> socket.AddressFamily:
    """IPv4 or IPv6, as ``host`` resolves for listening."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return socket.AF_INET  # let bind() report the bad address
    return infos[0][0] if infos else socket.AF_INET
