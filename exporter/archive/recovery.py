"""Crash recovery: in-flight markers of running batches, and what ``recover`` does with them.

A batch whose process dies (SIGKILL, OOM killer, power loss) never ends its span, so the span
processor never writes its record. So that such a run is recorded rather than silently lost,
the processor keeps one small **in-flight marker** per running batch in the archive's hidden
``.inflight/`` directory: written (and fsynced) when the batch starts, rewritten with what is
known so far (items finished, tokens, stages; at most every few seconds, when a stage or item
ends), and removed once the batch's record is in the archive. A marker holds the provisional
record (status ``crashed``, ending at the marker's last update) and the identity of the
process that wrote it.

:func:`recover` turns the markers of processes that are gone into records:

* a marker whose run is already in the archive (the process died between writing the record
  and removing the marker) is just removed;
* a marker whose process is gone (on this host: no such pid, or the pid now belongs to another
  process, or the machine rebooted since) becomes its provisional record, written with the
  normal atomic writer, and is then removed;
* a marker of another host is recovered only once it has not been updated for ``stale_after``
  (there is no way to ask another host whether the process lives);
* a marker of a live process is left alone; an unreadable marker is reported, never deleted.

Recovery is idempotent: the record takes the marker's ``run_id``, and writing the same run
again replaces its own file with the same content. It also removes temporary files
(``.tmp-*``) of atomic writes that were interrupted, once they are older than
``temp_max_age`` (a live writer's temp file exists for milliseconds).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from exporter.archive.files import (
    TEMP_PREFIX,
    ArchiveError,
    InvalidRecordFile,
    find_runs,
    read_bounded,
    replace_atomically,
    write_record,
)
from exporter.archive.model import BatchRecord, check_batch_id, describe_validation_error

__all__ = [
    "DEFAULT_STALE_AFTER",
    "DEFAULT_TEMP_MAX_AGE",
    "INFLIGHT_DIR",
    "InflightMarker",
    "ProcessIdentity",
    "RecoveryAction",
    "marker_path",
    "read_marker",
    "recover",
    "remove_marker",
    "write_marker",
]

logger: Final = logging.getLogger("exporter")

INFLIGHT_DIR: Final = ".inflight"
MARKER_SUFFIX: Final = ".inflight"
MAX_MARKER_BYTES: Final = 1024 * 1024  # a marker is a provisional record: a few kB
DEFAULT_STALE_AFTER: Final = timedelta(hours=24)
DEFAULT_TEMP_MAX_AGE: Final = timedelta(minutes=15)

ActionKind = Literal["recovered", "already-recorded", "running", "invalid", "temp-removed"]


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (Linux), to tell pid reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
        # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


class ProcessIdentity(BaseModel):
    """Which process wrote a marker, precise enough to tell that it is gone."""

    model_config = ConfigDict(frozen=True)

    host: str = Field(max_length=256)
    pid: int = Field(gt=0)
    boot_id: str | None = Field(default=None, max_length=64)
    start_ticks: int | None = None

    @classmethod
    def current(cls) -> ProcessIdentity:
        """This process (cheap after the first call in a process)."""
        return _current_identity(os.getpid())

    def is_alive(self) -> bool | None:
        """True or False for a process of this host; None when it runs on another host."""
        here = ProcessIdentity.current()
        if self.host != here.host:
            return None
        if self.boot_id and here.boot_id and self.boot_id != here.boot_id:
            return False  # the machine rebooted since
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # it exists, owned by someone else
        if self.start_ticks is not None:
            ticks = _start_ticks(self.pid)
            if ticks is not None and ticks != self.start_ticks:
                return False  # the pid was reused by a later process
        return True


@cache
def _current_identity(pid: int) -> ProcessIdentity:
    # Keyed by pid so that a forked child does not report its parent's identity.
    return ProcessIdentity(
        host=socket.gethostname(), pid=pid, boot_id=_boot_id(), start_ticks=_start_ticks(pid)
    )


class InflightMarker(BaseModel):
    """What is known of a running batch; ``record`` is what recovery would write."""

    version: Literal[1] = 1
    process: ProcessIdentity
    updated: datetime
    record: BatchRecord
    complete: bool = Field(
        default=False,
        description="the batch ended but its record could not be written; record is final",
    )


@dataclass(frozen=True, slots=True)
class RecoveryAction:
    """One thing :func:`recover` did (or, with ``dry_run``, would do)."""

    kind: ActionKind
    path: Path
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.path}: {self.detail}"


def inflight_dir(archive: Path) -> Path:
    return archive / INFLIGHT_DIR


def marker_path(archive: Path, record: BatchRecord) -> Path:
    """Where the marker of ``record``'s run lives (batch id checked, run id required)."""
    if record.run_id is None:
        raise ArchiveError("an in-flight marker needs a run_id")
    name = f"{check_batch_id(record.batch_id)}.{record.operation}.{record.run_id}{MARKER_SUFFIX}"
    return inflight_dir(archive) / name


def write_marker(
    archive: Path,
    record: BatchRecord,
    *,
    durable: bool,
    complete: bool = False,
    updated: datetime | None = None,
) -> Path:
    """Write (or replace) the marker of ``record``'s run atomically; raise ArchiveError.

    ``durable`` also fsyncs it: worth it once per batch (the first marker), not for updates,
    which survive the death of the process without it.
    """
    path = marker_path(archive, record)
    marker = InflightMarker(
        process=ProcessIdentity.current(),
        updated=updated or datetime.now(UTC),
        record=record,
        complete=complete,
    )
    content = marker.model_dump_json(exclude_none=True)
    for attempt in range(3):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            replace_atomically(path, content, durable=durable)
            break
        except FileNotFoundError:  # another process removed the empty directory just now
            if attempt == 2:
                raise ArchiveError(f"cannot write in-flight marker in {archive}") from None
        except OSError as exc:
            with contextlib.suppress(OSError):  # leave no empty directory behind
                path.parent.rmdir()
            raise ArchiveError(
                f"cannot write in-flight marker in {archive}: {exc.strerror or exc}"
            ) from exc
    return path


def remove_marker(path: Path) -> None:
    """Remove a marker once its run is recorded, and its directory once empty.

    No error if the marker is gone already; ArchiveError if it cannot be removed.
    """
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise ArchiveError(f"cannot remove in-flight marker {path}: {exc.strerror}") from exc
    with contextlib.suppress(OSError):  # not empty: other batches are running
        path.parent.rmdir()


def read_marker(path: Path) -> InflightMarker:
    """Read one marker; InvalidRecordFile with a one-line reason when it is not one."""
    data, _ = read_bounded(path, MAX_MARKER_BYTES)
    try:
        return InflightMarker.model_validate_json(data)
    except ValidationError as exc:
        reason = f"not an in-flight marker: {describe_validation_error(exc)}"
        raise InvalidRecordFile(path, reason) from exc


def _crash_note(marker: InflightMarker) -> str:
    proc = marker.process
    return (
        f"recovered: the process (pid {proc.pid} on {proc.host}) ended without finishing this "
        f"batch; figures as of {marker.updated.isoformat(timespec='seconds')}"
    )


def _recovered_record(marker: InflightMarker) -> BatchRecord:
    if marker.complete:
        return marker.record
    notes = [*(marker.record.notes or []), _crash_note(marker)]
    return marker.record.model_copy(update={"status": "crashed", "notes": notes})


def _already_recorded(archive: Path, record: BatchRecord) -> Path | None:
    for loaded in find_runs(archive, record.batch_id, record.operation):
        if loaded.record.run_id == record.run_id:
            return loaded.path
    return None


def _recover_marker(
    archive: Path, path: Path, now: datetime, stale_after: timedelta, dry_run: bool
) -> RecoveryAction | None:
    try:
        marker = read_marker(path)
    except InvalidRecordFile as exc:
        return RecoveryAction("invalid", path, exc.reason)
    record = marker.record
    existing = _already_recorded(archive, record)
    if existing is not None:
        if not dry_run:
            remove_marker(path)
        return RecoveryAction("already-recorded", path, f"run {record.run_id} is {existing.name}")
    alive = None if marker.complete else marker.process.is_alive()
    if alive is None and not marker.complete and now - marker.updated < stale_after:
        return None  # another host's process, recently active: cannot tell, leave it
    if alive:
        return None
    recovered = _recovered_record(marker)
    target = path
    if not dry_run:
        target = write_record(archive, recovered)
        remove_marker(path)
    what = "final record" if marker.complete else f"status {recovered.status}"
    return RecoveryAction(
        "recovered",
        target,
        f"batch {record.batch_id} {record.operation} run {record.run_id}: {what}, "
        f"{recovered.metrics.success_count or 0}/{recovered.metrics.total_items or 0} items "
        "succeeded",
    )


def _temp_files(directory: Path) -> list[Path]:
    try:
        return sorted(directory.glob(f"{TEMP_PREFIX}*"))
    except OSError:
        return []


def _remove_old_temp_files(directory: Path, max_age: timedelta, dry_run: bool) -> list[Path]:
    removed: list[Path] = []
    cutoff = time.time() - max_age.total_seconds()
    for path in _temp_files(directory):
        with contextlib.suppress(FileNotFoundError):
            if path.lstat().st_mtime <= cutoff:
                if not dry_run:
                    path.unlink()
                removed.append(path)
    return removed


def recover(
    archive: Path,
    *,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
    temp_max_age: timedelta | None = DEFAULT_TEMP_MAX_AGE,
    dry_run: bool = False,
    now: datetime | None = None,
) -> list[RecoveryAction]:
    """Record the batches of dead processes and remove stale temp files; see the module doc.

    ``temp_max_age=None`` leaves temp files alone (what ``configure()`` does at start-up, so as
    not to list a large archive). Raises ArchiveError when the archive cannot be written.
    """
    now = now or datetime.now(UTC)
    actions: list[RecoveryAction] = []
    markers = inflight_dir(archive)
    try:
        paths = sorted(p for p in markers.glob(f"*{MARKER_SUFFIX}") if not p.name.startswith("."))
    except OSError as exc:
        raise ArchiveError(f"cannot list {markers}: {exc.strerror or exc}") from exc
    for path in paths:
        try:
            action = _recover_marker(archive, path, now, stale_after, dry_run)
        except OSError as exc:
            raise ArchiveError(f"cannot recover {path}: {exc.strerror or exc}") from exc
        if action is not None:
            actions.append(action)
    if temp_max_age is not None:
        for directory in (archive, markers):
            for path in _remove_old_temp_files(directory, temp_max_age, dry_run):
                actions.append(RecoveryAction("temp-removed", path, "interrupted write"))
    return actions
