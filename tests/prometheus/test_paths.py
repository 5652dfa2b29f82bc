"""Every delivery path exposes the same names, labels and buckets as ``serve``.

The in-process OTel reader is fed by a real instrumented batch; the archive record that same
batch writes is served by the archive collector, so both must show the same series. The
Pushgateway path is checked against a real Pushgateway.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.archive.files import write_record
from exporter.index.store import ArchiveIndex
from exporter.prometheus.collector import ArchiveCollector
from exporter.prometheus.inprocess import prometheus_reader
from exporter.prometheus.push import ScanFailedError, push_archive
from exporter.prometheus.series import FAMILIES
from exporter.sdk.configure import configure
from instrumentation import batch, item, record_tokens, stage
from tests.support.records import rec
from tests.support.servers import http_get, running, start_pushgateway

CONTRACT = {f.name for f in FAMILIES}

SeriesKeys = set[tuple[str, tuple[tuple[str, str], ...]]]


def _normal(label: str, value: str) -> tuple[str, str]:
    # The Pushgateway re-exposes le="600.0" as le="600" (Go's formatting); Prometheus 3 normalizes
    # both to "600.0" on ingestion. Compare bucket bounds as numbers.
    return (label, repr(float(value))) if label == "le" else (label, value)


def _never_counted(family: Any) -> set[tuple[tuple[str, str], ...]]:
    """Label sets of a family's series that no record added to (``serve`` shows them at 0)."""
    return {
        tuple(sorted(s.labels.items()))
        for s in family.samples
        if s.value == 0 and (s.name.endswith("_count") or s.name.endswith("_total"))
    }


def contract_series(text: str, *, counted_only: bool = False) -> dict[str, SeriesKeys]:
    """Per contract family: its samples' names and labels (without job/instance).

    ``counted_only`` leaves out the zero-initialised series no record added to, which only the
    archive paths expose (the in-process OTel reader creates a series at its first record).
    """
    found: dict[str, SeriesKeys] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in CONTRACT:
            continue
        zero = _never_counted(family) if counted_only else set()
        found[family.name] = {
            (
                s.name,
                tuple(
                    sorted(
                        _normal(k, v) for k, v in s.labels.items() if k not in {"job", "instance"}
                    )
                ),
            )
            for s in family.samples
            if tuple(sorted((k, v) for k, v in s.labels.items() if k != "le")) not in zero
        }
    return found


def archive_series(archive: Path, db: Path, *, counted_only: bool = False) -> dict[str, SeriesKeys]:
    with ArchiveIndex(archive, db_path=db) as index:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ArchiveCollector(index))
        return contract_series(generate_latest(registry).decode(), counted_only=counted_only)


def families_with_samples(series: dict[str, SeriesKeys]) -> set[str]:
    return {name for name, samples in series.items() if samples}


def test_in_process_reader_matches_the_archive_exporter(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    registry = CollectorRegistry(auto_describe=False)
    telemetry = configure(
        archive, metric_readers=[prometheus_reader(registry)], set_global=False, otlp=False
    )
    providers: dict[str, Any] = {
        "tracer_provider": telemetry.tracer_provider,
        "meter_provider": telemetry.meter_provider,
    }
    try:
        with batch("47", "execute", total_items=2, **providers), stage(1):
            with item("PRP-47.1.1"):
                record_tokens(input=1200, output=300, model="claude-sonnet-4-5")
            with pytest.raises(TimeoutError), item("PRP-47.1.2"):
                raise TimeoutError("subagent timed out")
        with batch("48", "review", **providers), stage(1), item("PRP-48.1.1"):
            pass
        running_text = generate_latest(registry).decode()
    finally:
        telemetry.shutdown()
    in_process = contract_series(running_text)
    served = archive_series(archive, tmp_path / "index.db", counted_only=True)
    assert families_with_samples(served) == CONTRACT
    # every contract family the batch produced, with exactly the same series (names + labels)
    assert families_with_samples(in_process) == CONTRACT
    for name in CONTRACT:
        assert in_process[name] == served[name], name
    running_families = {f.name for f in text_string_to_metric_families(running_text)}
    assert {"batch_operations_running", "batch_items_running"} <= running_families
    le = {
        dict(labels)["le"]
        for sample, labels in served["batch_operation_duration_seconds"]
        if "le" in dict(labels)
    }
    assert "600.0" in le
    assert "28800.0" in le


def gauge_values(
    text: str, names: Iterable[str]
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    wanted = set(names)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name in wanted
    }


@pytest.mark.integration
def test_pushgateway_delivers_the_same_series(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    write_record(archive, rec("1", errors=["TimeoutError"]))
    write_record(
        archive, rec("2", "review", status="completed", success=5, failure=0, efficiency=1.5)
    )
    with running(start_pushgateway(tmp_path / "pushgateway")) as gateway:
        status = push_archive(
            gateway.url,
            archive,
            grouping_key={"instance": "ci"},
            index=ArchiveIndex(archive, db_path=tmp_path / "i.db"),
        )
        assert (status.ok, status.records) == (True, 2)
        code, body = http_get(gateway.url + "/metrics")
        assert code == 200
        pushed_text = body.decode()
    pushed = contract_series(pushed_text)
    served = archive_series(archive, tmp_path / "index.db")
    no_usage_or_stages = {"batch_tokens", "batch_cost_usd", "batch_stage_duration_seconds"}
    assert families_with_samples(served) == CONTRACT - no_usage_or_stages
    for name in CONTRACT:
        assert pushed.get(name, set()) == served.get(name, set()), name
    values = gauge_values(pushed_text, ["batch_operations_total"])
    key = (
        "batch_operations_total",
        (
            ("instance", "ci"),
            ("job", "batch-metrics"),
            ("operation", "review"),
            ("outcome", "success"),
        ),
    )
    assert values[key] == 1.0


@pytest.mark.integration
def test_push_to_unreachable_gateway_raises_oserror(tmp_path: Path) -> None:
    from tests.support.servers import free_port

    archive = tmp_path / "archive"
    write_record(archive, rec("1"))
    with pytest.raises(OSError):
        push_archive(
            f"http://127.0.0.1:{free_port()}",
            archive,
            timeout=2,
            index=ArchiveIndex(archive, db_path=tmp_path / "i.db"),
        )


@pytest.mark.integration
def test_a_failed_scan_pushes_nothing_and_the_group_keeps_its_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "archive"
    write_record(archive, rec("1"))
    with running(start_pushgateway(tmp_path / "pushgateway")) as gateway:
        key = {"instance": "ci"}
        push_archive(
            gateway.url, archive, grouping_key=key, index=ArchiveIndex(archive, tmp_path / "i.db")
        )
        before = http_get(gateway.url + "/metrics")[1].decode()
        broken = ArchiveIndex(archive, db_path=tmp_path / "broken.db")

        def unreadable(**kw: object) -> None:
            raise PermissionError("archive unreadable")

        monkeypatch.setattr(broken, "refresh", unreadable)
        with pytest.raises(ScanFailedError, match="archive unreadable"):
            push_archive(gateway.url, archive, grouping_key=key, index=broken)
        after = http_get(gateway.url + "/metrics")[1].decode()
    runs = gauge_values(after, ["batch_operations_total"])
    assert runs == gauge_values(before, ["batch_operations_total"])
    labels = (("instance", "ci"), ("job", "batch-metrics"))
    assert (
        runs[
            ("batch_operations_total", (*labels, ("operation", "execute"), ("outcome", "partial")))
        ]
        == 1.0
    )
