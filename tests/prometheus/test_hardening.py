"""``serve`` on a hostile network: TLS, basic auth, methods and paths, slow clients, limits.

Everything runs over real sockets on 127.0.0.1: HTTPS with certificates made by the ``openssl``
CLI at test time, a slow client that keeps sending one byte at a time, and a real Prometheus
scraping the TLS + basic-auth endpoint.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest

from benchmarks.bench_load import load_generated
from exporter.archive.files import write_record
from exporter.archive.model import BatchRecord, ErrorEntry, Metrics
from exporter.cli.main import main
from exporter.index.store import ArchiveIndex
from exporter.prometheus.server import Limits, MetricsServer, build_registry
from exporter.prometheus.webconfig import BasicAuth, WebConfig, WebConfigError, load_web_config
from tests.support.records import T0, rec
from tests.support.servers import prom_query, running, start_prometheus, wait_until

USER, PASSWORD = "prometheus", "correct horse battery staple"
# Cost 4, the lowest bcrypt allows: the tests check logic, not bcrypt's slowness.
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
SECRET_MESSAGE = "token sk-live-0123456789 rejected by upstream"


@dataclass(frozen=True)
class Certs:
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _self_signed(directory: Path, name: str, subject_alt_name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN={name}",
            "-addext",
            f"subjectAltName={subject_alt_name}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is needed to make test certificates")
    directory = tmp_path_factory.mktemp("certs")
    server = _self_signed(directory, "server", "IP:127.0.0.1,DNS:localhost")
    client = _self_signed(directory, "client", "DNS:scraper")
    return Certs(*server, *client)


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def tls_config(directory: Path, certs: Certs, extra: str = "", users: bool = True) -> Path:
    text = (
        f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {certs.server_key}\n"
        f"{extra}"
    )
    if users:
        text += f"basic_auth_users:\n  {USER}: '{HASH}'\n"
    return write_config(directory / "web.yml", text)


@contextlib.contextmanager
def serving(
    tmp_path: Path, web: WebConfig | None = None, limits: Limits | None = None
) -> Iterator[MetricsServer]:
    archive = tmp_path / "archive"
    if not archive.exists():
        write_record(archive, rec("1"))
    index = ArchiveIndex(archive, db_path=tmp_path / "index.db")
    registry, collector = build_registry(index)
    server = MetricsServer.start(
        registry, collector, port=0, rescan_interval=3600, web=web, limits=limits
    )
    try:
        yield server
    finally:
        server.stop()
        index.close()


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def request(
    server: MetricsServer,
    path: str = "/metrics",
    *,
    method: str = "GET",
    auth: tuple[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> Reply:
    headers = {}
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    conn: http.client.HTTPConnection
    if context is not None:
        conn = http.client.HTTPSConnection(server.host, server.port, timeout=5, context=context)
    else:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        conn.request(method, path, headers=headers)
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        conn.close()


def client_context(certs: Certs, with_cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=certs.server_cert)
    if with_cert:
        context.load_cert_chain(certs.client_cert, certs.client_key)
    return context


# -- the web config file ---------------------------------------------------------------------


def test_empty_web_config_means_plain_http_without_auth(tmp_path: Path) -> None:
    assert load_web_config(write_config(tmp_path / "web.yml", "")) == WebConfig(None, None)


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path, certs: Certs) -> None:
    directory = tmp_path / "conf"
    directory.mkdir()
    shutil.copy(certs.server_cert, directory / "s.crt")
    shutil.copy(certs.server_key, directory / "s.key")
    path = write_config(
        directory / "web.yml", "tls_server_config:\n  cert_file: s.crt\n  key_file: s.key\n"
    )
    web = load_web_config(path)
    assert web.ssl_context is not None
    assert web.ssl_context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert web.ssl_context.verify_mode == ssl.CERT_NONE
    assert web.auth is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "basic_auth_users:\n  alice: hunter2\n",
            "basic_auth_users: the password of 'alice' is not a bcrypt hash (plain-text "
            "passwords are not accepted); hash it with: python -c",
        ),
        ("basic_auth_user:\n  alice: x\n", "basic_auth_user: Extra inputs are not permitted"),
        ("tls_server_config: [\n", "not valid YAML: "),
        ("- a list\n", "file: Input should be a valid dictionary"),
        (
            "tls_server_config:\n  cert_file: /nonexistent.crt\n  key_file: /nonexistent.key\n",
            "cannot load cert_file /nonexistent.crt with key_file /nonexistent.key: "
            "No such file or directory",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n"
            "  client_auth_type: RequireAndVerifyClientCert\n",
            "tls_server_config: client_auth_type RequireAndVerifyClientCert needs client_ca_file",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS11\n",
            "tls_server_config.min_version: Input should be 'TLS12' or 'TLS13'",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [x]\n",
            "tls_server_config.cipher_suites: Extra inputs are not permitted",
        ),
    ],
)
def test_bad_web_config_is_one_line_at_startup(
    tmp_path: Path, text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path / "web.yml", text)
    with pytest.raises(WebConfigError) as raised:
        load_web_config(path)
    assert str(raised.value).startswith(f"web config {path}: {message}")
    assert "\n" not in str(raised.value)
    archive = tmp_path / "archive"
    argv = ["serve", "--archive", str(archive), "--port", "0", "--web.config.file", str(path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"batch-metrics: error: {raised.value}\n"
    assert not archive.exists()  # nothing was started or created


def test_missing_web_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--web-config", str(tmp_path / "nope.yml"), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"batch-metrics: error: web config {tmp_path / 'nope.yml'}: cannot read: "
        "No such file or directory\n"
    )


def test_basic_auth_without_bcrypt_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "bcrypt", None)  # import bcrypt -> ImportError
    path = write_config(tmp_path / "web.yml", f"basic_auth_users:\n  {USER}: '{HASH}'\n")
    with pytest.raises(WebConfigError) as raised:
        load_web_config(path)
    assert str(raised.value) == (
        "basic_auth_users needs the bcrypt package: pip install 'batch-metrics[web]'"
    )


# -- basic auth ------------------------------------------------------------------------------


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_auth_checks_and_caches_only_successes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real_checkpw = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real_checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    now = [1000.0]
    auth = BasicAuth({USER: HASH}, cache_seconds=60, clock=lambda: now[0])
    assert auth.allows(basic(USER, PASSWORD)) is True
    assert auth.allows(basic(USER, PASSWORD)) is True  # cached: bcrypt not run again
    assert len(calls) == 1
    assert auth.allows(basic(USER, "wrong")) is False
    assert auth.allows(basic(USER, "wrong")) is False  # failures are never cached
    assert len(calls) == 3
    # An unknown user is still checked against a real hash (same cost), then refused.
    assert auth.allows(basic("mallory", PASSWORD)) is False
    assert calls[-1] == HASH.encode()
    assert len(calls) == 4
    now[0] += 61  # the cached success expired
    assert auth.allows(basic(USER, PASSWORD)) is True
    assert len(calls) == 5


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer abc",
        "Basic !!!not-base64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        basic(USER, PASSWORD + "x"),
        basic(USER.upper(), PASSWORD),
        basic(USER, "p" * 100),  # longer than bcrypt's 72 bytes: refused, not raised
    ],
)
def test_basic_auth_refuses(header: str | None) -> None:
    assert BasicAuth({USER: HASH}).allows(header) is False


def test_basic_auth_accepts_colons_in_passwords_and_lowercase_scheme() -> None:
    password = "a:b:c"
    auth = BasicAuth({"u": bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()})
    assert auth.allows(basic("u", password).replace("Basic", "basic")) is True


# -- HTTPS and basic auth, end to end --------------------------------------------------------


def test_https_with_basic_auth(tmp_path: Path, certs: Certs) -> None:
    web = load_web_config(tls_config(tmp_path, certs))
    with serving(tmp_path, web) as server:
        assert server.url.startswith("https://127.0.0.1:")
        context = client_context(certs)
        ok = request(server, auth=(USER, PASSWORD), context=context)
        assert ok.status == 200
        assert b'batch_operations_total{operation="execute",outcome="partial"} 1.0\n' in ok.body
        for path in ("/metrics", "/health", "/", "/nope"):
            absent = request(server, path, context=context)
            assert (absent.status, absent.body) == (401, b"unauthorized\n")
            assert absent.headers["WWW-Authenticate"] == (
                'Basic realm="batch-metrics", charset="UTF-8"'
            )
        assert request(server, auth=(USER, "wrong"), context=context).status == 401
        assert request(server, auth=("mallory", PASSWORD), context=context).status == 401
        # The certificate is checked by the client: one that does not trust it cannot connect.
        with pytest.raises(ssl.SSLCertVerificationError):
            request(server, auth=(USER, PASSWORD), context=ssl.create_default_context())


def test_plain_http_to_the_tls_port_fails(tmp_path: Path, certs: Certs) -> None:
    web = load_web_config(tls_config(tmp_path, certs, users=False))
    with serving(tmp_path, web) as server:
        reply = request(server)  # plain HTTP
        assert (reply.status, reply.body) == (
            400,
            b"Client sent an HTTP request to an HTTPS server.\n",
        )
        assert request(server, context=client_context(certs)).status == 200


def test_client_certificates_required(tmp_path: Path, certs: Certs) -> None:
    extra = (
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {certs.client_cert}\n"
        "  min_version: TLS13\n"
    )
    web = load_web_config(tls_config(tmp_path, certs, extra, users=False))
    assert web.ssl_context is not None
    assert web.ssl_context.verify_mode == ssl.CERT_REQUIRED
    with serving(tmp_path, web) as server:
        # TLS 1.3 sends the refusal after the client's handshake completes: the first read fails.
        with pytest.raises((ssl.SSLError, ConnectionError)):
            request(server, context=client_context(certs))
        reply = request(server, context=client_context(certs, with_cert=True))
        assert reply.status == 200


# -- methods, paths, headers -----------------------------------------------------------------


def test_only_get_and_head_on_known_paths(tmp_path: Path) -> None:
    with serving(tmp_path) as server:
        for method in ("POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH"):
            reply = request(server, "/metrics", method=method)
            assert (reply.status, reply.headers["Allow"]) == (405, "GET, HEAD"), method
        assert request(server, "/health", method="POST").status == 405
        assert request(server, "/nope", method="POST").status == 404
        assert request(server, "/metrics/../etc/passwd").status == 404
        get = request(server, "/metrics")
        head = request(server, "/metrics", method="HEAD")
        assert (head.status, head.body) == (200, b"")
        assert head.headers["Content-Type"] == get.headers["Content-Type"]
        for reply in (get, head, request(server, "/nope"), request(server, method="POST")):
            assert reply.headers["X-Content-Type-Options"] == "nosniff"
            assert reply.headers.get_all("Server") == ["batch-metrics"]


def test_error_messages_never_become_labels(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    record = BatchRecord(
        batch_id="9",
        operation="review",
        timestamp=T0,
        duration_seconds=12.0,
        metrics=Metrics(
            total_items=1,
            failure_count=1,
            errors=[
                ErrorEntry(item_id="PRP-9.1", error_type="Timeout", error_message=SECRET_MESSAGE)
            ],
        ),
        run_id="r9",
    )
    write_record(archive, record)
    with serving(tmp_path) as server:
        body = request(server).body.decode()
    assert 'batch_errors_total{error_type="Timeout",operation="review"} 1.0\n' in body
    assert "sk-live" not in body
    assert "PRP-9.1" not in body  # item ids are unbounded too
    assert 'batch_id="9"' not in body


# -- slow and greedy clients -----------------------------------------------------------------


def test_slow_client_is_cut_off_while_others_are_served(tmp_path: Path) -> None:
    timeout = 1.0
    with serving(tmp_path, limits=Limits(max_connections=4, timeout=timeout)) as server:
        slow = socket.create_connection((server.host, server.port), timeout=10)
        started = time.monotonic()
        cut_off_after: list[float] = []

        def drip() -> None:
            # Slowloris: a valid request head, one byte at a time, well within any per-read
            # timeout; only a deadline for the whole head stops it.
            payload = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 10_000
            try:
                for byte in payload:
                    slow.sendall(bytes([byte]))
                    time.sleep(0.05)
            except OSError:
                cut_off_after.append(time.monotonic() - started)

        dripper = threading.Thread(target=drip, daemon=True)
        dripper.start()
        while time.monotonic() - started < timeout / 2:  # others are served meanwhile
            assert request(server).status == 200
        try:
            received = slow.recv(1024)  # blocks until the server gives up on the slow client
        except ConnectionResetError:
            received = b""
        elapsed = time.monotonic() - started
        assert received == b""
        assert timeout <= elapsed < timeout + 2.0
        dripper.join(timeout=5)
        assert cut_off_after and cut_off_after[0] < timeout + 2.0
        slow.close()
        assert request(server).status == 200


def test_connections_beyond_the_limit_are_refused(tmp_path: Path) -> None:
    with serving(tmp_path, limits=Limits(max_connections=2, timeout=5.0)) as server:
        idle = [socket.create_connection((server.host, server.port)) for _ in range(2)]
        try:
            replies: list[bytes] = []

            def refused() -> bool:
                with socket.create_connection((server.host, server.port), timeout=5) as extra:
                    extra.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
                    replies.append(extra.recv(4096))
                return replies[-1].startswith(b"HTTP/1.0 503 ")

            wait_until(refused, timeout=5, what="a connection beyond the limit to be refused")
            assert replies[-1].endswith(b"\r\n\r\ntoo many connections\n")
        finally:
            for sock in idle:
                sock.close()

        def served_again() -> bool:
            with contextlib.suppress(OSError, http.client.HTTPException):
                return request(server).status == 200
            return False

        wait_until(served_again, timeout=5, what="a free slot once idle clients left")


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_stop_does_not_wait_for_idle_clients(tmp_path: Path, certs: Certs, tls: bool) -> None:
    web = load_web_config(tls_config(tmp_path, certs, users=False)) if tls else None
    context = client_context(certs) if tls else None
    with serving(tmp_path, web, limits=Limits(timeout=30.0)) as server:
        idle: socket.socket = socket.create_connection((server.host, server.port))
        if context is not None:  # handshake done, then silence
            idle = context.wrap_socket(idle, server_hostname="127.0.0.1")
        wait_until(lambda: request(server, context=context).status == 200, what="the server")
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 5.0
        idle.settimeout(5)
        with contextlib.suppress(ssl.SSLError, ConnectionResetError):
            assert idle.recv(1) == b""
        idle.close()


# -- a real Prometheus scrapes the TLS + basic-auth endpoint ---------------------------------


@pytest.mark.integration
def test_prometheus_scrapes_https_with_basic_auth(tmp_path: Path, certs: Certs) -> None:
    web = load_web_config(tls_config(tmp_path, certs))
    with serving(tmp_path, web) as server:
        config = write_config(
            tmp_path / "prometheus.yml",
            f"""global:
  scrape_interval: 1s
scrape_configs:
  - job_name: batch-metrics
    scheme: https
    tls_config:
      ca_file: {certs.server_cert}
    basic_auth:
      username: {USER}
      password: '{PASSWORD}'
    static_configs:
      - targets: ['{server.host}:{server.port}']
  - job_name: no-credentials
    scheme: https
    tls_config:
      ca_file: {certs.server_cert}
    static_configs:
      - targets: ['{server.host}:{server.port}']
""",
        )
        with running(start_prometheus(config, tmp_path / "prom")) as prometheus:
            query = 'batch_operations_total{job="batch-metrics",outcome="partial"} > 0'

            def scraped() -> bool:
                return bool(prom_query(prometheus, query)) and bool(
                    prom_query(prometheus, 'up{job="no-credentials"}')
                )

            wait_until(scraped, timeout=30, what="Prometheus to scrape over HTTPS")
            (sample,) = prom_query(prometheus, query)
            assert sample["metric"]["operation"] == "execute"
            assert sample["value"][1] == "1"
            (refused,) = prom_query(prometheus, 'up{job="no-credentials"}')
            assert refused["value"][1] == "0"  # 401 without credentials
            targets = prom_query(prometheus, 'up{job="batch-metrics"}')
            assert [t["value"][1] for t in targets] == ["1"]


def test_serve_process_over_https(tmp_path: Path, certs: Certs) -> None:
    archive = tmp_path / "archive"
    write_record(archive, rec("1"))
    config = tls_config(tmp_path, certs)
    env_index = {"BATCH_METRICS_INDEX": str(tmp_path / "ix")}
    argv = [sys.executable, "-m", "exporter.cli", "serve", "--archive", str(archive)]
    argv += ["--port", "0", "--web-config", str(config)]
    process = subprocess.Popen(
        argv,
        stderr=subprocess.PIPE,
        text=True,
        env={**_env(), **env_index},
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert line.startswith("serving 1 records of "), line
        url = urllib.parse.urlsplit(line.split(" on ")[1].split()[0])
        assert (url.scheme, url.hostname, url.path) == ("https", "127.0.0.1", "/metrics")
        conn = http.client.HTTPSConnection(
            "127.0.0.1", url.port or 0, timeout=5, context=client_context(certs)
        )
        conn.request("GET", "/metrics", headers={"Authorization": basic(USER, PASSWORD)})
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        process.terminate()
        process.wait(timeout=15)
    assert process.returncode == 0


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("BATCH_METRICS_")}


# -- load: a short version of benchmarks/bench_load.py ---------------------------------------


def test_short_load_has_no_errors_and_bounded_memory(tmp_path: Path) -> None:
    result = load_generated(tmp_path, 2000, clients=4, seconds=3.0, max_requests=5000)
    assert result.errors == 0
    assert result.requests > 0
    assert result.written > 0
    assert result.exposed == result.records + result.written  # new records are visible
    # Speed is never asserted; memory must not grow beyond noise over the run.
    assert result.rss_growth_kib < 16 * 1024, result.summary()
