"""The one atomic writer: files readable per the umask, nothing left behind on failure, and every
writer of the project (records, reports, backfill, rule file, Grafana files) goes through it."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.archive.files import write_record
from exporter.cli.main import main
from exporter.grafana import provisioning
from exporter.reports.render import write_text_atomic
from exporter.signals.thresholds import load_thresholds
from exporter.util.atomic import atomic_open, replace_atomically, write_temp
from tests.support.records import rec


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield int(request.param)
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_replace_follows_the_umask_and_leaves_no_temp(tmp_path: Path, umask: int) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    replace_atomically(target, "new")
    assert target.read_text() == "new"
    assert _mode(target) == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_write_temp_follows_the_umask(tmp_path: Path, umask: int) -> None:
    path = write_temp(tmp_path, b"x", prefix=".tmp-", suffix=".json")
    assert path.name.startswith(".tmp-") and path.name.endswith(".json")
    assert _mode(path) == 0o666 & ~umask


def test_atomic_open_keeps_the_old_file_when_the_block_fails(tmp_path: Path) -> None:
    target = tmp_path / "stream.om"
    target.write_text("complete old content\n")
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write("half of the new")
        raise RuntimeError("writer died")
    assert target.read_text() == "complete old content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["stream.om"]
    with atomic_open(target) as handle:
        handle.write("new\n")
    assert target.read_text() == "new\n"


def test_every_project_writer_follows_the_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    previous = os.umask(0o022)
    try:
        archive = tmp_path / "archive"
        record_file = write_record(archive, rec("47"))
        report = tmp_path / "report.md"
        write_text_atomic(report, "# report\n")
        provisioning.write(tmp_path / "graf", load_thresholds())
        backfill = tmp_path / "history.om"
        assert main(["backfill", "--archive", str(archive), "--output", str(backfill)]) == 0
        rules = tmp_path / "rules.yml"
        assert main(["rules", "--output", str(rules)]) == 0
        written = [record_file, report, backfill, rules, *(tmp_path / "graf").rglob("*.*")]
        assert {p.name: oct(_mode(p)) for p in written} == {p.name: "0o644" for p in written}
        leftovers = [p for p in tmp_path.rglob(".*") if p.is_file()]
        assert leftovers == []
    finally:
        os.umask(previous)
