"""The one atomic file writer: every file the project writes for others to read goes through it.

A new file is written under a temporary name in its destination's directory, flushed and
(with ``durable``) fsynced, then renamed over the destination, or hard-linked to it by a caller
that must not replace an existing file; then the directory is fsynced. Readers see the old file,
the new one, or none, never a torn one.

The temporary file is created with ``os.open(..., 0o666)``, so the kernel applies the user's
umask (and a directory's default ACL) exactly as for any tool's output: with the usual umask
022 a record or report is readable by the other users who need it (a container's exporter
running as another uid, a Prometheus reading backfill output). ``tempfile.mkstemp`` would make it
owner-only (0600) whatever the umask.

Standard library only: every part may import it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Final, TextIO

__all__ = [
    "atomic_open",
    "discard",
    "fsync_dir",
    "replace_atomically",
    "temp_path_for",
    "write_temp",
]

_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
_ATTEMPTS: Final = 100


def temp_path_for(path: Path) -> tuple[str, str]:
    """The default temporary name of a write to ``path``: ``.{name}.<random>.tmp``."""
    return f".{path.name}.", ".tmp"


def _create(directory: Path, prefix: str, suffix: str) -> tuple[int, Path]:
    for _ in range(_ATTEMPTS):
        candidate = directory / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            return os.open(candidate, _FLAGS, 0o666), candidate  # the umask applies
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {directory}")


def discard(path: Path) -> None:
    """Remove a temporary file; a file already gone is fine."""
    with contextlib.suppress(OSError):
        path.unlink()


def fsync_dir(directory: Path) -> None:
    """Make the directory's entries (a rename, a link) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_temp(
    directory: Path,
    content: str | bytes,
    *,
    prefix: str = ".tmp-",
    suffix: str = ".tmp",
    durable: bool = True,
) -> Path:
    """A complete temporary file in ``directory`` holding ``content`` (UTF-8 for text).

    For callers that place it themselves (a link that must not replace, say); they remove it
    with :func:`discard` when done. Raises OSError, leaving nothing behind.
    """
    data = content.encode("utf-8") if isinstance(content, str) else content
    fd, path = _create(directory, prefix, suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
    except BaseException:
        discard(path)
        raise
    return path


def replace_atomically(
    path: Path,
    content: str | bytes,
    *,
    durable: bool = True,
    prefix: str | None = None,
    suffix: str | None = None,
) -> None:
    """Put ``content`` at ``path``: readers see the old file or the new one, never a mix.

    With ``durable`` the file is fsynced before the rename and the directory after it, so the
    new content survives a power loss once this returns; without, it survives the death of this
    process. The parent directory must exist. Raises OSError.
    """
    default_prefix, default_suffix = temp_path_for(path)
    tmp = write_temp(
        path.parent,
        content,
        prefix=default_prefix if prefix is None else prefix,
        suffix=default_suffix if suffix is None else suffix,
        durable=durable,
    )
    try:
        tmp.replace(path)
    except BaseException:
        discard(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_open(
    path: Path, *, durable: bool = True, newline: str | None = None
) -> Iterator[TextIO]:
    """A text handle whose content replaces ``path`` when the block ends without an exception.

    For output written in pieces (streamed); on an exception the temporary file is removed and
    ``path`` is left as it was. Raises OSError.
    """
    directory = path.parent if str(path.parent) else Path()
    prefix, suffix = temp_path_for(path)
    fd, tmp = _create(directory, prefix, suffix)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        discard(tmp)
        raise
    if durable:
        fsync_dir(directory)
