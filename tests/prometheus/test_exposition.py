"""The cached ``/metrics`` response: byte for byte what prometheus_client's own app answers.

The archive's families are rendered once per change; everything else at each scrape. The
reference is prometheus_client's ``make_wsgi_app`` over the same registry, so the same families,
in every format it negotiates, with and without gzip.
"""

from __future__ import annotations

import gzip
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from wsgiref.types import WSGIApplication

import pytest
from prometheus_client import make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporter.archive.files import write_record
from exporter.archive.model import ModelUsage, StageDuration
from exporter.index.store import ArchiveIndex
from exporter.prometheus.collector import ArchiveCollector
from exporter.prometheus.exposition import CachingRegistry, Parts, make_metrics_app
from exporter.prometheus.live import HeartbeatCollector
from exporter.prometheus.server import MetricsServer, build_registry
from tests.support.records import T0, rec

ACCEPTS = [
    None,
    "text/plain",
    "text/plain; version=0.0.4",
    "application/openmetrics-text; version=1.0.0",
    "application/openmetrics-text; version=1.0.0; charset=utf-8",
    "application/openmetrics-text",  # no version: OpenMetrics 1.0.0
    # what Prometheus 3 sends
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;"
    "escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
    "text/plain; version=1.0.0; escaping=underscores",
]


class Fixed:
    """A parted collector whose parts the test sets."""

    def __init__(self, stable: Sequence[Metric], current: Sequence[Metric]) -> None:
        self.version = 1
        self.stable = stable
        self.current = current

    def collect_parts(self) -> Parts:
        return Parts(self.version, self.stable, self.current)

    def collect(self) -> Iterator[Metric]:
        yield from self.stable
        yield from self.current

    def describe(self) -> Iterator[Metric]:
        return self.collect()


class Plain:
    """A collector without parts (rendered at every scrape)."""

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("plain_gauge", "A plain collector's gauge.", value=7.5)

    def describe(self) -> Iterator[Metric]:
        return self.collect()


def archive_families(tmp_path: Path) -> list[Metric]:
    """Real archive families: several operations, models, stages, errors, new label values."""
    archive = tmp_path / "archive"
    model = ModelUsage(model='odd "model"\\name', input_tokens=10, output_tokens=2, cost_usd=0.5)
    write_record(archive, rec("1", models=[model], errors=["TimeoutError"]))
    write_record(
        archive,
        rec(
            "2",
            "review",
            status="completed",
            success=5,
            failure=0,
            start=datetime(2026, 3, 3, tzinfo=UTC),
            stages=[StageDuration(stage=1, duration_seconds=61.5)],
        ),
    )
    with ArchiveIndex(archive, tmp_path / "index.sqlite") as index:
        return list(ArchiveCollector(index).collect_parts().stable)


Answer = tuple[str, list[tuple[str, str]], bytes]  # status, headers, body


def call(app: WSGIApplication, accept: str | None, encoding: str | None, query: str = "") -> Answer:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "QUERY_STRING": query}
    if accept is not None:
        environ["HTTP_ACCEPT"] = accept
    if encoding is not None:
        environ["HTTP_ACCEPT_ENCODING"] = encoding
    answered: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: object = None
    ) -> Callable[[bytes], object]:
        answered.append((status, headers))
        return lambda data: None

    body = b"".join(app(environ, start_response))
    ((status, headers),) = answered
    return status, headers, body


@pytest.fixture
def registry(tmp_path: Path) -> CachingRegistry:
    registry = CachingRegistry()
    current = [
        GaugeMetricFamily("batch_metrics_exporter_records", "Records.", value=2),
        CounterMetricFamily("batch_metrics_exporter_scan_errors", "Errors.", value=0),
    ]
    registry.register(Fixed(archive_families(tmp_path), current))
    registry.register(Plain())
    return registry


@pytest.mark.parametrize("accept", ACCEPTS)
@pytest.mark.parametrize("encoding", [None, "gzip", "deflate, gzip;q=1.0, *;q=0.5", "br"])
def test_byte_for_byte_what_prometheus_client_answers(
    registry: CachingRegistry,
    accept: str | None,
    encoding: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(time, "time", lambda: 1_767_225_600.0)  # gzip writes the time
    ours, reference = make_metrics_app(registry), make_wsgi_app(registry)
    for _ in range(2):  # rendered, then from the cache
        assert call(ours, accept, encoding) == call(reference, accept, encoding)


def test_a_version_prometheus_client_cannot_compare_gets_the_default_format(
    registry: CachingRegistry,
) -> None:
    default = call(make_metrics_app(registry), None, None)
    for accept in ("application/openmetrics-text; version=abc", "text/plain; version=x.y"):
        with pytest.raises(TypeError):  # prometheus_client's own app fails
            call(make_wsgi_app(registry), accept, None)
        assert call(make_metrics_app(registry), accept, None) == default


def test_each_format_ends_once_with_its_trailer(registry: CachingRegistry) -> None:
    openmetrics = call(make_metrics_app(registry), "application/openmetrics-text", "gzip")
    text = gzip.decompress(openmetrics[2]).decode()
    assert text.count("# EOF") == 1 and text.endswith("plain_gauge 7.5\n# EOF\n")
    plain = call(make_metrics_app(registry), None, None)[2].decode()
    assert "# EOF" not in plain and plain.endswith("plain_gauge 7.5\n")


def test_the_stable_part_is_rendered_once_per_version(registry: CachingRegistry) -> None:
    app = make_metrics_app(registry)
    fixed = next(c for c in registry._ordered if isinstance(c, Fixed))
    before = call(app, None, None)[2]
    fixed.stable = [GaugeMetricFamily("changed", "Not rendered until the version changes.", 1)]
    assert call(app, None, None)[2] == before  # the same version: the cached bytes
    fixed.version += 1
    after = call(app, None, None)[2]
    assert after.startswith(b"# HELP changed ") and after != before
    assert call(app, None, None) == call(make_wsgi_app(registry), None, None)


def test_name_filter_is_prometheus_clients(registry: CachingRegistry) -> None:
    query = "name[]=plain_gauge&name[]=batch_metrics_exporter_records"
    ours = call(make_metrics_app(registry), None, "gzip", query)
    assert gzip.decompress(ours[2]) == gzip.decompress(
        call(make_wsgi_app(registry), None, "gzip", query)[2]
    )
    assert gzip.decompress(ours[2]).decode().count("# TYPE") == 2


def test_serve_filters_by_name(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    write_record(archive, rec("1"))
    with ArchiveIndex(archive, tmp_path / "index.sqlite") as index:
        registry, collector = build_registry(index, tmp_path / "orchestration")
        server = MetricsServer.start(registry, collector, port=0, rescan_interval=3600)
        try:
            query = "?name[]=batch_operations_total&name[]=batch_metrics_exporter_records"
            with urllib.request.urlopen(server.url + "/metrics" + query, timeout=10) as response:
                text = response.read().decode()
        finally:
            server.stop()
    types = [line for line in text.splitlines() if line.startswith("# TYPE")]
    assert types == [
        "# TYPE batch_operations_total counter",
        "# TYPE batch_metrics_exporter_records gauge",
    ]
    assert 'batch_operations_total{operation="execute",outcome="partial"} 1.0' in text


def test_a_new_record_shows_at_the_next_scrape_in_every_format(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    write_record(archive, rec("1"))
    index = ArchiveIndex(archive, tmp_path / "index.sqlite")
    registry, collector = build_registry(index)
    registry.register(HeartbeatCollector(tmp_path / "orchestration", abandon_after=3600.0))
    server = MetricsServer.start(registry, collector, port=0, rescan_interval=3600)
    line = 'batch_operations_total{{operation="execute",outcome="partial"}} {}.0\n'
    try:
        for n in (1, 2):
            for accept in (None, "application/openmetrics-text; version=1.0.0"):
                for encoding in (None, "gzip"):
                    headers = {"Accept": accept or "*/*", "Accept-Encoding": encoding or ""}
                    request = urllib.request.Request(server.url + "/metrics", headers=headers)
                    with urllib.request.urlopen(request, timeout=10) as response:
                        body = response.read()
                    if encoding:
                        body = gzip.decompress(body)
                    assert line.format(n) in body.decode(), (n, accept, encoding)
            write_record(archive, rec("2", start=T0.replace(hour=10)))
    finally:
        server.stop()
        index.close()
