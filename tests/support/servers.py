"""Real Prometheus, Pushgateway and Alertmanager processes on 127.0.0.1 for integration tests.

Each server runs from its Debian package's binary on a free loopback port, with its data in a
directory the caller owns, and is stopped (terminate, then kill) by whoever started it. Readiness
is polled with a deadline, never slept for. When a binary is missing the test is skipped, except
under ``CI=true``, where a missing server is a failure: CI installs them (see .ci/run).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

LOOPBACK = "127.0.0.1"

# Debian names first, upstream names second.
BINARIES: dict[str, tuple[str, ...]] = {
    "prometheus": ("prometheus",),
    "promtool": ("promtool",),
    "pushgateway": ("prometheus-pushgateway", "pushgateway"),
    "alertmanager": ("prometheus-alertmanager", "alertmanager"),
    "amtool": ("amtool",),
}


def require_binary(kind: str) -> str:
    """Path of a server binary; skip the test without it, fail under CI=true."""
    for name in BINARIES[kind]:
        found = shutil.which(name)
        if found:
            return found
    message = f"{kind} binary not found (tried {', '.join(BINARIES[kind])}); .ci/run installs it"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
    raise AssertionError("unreachable")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_until(
    condition: Callable[[], bool], *, timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> None:
    """Poll ``condition`` until it is true or ``timeout`` seconds pass (then fail the test)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what or condition}")


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET ``url``; returns (status, body) also for HTTP errors; raises OSError if unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _ready(url: str) -> bool:
    with contextlib.suppress(OSError):
        return http_get(url, timeout=1.0)[0] == 200
    return False


@dataclass
class Server:
    """A running server process; ``url`` is its base URL on loopback."""

    kind: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def start_server(
    kind: str,
    argv: Callable[[int], Sequence[str]],
    workdir: Path,
    *,
    ready_path: str = "/-/ready",
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
) -> Server:
    """Start ``argv(port)`` on a free port and wait until ``ready_path`` answers 200."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{kind}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(argv(port)), stdout=log, stderr=subprocess.STDOUT, cwd=workdir, env=env
        )
    server = Server(kind, f"http://{LOOPBACK}:{port}", process, log_path)

    def up() -> bool:
        if process.poll() is not None:
            pytest.fail(f"{kind} exited with {process.returncode}:\n{server.log()}")
        return _ready(server.url + ready_path)

    try:
        wait_until(up, timeout=timeout, what=f"{kind} on {server.url}")
    except BaseException:
        server.stop()
        raise
    return server


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    """Stop ``server`` when the block ends, whatever happens inside."""
    try:
        yield server
    finally:
        server.stop()


def start_prometheus(
    config: Path, workdir: Path, *, storage: Path | None = None, extra: Sequence[str] = ()
) -> Server:
    """Prometheus with ``config`` and its TSDB in ``storage`` (default: workdir/data)."""
    binary = require_binary("prometheus")
    data = storage or workdir / "data"
    return start_server(
        "prometheus",
        lambda port: [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address={LOOPBACK}:{port}",
            "--web.enable-lifecycle",
            *extra,
        ],
        workdir,
    )


def start_pushgateway(workdir: Path) -> Server:
    """A Pushgateway whose state lives in ``workdir``: Debian's package defaults
    ``--persistence.file`` to a system-wide file, which a test must neither write nor read."""
    binary = require_binary("pushgateway")
    return start_server(
        "pushgateway",
        lambda port: [
            binary,
            f"--web.listen-address={LOOPBACK}:{port}",
            f"--persistence.file={workdir / 'pushgateway.db'}",
        ],
        workdir,
    )


def start_alertmanager(config: Path, workdir: Path) -> Server:
    binary = require_binary("alertmanager")
    cluster_off = "--cluster.listen-address="  # no gossip port: loopback HTTP only
    return start_server(
        "alertmanager",
        lambda port: [
            binary,
            f"--config.file={config}",
            f"--storage.path={workdir / 'am-data'}",
            f"--web.listen-address={LOOPBACK}:{port}",
            cluster_off,
        ],
        workdir,
    )


def prom_query(server: Server, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    """Instant query; returns the result vector (fails the test on an API error)."""
    params = {"query": expr}
    if at is not None:
        params["time"] = f"{at:.3f}"
    status, body = http_get(f"{server.url}/api/v1/query?{urllib.parse.urlencode(params)}")
    payload = json.loads(body)
    if status != 200 or payload.get("status") != "success":
        pytest.fail(f"query {expr!r} failed ({status}): {payload.get('error', body[:200])}")
    result: list[dict[str, Any]] = payload["data"]["result"]
    return result
