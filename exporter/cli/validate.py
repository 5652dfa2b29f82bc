"""``batch-metrics validate``: check every record of an archive (or the files given).

A directory is checked file by file (its ``batch-*.json``, as the seed's scripts read them); a
file is checked alone. A file is invalid when it cannot be read, is not JSON, does not match
the record schema, or holds a record of another batch or operation than its name says. Each
invalid file is reported on stderr with its reason, one line each; a summary goes to stdout.
Exit status: 0 all valid, 1 some invalid, 2 a path does not exist.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from exporter.archive.files import (
    DEFAULT_ARCHIVE,
    InvalidRecordFile,
    list_record_files,
    read_record,
)
from exporter.archive.model import BatchRecord
from exporter.util.errors import CommandError

__all__ = ["Finding", "add_arguments", "check_paths", "run"]

EXIT_INVALID = 1
EXIT_MISSING = 2


@dataclass(frozen=True, slots=True)
class Finding:
    """The result for one file: ``reason`` is None when the file is a valid record."""

    path: Path
    reason: str | None


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


def _name_mismatch(path: Path, record: BatchRecord) -> str | None:
    base = f"batch-{record.batch_id}-{record.operation}"
    if path.name == f"{base}.json" or path.name.startswith(f"{base}.run-"):
        return None
    return f"file name does not match its record (batch {record.batch_id!r} {record.operation})"


def _check_file(path: Path) -> Finding:
    try:
        record = read_record(path)
    except InvalidRecordFile as exc:
        return Finding(path, exc.reason)
    return Finding(path, _name_mismatch(path, record))


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
    if args.json:
        document = {
            "checked": len(findings),
            "valid": len(findings) - len(invalid),
            "invalid": [{"path": str(f.path), "reason": f.reason} for f in invalid],
        }
        print(json.dumps(document, indent=2))
    else:
        for finding in invalid:
            print(f"invalid: {finding.path}: {finding.reason}", file=sys.stderr)
        print(
            f"checked {len(findings)} record file(s): "
            f"{len(findings) - len(invalid)} valid, {len(invalid)} invalid"
        )
    return EXIT_INVALID if invalid else 0
