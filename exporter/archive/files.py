"""The archive: one JSON file per operation run in ``.ce/completed-batches/``.

File names follow the seed: the first run of a batch and operation is
``batch-{batch_id}-{operation}.json``; a later, different run of the same pair gets
``batch-{batch_id}-{operation}.run-{run_id}.json``, so the seed's ``batch-*.json`` glob still
finds every run and no run's record replaces another's. Writing the same run again replaces its
own file (idempotent).

Every write is atomic (exporter/util/atomic.py): the record goes to a temporary file in the
same directory, readable per the user's umask, is fsynced, and is then linked (first run, which
must not replace a concurrent writer's file) or renamed (same run) into place, and the directory
is fsynced. A reader therefore sees a complete old file, a complete new file, or none, never a
torn one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeAlias

from pydantic import ValidationError

from exporter.archive.model import (
    BatchRecord,
    check_batch_id,
    describe_validation_error,
    dump_record,
    parse_record,
)
from exporter.util.atomic import fsync_dir, write_temp
from exporter.util.atomic import replace_atomically as _replace
from exporter.util.errors import UserError
from exporter.util.paths import DEFAULT_ARCHIVE, RECORD_GLOB, is_record_name

StrPath: TypeAlias = str | os.PathLike[str]  # read paths: a str spares pathlib's cost per file

__all__ = [
    "DEFAULT_ARCHIVE",
    "MAX_RECORD_BYTES",
    "TEMP_PREFIX",
    "ArchiveError",
    "InvalidRecordFile",
    "LoadedRecord",
    "find_runs",
    "iter_archive",
    "list_record_files",
    "parse_record_bytes",
    "read_bounded",
    "read_record",
    "read_record_stat",
    "record_path",
    "replace_atomically",
    "write_record",
]

# Temporary files of an atomic write; a writer killed mid-write leaves one behind, which no
# reader mistakes for a record (the name does not match RECORD_GLOB) and `recover` removes.
TEMP_PREFIX: Final = ".tmp-"
# A record is a few kB; anything far larger is not one of ours and is refused unread.
MAX_RECORD_BYTES: Final = 10 * 1024 * 1024


class ArchiveError(UserError):
    """The archive could not be read or written (one clear line in ``str()``)."""


class InvalidRecordFile(ArchiveError):
    """A file in the archive is not a valid record; ``reason`` says why in one line."""

    def __init__(self, path: StrPath, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LoadedRecord:
    path: Path
    record: BatchRecord


def _base_name(record: BatchRecord) -> str:
    return f"batch-{check_batch_id(record.batch_id)}-{record.operation}"


def record_path(archive: Path, record: BatchRecord, *, first_run: bool = True) -> Path:
    """The file name a record gets: the seed's name for a first run, a run-suffixed one after."""
    base = _base_name(record)
    if first_run:
        return archive / f"{base}.json"
    if record.run_id is None:
        raise ArchiveError("a record without run_id can only be stored as the first run")
    return archive / f"{base}.run-{record.run_id}.json"


def _describe_error(exc: ValidationError) -> str:
    return describe_validation_error(exc, root="record")


def read_record(path: Path) -> BatchRecord:
    """Read and validate one record file; raise InvalidRecordFile with a one-line reason."""
    return read_record_stat(path)[0]


def read_record_stat(path: StrPath) -> tuple[BatchRecord, os.stat_result]:
    """Like :func:`read_record`, also returning the stat of exactly the file that was read.

    Symbolic links are refused (``O_NOFOLLOW``): a link could point outside the archive.
    """
    data, st = read_bounded(path)
    return parse_record_bytes(path, data), st


def read_bounded(path: StrPath, limit: int = MAX_RECORD_BYTES) -> tuple[bytes, os.stat_result]:
    """The bytes of one regular file of at most ``limit`` bytes, and its stat.

    Refuses, with InvalidRecordFile and a one-line reason, a symbolic link (``O_NOFOLLOW``: it
    could point outside the archive), anything but a regular file (a FIFO would block), and a
    file larger than ``limit``, which is judged by its size before a byte of it is read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidRecordFile(path, "is a symbolic link (refused)") from exc
        raise InvalidRecordFile(path, f"cannot read: {exc.strerror or exc}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidRecordFile(path, "is not a regular file")
        if st.st_size > limit:
            raise InvalidRecordFile(path, f"larger than {_size(limit)}")
        data = _read_at_most(fd, limit + 1, expected=st.st_size)
    except OSError as exc:
        raise InvalidRecordFile(path, f"cannot read: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if len(data) > limit:  # grew while being read
        raise InvalidRecordFile(path, f"larger than {_size(limit)}")
    return data, st


def _read_at_most(fd: int, most: int, *, expected: int) -> bytes:
    """Up to ``most`` bytes of ``fd``, to its end; ``expected`` (the size fstat gave) sizes the
    first read, so a record costs one read, not a buffer of ``most`` bytes (a file object's
    ``read(most)`` allocates that much every time).

    Asked for one byte more than fstat gave, a regular file that returns exactly its size
    has ended: no second read. Fewer bytes (a short read) or more (it grew) read on to the end.
    """
    want = min(expected + 1, most)
    first = os.read(fd, want)
    if len(first) == expected < want:
        return first
    parts = [first]
    size = len(first)
    while first and size < most:
        want = min(most - size, 1 << 20)
        first = os.read(fd, want)
        parts.append(first)
        size += len(first)
    return b"".join(parts)


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MiB" if limit >= 1024 * 1024 else f"{limit} bytes"


def parse_record_bytes(path: StrPath, data: bytes) -> BatchRecord:
    """The record in ``data``, the bytes of the file ``path`` (which errors name)."""
    if not data.strip():
        raise InvalidRecordFile(path, "empty file")
    try:
        return parse_record(data)
    except ValidationError as exc:
        if exc.errors()[0]["type"] == "json_invalid":
            raise InvalidRecordFile(path, f"malformed JSON: {exc.errors()[0]['msg']}") from exc
        raise InvalidRecordFile(path, f"wrong schema: {_describe_error(exc)}") from exc
    except (RecursionError, ValueError) as exc:
        raise InvalidRecordFile(path, f"malformed JSON: {type(exc).__name__}") from exc


def list_record_files(archive: Path) -> list[Path]:
    """Every ``batch-*.json`` file directly in the archive (sorted by name)."""
    try:
        return sorted(p for p in archive.glob(RECORD_GLOB) if is_record_name(p.name))
    except OSError as exc:
        raise ArchiveError(f"cannot list archive {archive}: {exc.strerror or exc}") from exc


def iter_archive(archive: Path) -> Iterator[LoadedRecord | InvalidRecordFile]:
    """Yield each file's record, or the error that makes it invalid; never raises per file."""
    for path in list_record_files(archive):
        try:
            yield LoadedRecord(path, read_record(path))
        except InvalidRecordFile as exc:
            yield exc


def find_runs(archive: Path, batch_id: str, operation: str) -> list[LoadedRecord]:
    """Valid records of one batch and operation, first run first."""
    base = f"batch-{check_batch_id(batch_id)}-{operation}"
    found: list[LoadedRecord] = []
    for path in sorted(archive.glob(f"{base}*.json")):
        if path.name != f"{base}.json" and not path.name.startswith(f"{base}.run-"):
            continue
        with contextlib.suppress(InvalidRecordFile):
            record = read_record(path)
            if record.batch_id == batch_id and record.operation == operation:
                found.append(LoadedRecord(path, record))
    return found


def _write_temp(directory: Path, content: str, *, durable: bool = True) -> Path:
    return write_temp(directory, content, prefix=TEMP_PREFIX, suffix=".json", durable=durable)


def replace_atomically(path: Path, content: str, *, durable: bool = True) -> None:
    """Put ``content`` at ``path`` so that readers see the old file or the new one, never a mix.

    :func:`exporter.util.atomic.replace_atomically` with this archive's temporary names (which
    ``recover`` tidies). With ``durable`` the file is fsynced before the rename and the
    directory after it; without, it survives the death of this process but maybe not a power
    loss. Raises OSError.
    """
    _replace(path, content, durable=durable, prefix=TEMP_PREFIX, suffix=".json")


def _same_run(path: Path, record: BatchRecord) -> bool:
    try:
        existing = read_record(path)
    except InvalidRecordFile:
        return False
    return existing.run_id is not None and existing.run_id == record.run_id


def write_record(archive: Path, record: BatchRecord) -> Path:
    """Write ``record`` atomically into ``archive`` and return its path.

    A first run takes the seed's name, claimed with a hard link so that two concurrent first
    runs cannot replace each other; a different run of the same batch and operation takes a
    run-suffixed name; the same run (equal ``run_id``) replaces its own file. Raises
    InvalidBatchId (before touching the disk) for a batch id that is unsafe in a file name,
    and ArchiveError when the file cannot be written.
    """
    first = record_path(archive, record, first_run=True)  # checks the batch id before any I/O
    try:
        archive.mkdir(parents=True, exist_ok=True)
        content = dump_record(record)
        tmp = _write_temp(archive, content)
        try:
            target = _place(archive, record, first, tmp)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        fsync_dir(archive)
    except OSError as exc:
        raise ArchiveError(f"cannot write record to {archive}: {exc.strerror or exc}") from exc
    return target


def _place(archive: Path, record: BatchRecord, first: Path, tmp: Path) -> Path:
    if record.run_id is not None:
        own = record_path(archive, record, first_run=False)
        if own.exists():
            tmp.replace(own)
            return own
    if first.exists() and _same_run(first, record):
        tmp.replace(first)
        return first
    try:
        os.link(tmp, first)
        return first
    except FileExistsError:
        pass
    except OSError as exc:  # filesystems without hard links: fall back to a checked rename
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV):
            raise
        if not first.exists():
            tmp.replace(first)
            return first
    if _same_run(first, record):
        tmp.replace(first)
        return first
    if record.run_id is None:
        raise ArchiveError(f"{first.name} already holds another run and this record has no run_id")
    own = record_path(archive, record, first_run=False)
    tmp.replace(own)
    return own
