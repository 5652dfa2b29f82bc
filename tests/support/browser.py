"""Headless Chromium (Debian's ``chromium``) rendering a local page, with nothing let out.

Every request the browser makes goes to a recording proxy on 127.0.0.1 that answers none, so
no traffic leaves the machine, and a test sees what a page (or the browser) tried to fetch.
Console messages (script errors, Content-Security-Policy violations) are read from Chromium's
log on stderr. Chromium itself calls a few of its own service hosts on start-up whatever the
flags (component updates, sign-in); those are listed in :data:`BROWSER_SERVICE_HOSTS` and told
apart, so only what the page asked for counts.

Also a tool: ``python -m tests.support.browser PAGE.html OUT.png [WIDTH HEIGHT]`` takes the
screenshot the README shows.

Without the binary a test is skipped, except under ``CI=true``, where it fails (.ci/run
installs ``chromium``), as :func:`tests.support.servers.require_binary` does for Prometheus.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

BINARIES = ("chromium", "chromium-browser")
# Hosts Chromium calls by itself (Debian's build ships API keys), never on a page's behalf.
BROWSER_SERVICE_HOSTS = frozenset(
    {"update.googleapis.com", "accounts.google.com", "clients2.google.com"}
)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--no-pings",
    "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,Translate,MediaRouter",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
)
_CONSOLE = re.compile(r":INFO:CONSOLE[^\]]*\] (.*)$")
_REQUEST_HOST = re.compile(r"^(?:CONNECT (?P<connect>[^:\s]+)|\w+ \w+://(?P<url>[^/:\s]+))")


def find_chromium() -> str | None:
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    """The browser's path; skip without it, fail under CI=true."""
    import pytest

    found = find_chromium()
    if found:
        return found
    message = f"chromium not found (tried {', '.join(BINARIES)}); .ci/run installs it"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
    raise AssertionError("unreachable")


@dataclass
class _Proxy:
    """Accepts connections on loopback, records each request line, answers nothing."""

    sock: socket.socket
    requests: list[str] = field(default_factory=list)
    _thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://{host}:{port}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            with conn:
                conn.settimeout(5)
                with contextlib.suppress(OSError):
                    line = conn.recv(8192).split(b"\r\n", 1)[0]
                    # A connection closed before a byte was sent requests nothing: Chromium
                    # opens spare connections to its proxy ahead of need (a CI run saw one).
                    if line:
                        self.requests.append(line.decode("latin-1"))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        # shutdown wakes the blocked accept(); close alone may not on Linux
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        if self._thread is not None:
            self._thread.join(timeout=10)


@contextlib.contextmanager
def _proxy() -> Iterator[_Proxy]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    proxy = _Proxy(sock)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


@dataclass(frozen=True)
class Render:
    """What one headless run saw."""

    console: list[str]  # console messages: script errors, CSP violations, console.* calls
    requests: list[str]  # request lines that reached the proxy (the page's and the browser's)
    dom: str  # the serialized DOM after load (empty for a screenshot)
    returncode: int

    @property
    def page_requests(self) -> list[str]:
        """Requests not made by the browser for itself."""
        return [r for r in self.requests if _host(r) not in BROWSER_SERVICE_HOSTS]


def _host(request_line: str) -> str | None:
    match = _REQUEST_HOST.match(request_line)
    if not match:
        return None
    return match["connect"] or match["url"]


def render(
    page: Path,
    *,
    binary: str | None = None,
    screenshot: Path | None = None,
    size: tuple[int, int] = (1320, 1500),
    timeout: float = 120,
) -> Render:
    """Open ``page`` (a local file) headless; dump its DOM, or save a PNG ``screenshot``."""
    binary = binary or find_chromium()
    if binary is None:
        raise FileNotFoundError("chromium")
    with tempfile.TemporaryDirectory(prefix="bm-chromium-") as profile, _proxy() as proxy:
        action = [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
        done = subprocess.run(
            [
                binary,
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--proxy-server={proxy.address}",
                "--proxy-bypass-list=<-loopback>",  # even loopback goes through the proxy
                f"--window-size={size[0]},{size[1]}",
                *action,
                page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    console = [m[1] for line in done.stderr.splitlines() if (m := _CONSOLE.search(line))]
    return Render(console, list(proxy.requests), "" if screenshot else done.stdout, done.returncode)


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 4):
        print(__doc__, file=sys.stderr)
        return 2
    size = (int(argv[2]), int(argv[3])) if len(argv) == 4 else (1320, 1500)
    result = render(Path(argv[0]), screenshot=Path(argv[1]).resolve(), size=size)
    for message in result.console:
        print(f"console: {message}", file=sys.stderr)
    for request in result.page_requests:
        print(f"request: {request}", file=sys.stderr)
    return 1 if result.returncode or result.console or result.page_requests else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
