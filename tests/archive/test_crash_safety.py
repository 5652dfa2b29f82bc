"""Crash safety: SIGKILLed writers leave no torn file and lose no reported record; a batch whose
process dies mid-run is recorded as crashed by `recover` or by the next configure()."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from benchmarks.bench_crash import CampaignResult, check_archive, kill_campaign, temp_files
from exporter.archive.files import list_record_files, read_record, write_record
from exporter.archive.model import BatchRecord
from exporter.archive.recovery import (
    INFLIGHT_DIR,
    InflightMarker,
    ProcessIdentity,
    read_marker,
    recover,
    write_marker,
)
from exporter.cli.main import main
from exporter.sdk.configure import configure
from instrumentation import batch, item, stage

KILLS = 400
REPO = Path(__file__).resolve().parents[2]


def _tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_sigkilled_writers_leave_only_whole_records_and_lose_none(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    result = kill_campaign(archive, kills=KILLS, writers=2, seed=7)
    assert result.kills == KILLS
    assert len(result.reported) > KILLS  # writers got records out before being killed
    assert check_archive(archive, result, writers_started=KILLS) == []
    records = list_record_files(archive)
    assert all(not p.name.startswith(".") for p in records)
    leftovers = temp_files(archive)
    # Temp files of interrupted writes are no records and go once older than the limit.
    assert {p.name for p in records}.isdisjoint(p.name for p in leftovers)
    assert recover(archive, temp_max_age=timedelta(hours=1)) == []
    assert temp_files(archive) == leftovers
    actions = recover(archive, temp_max_age=timedelta(0))
    assert sorted(a.path for a in actions) == leftovers
    assert {a.kind for a in actions} <= {"temp-removed"}
    assert sorted(archive.iterdir()) == records


def test_the_archive_check_does_fail(tmp_path: Path) -> None:
    """The campaign's checker is not vacuous: torn, lost and foreign files are found."""
    archive = tmp_path / "archive"
    result = kill_campaign(archive, kills=2, writers=2, seed=3)
    run_id, (name, _) = next(iter(result.reported.items()))
    (archive / name).unlink()
    (archive / "batch-47-execute.json").write_text('{"batch_id": "47", "operat', encoding="utf-8")
    problems = check_archive(archive, CampaignResult(kills=2, reported=result.reported), 2)
    assert f"reported run {run_id} ({name}) is missing" in problems
    assert any(p.startswith("batch-47-execute.json: ") for p in problems)


# -- a batch whose process dies mid-run ---------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys, time
    from exporter.sdk.configure import configure
    from instrumentation import batch, item, record_tokens, stage

    archive, interval = sys.argv[1], float(sys.argv[2])
    t = configure(archive, set_global=False, otlp=False, checkpoint_interval=interval)
    with batch("crash-1", "execute", run_id="run-crash-1", total_items=5,
               tracer_provider=t.tracer_provider, meter_provider=t.meter_provider):
        print("started", flush=True)
        with stage(1, name="first"):
            for n in range(3):
                with item(f"PRP-{n}") as it:
                    record_tokens(input=1000, output=100, model="claude-haiku-4-5")
                    if n == 2:
                        it.set_outcome("failure", error_type="TestFailure", message="red")
        print("stage 1 done", flush=True)
        with stage(2), item("PRP-3"):
            time.sleep(600)  # SIGKILLed here
    """
)


def _run_child_until(archive: Path, line: str, interval: float) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(archive), str(interval)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    while (got := child.stdout.readline()) and got.strip() != line:
        pass
    assert got.strip() == line, "the child ended early"
    return child


def _kill(child: subprocess.Popen[str]) -> None:
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL
    assert child.stdout is not None
    child.stdout.close()


def test_killed_batch_is_recovered_by_the_cli_with_what_was_known(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / "archive"
    child = _run_child_until(archive, "stage 1 done", interval=0.0)
    (marker_file,) = (archive / INFLIGHT_DIR).iterdir()
    marker = read_marker(marker_file)
    assert marker.process.pid == child.pid
    assert marker.process.is_alive() is True
    # A live process's batch is not touched.
    assert main(["recover", "--archive", str(archive)]) == 0
    assert capsys.readouterr().out == "nothing to recover\n"
    _kill(child)
    assert marker.process.is_alive() is False
    assert list_record_files(archive) == []

    assert main(["recover", "--archive", str(archive)]) == 0
    path = archive / "batch-crash-1-execute.json"
    assert capsys.readouterr().out == (
        f"recovered: {path}: batch crash-1 execute run run-crash-1: status crashed, "
        "2/5 items succeeded\n"
    )
    record = read_record(path)
    m = record.metrics
    assert (record.status, record.run_id, record.source) == (
        "crashed",
        "run-crash-1",
        "instrumentation",
    )
    assert (m.total_items, m.success_count, m.failure_count, m.partial_count) == (5, 2, 1, 0)
    assert [(s.stage, s.items) for s in m.stage_durations or []] == [
        (1, ["PRP-0", "PRP-1", "PRP-2"])
    ]
    assert [(e.item_id, e.error_type, e.error_message) for e in m.errors or []] == [
        ("PRP-2", "TestFailure", "red")
    ]
    usage = m.token_usage
    assert usage is not None and (usage.input_tokens, usage.output_tokens) == (3000, 300)
    assert record.notes == [
        "2 of 5 announced items reported no outcome",
        f"recovered: the process (pid {child.pid} on {marker.process.host}) ended without "
        f"finishing this batch; figures as of {marker.updated.isoformat(timespec='seconds')}",
    ]
    assert record.duration_seconds is not None and record.duration_seconds > 0
    assert not (archive / INFLIGHT_DIR).exists()

    # Idempotent: a second run finds nothing and changes nothing.
    before = _tree_hash(archive)
    assert main(["recover", "--archive", str(archive)]) == 0
    assert capsys.readouterr().out == "nothing to recover\n"
    assert _tree_hash(archive) == before


def test_killed_batch_is_recovered_by_the_next_configure(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    # Default checkpoint interval: killed before any later update, only the start marker exists.
    child = _run_child_until(archive, "started", interval=5.0)
    _kill(child)
    handle = configure(archive, set_global=False, otlp=False)
    handle.shutdown()
    record = read_record(archive / "batch-crash-1-execute.json")
    m = record.metrics
    assert (record.status, record.run_id) == ("crashed", "run-crash-1")
    assert (m.total_items, m.success_count, m.failure_count) == (5, 0, 0)


def _marker_record(run_id: str = "r1") -> BatchRecord:
    return BatchRecord.model_validate(
        {
            "batch_id": "47",
            "operation": "review",
            "timestamp": "2025-11-01T10:00:00Z",
            "duration_seconds": 12.5,
            "metrics": {"total_items": 4, "success_count": 1},
            "run_id": run_id,
            "status": "crashed",
        }
    )


def test_marker_whose_run_is_recorded_is_only_removed(tmp_path: Path) -> None:
    """Died between writing the record and removing the marker: no second record."""
    record = _marker_record().model_copy(update={"status": "completed"})
    written = write_record(tmp_path, record)
    write_marker(tmp_path, _marker_record(), durable=True)
    (action,) = recover(tmp_path)
    assert (action.kind, action.detail) == ("already-recorded", f"run r1 is {written.name}")
    assert list_record_files(tmp_path) == [written]
    assert read_record(written).status == "completed"
    assert not (tmp_path / INFLIGHT_DIR).exists()


def test_other_hosts_markers_wait_until_stale_and_pid_reuse_is_seen(tmp_path: Path) -> None:
    marker_dir = tmp_path / INFLIGHT_DIR
    path = write_marker(tmp_path, _marker_record("far"), durable=False)
    marker = read_marker(path)
    far = marker.model_copy(
        update={"process": ProcessIdentity(host="elsewhere", pid=1)}
    ).model_dump_json()
    path.write_text(far, encoding="utf-8")
    assert ProcessIdentity(host="elsewhere", pid=1).is_alive() is None
    assert recover(tmp_path) == []
    later = marker.updated + timedelta(hours=25)
    (action,) = recover(tmp_path, now=later)
    assert action.kind == "recovered"
    # This very process, but a different start time: the pid was reused, the writer is gone.
    me = ProcessIdentity.current()
    assert me.is_alive() is True
    assert me.model_copy(update={"start_ticks": (me.start_ticks or 0) + 1}).is_alive() is False
    assert me.model_copy(update={"boot_id": "another-boot"}).is_alive() is False
    assert not marker_dir.exists()


def test_unreadable_marker_is_reported_and_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker_dir = tmp_path / INFLIGHT_DIR
    marker_dir.mkdir()
    bad = marker_dir / "47.review.r1.inflight"
    bad.write_text("{not json", encoding="utf-8")
    assert main(["recover", "--archive", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"invalid: {bad}: not an in-flight marker: ")
    assert len(out.splitlines()) == 1
    assert bad.read_text(encoding="utf-8") == "{not json"


def test_final_record_kept_in_marker_when_the_archive_refuses_it(tmp_path: Path) -> None:
    """A finished batch whose record could not be written (disk full) is written by recover."""
    final = _marker_record("done").model_copy(update={"status": "partial"})
    write_marker(tmp_path, final, durable=True, complete=True)
    (action,) = recover(tmp_path)
    assert action.detail == "batch 47 review run done: final record, 1/4 items succeeded"
    assert read_record(tmp_path / "batch-47-review.json") == final


def test_recover_cli_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["recover", "--archive", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"batch-metrics: error: no archive at {tmp_path / 'missing'} (")
    assert err.count("\n") == 1
    with pytest.raises(SystemExit) as exit_info:
        main(["recover", "--archive", str(tmp_path), "--temp-age", "nan"])
    assert exit_info.value.code == 2
    assert "must be a finite number >= 0, not 'nan'" in capsys.readouterr().err


def test_dry_run_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_marker(tmp_path, _marker_record(), durable=True)
    dead = InflightMarker.model_validate_json(path.read_bytes()).model_copy(
        update={
            "process": ProcessIdentity(host="elsewhere", pid=1),
            "updated": datetime(2020, 1, 1, tzinfo=UTC),
        }
    )
    path.write_text(dead.model_dump_json(), encoding="utf-8")
    (tmp_path / ".tmp-abc.json").write_text("{", encoding="utf-8")
    old = time.time() - 3600
    os.utime(tmp_path / ".tmp-abc.json", (old, old))
    before = _tree_hash(tmp_path)
    assert main(["recover", "--archive", str(tmp_path), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[1] for line in lines] == [
        "recovered",
        "temp-removed",
    ]
    assert _tree_hash(tmp_path) == before


def test_marker_updates_are_rate_limited_not_per_item(tmp_path: Path) -> None:
    def successes_in_marker_after_items(interval: float) -> tuple[int | None, int | None]:
        archive = tmp_path / f"interval-{interval}"
        handle = configure(archive, set_global=False, otlp=False, checkpoint_interval=interval)
        with (
            batch(
                "rate",
                "generate",
                run_id="r",
                tracer_provider=handle.tracer_provider,
                meter_provider=handle.meter_provider,
            ),
            stage(1),
        ):
            for n in range(5):
                with item(f"PRP-{n}"):
                    pass
            (path,) = (archive / INFLIGHT_DIR).iterdir()
            marker = read_marker(path).record.metrics
        handle.shutdown()
        assert not (archive / INFLIGHT_DIR).exists()
        return marker.success_count, marker.total_items

    assert successes_in_marker_after_items(3600.0) == (0, 0)  # only the start marker
    assert successes_in_marker_after_items(0.0) == (5, 5)  # updated as items end
