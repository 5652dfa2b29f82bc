"""What the report commands (``trends``, ``prioritize``) share: opening the archive index,
warning about invalid files, and writing a report file atomically."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Final, TextIO

from exporter.index.store import ArchiveIndex
from exporter.util.atomic import replace_atomically
from exporter.util.errors import CommandError
from exporter.util.paths import require_archive

__all__ = ["open_index", "warn_invalid", "write_text_atomic"]

_SHOWN_NAMES: Final = 5


def open_index(archive: Path, *, rescan: bool = False) -> ArchiveIndex:
    """The archive's index, brought up to date; CommandError (exit 2) when there is no archive.

    ``rescan`` stats every file, catching records rewritten in place (the seed's scripts do
    that; our writer never does).
    """
    index = ArchiveIndex(require_archive(archive))
    try:
        index.refresh(full=rescan)
    except OSError as exc:
        index.close()
        raise CommandError(f"cannot read archive {archive}: {exc.strerror or exc}") from exc
    return index


def warn_invalid(invalid: dict[str, str], stream: TextIO | None = None) -> None:
    """One warning line naming the invalid files that were skipped (the first few)."""
    if not invalid:
        return
    names = sorted(invalid)
    shown = ", ".join(names[:_SHOWN_NAMES])
    more = f" and {len(names) - _SHOWN_NAMES} more" if len(names) > _SHOWN_NAMES else ""
    print(
        f"batch-metrics: warning: skipped {len(names)} invalid record file(s): {shown}{more} "
        "(see 'batch-metrics validate')",
        file=stream or sys.stderr,
    )


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that readers see the old or the new file, never half."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_atomically(path, text)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from exc
