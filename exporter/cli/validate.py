"""``batch-metrics validate``: check every record of an archive (or the files given).

A directory is checked file by file (its ``batch-*.json``, as the seed's scripts read them); a
file is checked alone. Each file gets one of three verdicts:

* **invalid** (stderr ``invalid: PATH: reason``): it cannot be read, is not JSON, is not valid
  for the seed's schema (and the model cannot read it either), or breaks a rule no reader can
  work around (a time stamp outside the years 1-9999 in UTC). Reports skip it.
* **valid, with notes** (stderr ``note: PATH: ...``, one line per note): every reader reads
  it, but something in it was not used: a field of another tool that shares a name with one
  of ours, a figure the model cannot hold (set aside, see :mod:`exporter.archive.lenient`), a
  part the seed's schema would refuse though the model reads it (the seed's own scripts write
  stages as strings), a file name that names another batch, a batch id that cannot name a file.
* **valid**: fully understood.

A summary goes to stdout. Exit status: 0 no invalid file (notes included), 1 some invalid,
2 a path does not exist.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from exporter.archive.files import (
    DEFAULT_ARCHIVE,
    InvalidRecordFile,
    list_record_files,
    read_bounded,
    read_record,
)
from exporter.archive.lenient import seed_problems
from exporter.archive.model import BatchRecord, InvalidBatchId, check_batch_id
from exporter.util.errors import CommandError

__all__ = ["Finding", "add_arguments", "check_paths", "run"]

EXIT_INVALID = 1
EXIT_MISSING = 2


@dataclass(frozen=True, slots=True)
class Finding:
    """The result for one file: ``reason`` is None when the file is a valid record; ``notes``
    say what a valid record holds that was not used (empty: fully understood)."""

    path: Path
    reason: str | None
    notes: tuple[str, ...] = ()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "examples:\n  batch-metrics validate\n"
        "  batch-metrics validate .ce/completed-batches/batch-47-execute.json --json"
    )
    parser.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        default=[DEFAULT_ARCHIVE],
        help=f"archive directories or record files (default: {DEFAULT_ARCHIVE})",
    )
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")


_SHOWN_ID: Final = 40


def _shown_id(batch_id: str) -> str:
    return repr(batch_id if len(batch_id) <= _SHOWN_ID else batch_id[: _SHOWN_ID - 3] + "...")


def _name_mismatch(path: Path, record: BatchRecord) -> str | None:
    base = f"batch-{record.batch_id}-{record.operation}"
    if path.name == f"{base}.json" or path.name.startswith(f"{base}.run-"):
        return None
    return (
        f"file name does not match its record (batch {_shown_id(record.batch_id)} "
        f"{record.operation}): read as the record says"
    )


def _notes(path: Path, record: BatchRecord) -> list[str]:
    notes = [f"{u.where}: not used: {u.reason}" for u in record.unused]
    try:
        check_batch_id(record.batch_id)
    except InvalidBatchId as exc:
        notes.append(f"{exc}: read as the batch's name, never used in a file name")
    mismatch = _name_mismatch(path, record)
    if mismatch is not None:
        notes.append(mismatch)
    if not record.unused:  # read by the model as written: where does the seed's schema differ?
        try:
            document = json.loads(read_bounded(path)[0])
        except (InvalidRecordFile, ValueError, RecursionError):
            document = {}  # changed since it was read: judged by the record alone
        if document:
            problems = seed_problems(document)
            if problems:
                more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                notes.append(f"not valid for the seed's schema, read anyway: {problems[0]}{more}")
    return [_one_line(note) for note in notes]


_NOTE_MAX: Final = 300


def _one_line(text: str) -> str:
    """A note as one bounded line: control characters (from another tool's names) escaped."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= _NOTE_MAX else text[: _NOTE_MAX - 3] + "..."


def _check_file(path: Path) -> Finding:
    try:
        record = read_record(path)
    except InvalidRecordFile as exc:
        return Finding(path, exc.reason)
    return Finding(path, None, tuple(_notes(path, record)))


def check_paths(paths: list[Path]) -> list[Finding]:
    """Findings for every record file under ``paths``; CommandError(exit 2) if one is missing."""
    for path in paths:
        try:
            path.lstat()
        except (OSError, ValueError) as exc:  # absent, or a name the OS cannot look up
            shown = str(path) if len(str(path)) <= 80 else f"{str(path)[:77]}..."
            if isinstance(exc, FileNotFoundError):
                message = f"{shown} does not exist"
            else:  # too long (OSError), a NUL byte in it (ValueError), ...
                why = getattr(exc, "strerror", None) or exc
                message = f"{shown!r} is not a usable path ({why})"
            raise CommandError(message, EXIT_MISSING) from exc
    findings: list[Finding] = []
    for path in paths:
        files = list_record_files(path) if path.is_dir() else [path]
        findings.extend(_check_file(f) for f in files)
    return findings


def run(args: argparse.Namespace) -> int:
    findings = check_paths(args.paths)
    invalid = [f for f in findings if f.reason is not None]
    noted = [f for f in findings if f.notes]
    if args.json:
        document = {
            "checked": len(findings),
            "valid": len(findings) - len(invalid),
            "invalid": [{"path": str(f.path), "reason": f.reason} for f in invalid],
            "notes": [{"path": str(f.path), "notes": list(f.notes)} for f in noted],
        }
        print(json.dumps(document, indent=2))
    else:
        for finding in findings:
            if finding.reason is not None:
                print(f"invalid: {finding.path}: {finding.reason}", file=sys.stderr)
            for note in finding.notes:
                print(f"note: {finding.path}: {note}", file=sys.stderr)
        with_notes = f" ({len(noted)} with notes)" if noted else ""
        print(
            f"checked {len(findings)} record file(s): "
            f"{len(findings) - len(invalid)} valid{with_notes}, {len(invalid)} invalid"
        )
    return EXIT_INVALID if invalid else 0
