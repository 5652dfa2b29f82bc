"""The monitoring stack's files (docker-compose.yml and the configs it mounts), wherever the
package runs from.

There is one source: the repository's ``docker-compose.yml``, ``.env.example``, ``prometheus/``,
``alertmanager/``, ``grafana/``, ``otel-collector/`` and ``tempo/``. The wheel carries copies of
them as package data under ``exporter/stack/files/`` (hatch ``force-include`` in
pyproject.toml; a test proves the copies identical), so a ``pip install`` of the wheel alone
can run ``batch-metrics stack`` in any directory and write the compose stack's files there.
From a clone (an editable install) the repository's own files are used.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Final

from exporter.util.atomic import replace_atomically

__all__ = [
    "COMPOSE_FILES",
    "CONFIG_DIRS",
    "config_source",
    "iter_stack_files",
    "looks_like_config_dir",
    "packaged_root",
    "write_stack_files",
]

# Paths relative to the repository root (and to the packaged copy's root).
CONFIG_DIRS: Final = ("prometheus", "alertmanager", "grafana", "otel-collector", "tempo")
COMPOSE_FILES: Final = ("docker-compose.yml", ".env.example")
_PACKAGED: Final = Path(__file__).resolve().parent / "files"
_REPOSITORY: Final = Path(__file__).resolve().parents[2]


def looks_like_config_dir(directory: Path) -> bool:
    """Whether ``directory`` holds the stack's configuration (a clone, or written files)."""
    return (directory / "prometheus" / "prometheus.yml").is_file() and (
        directory / "alertmanager" / "alertmanager.yml"
    ).is_file()


def packaged_root() -> Path | None:
    """Where this installation's copy of the stack files is: the wheel's package data, else
    the repository an editable install runs from; None when neither is there."""
    for candidate in (_PACKAGED, _REPOSITORY):
        if looks_like_config_dir(candidate):
            return candidate
    return None


def config_source(requested: Path | None, cwd: Path | None = None) -> Path | None:
    """The directory ``stack`` reads prometheus/ and alertmanager/ from.

    ``requested`` (``--config-dir``) if given; else the current directory when it holds the
    configuration (a clone, or files written by ``stack --init``, maybe edited); else the
    installation's own copy.
    """
    if requested is not None:
        return requested
    here = cwd or Path.cwd()
    return here if looks_like_config_dir(here) else packaged_root()


def iter_stack_files(root: Path) -> Iterator[Path]:
    """Every stack file under ``root``, relative to it, sorted."""
    found: list[Path] = [Path(name) for name in COMPOSE_FILES if (root / name).is_file()]
    for name in CONFIG_DIRS:
        found.extend(
            p.relative_to(root)
            for p in (root / name).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        )
    yield from sorted(found)


def write_stack_files(target: Path, *, overwrite: bool = False) -> tuple[list[Path], list[Path]]:
    """Copy the installation's stack files into ``target``; return (written, kept).

    A file that already exists with other content is kept unless ``overwrite`` (it may hold
    the user's edits); an identical one counts as written. Raises FileNotFoundError when this
    installation has no stack files, OSError when one cannot be written.
    """
    source = packaged_root()
    if source is None:
        raise FileNotFoundError("this installation has no stack files (exporter/stack/files)")
    written: list[Path] = []
    kept: list[Path] = []
    for relative in iter_stack_files(source):
        content = (source / relative).read_bytes()
        destination = target / relative
        if destination.exists() and destination.read_bytes() != content and not overwrite:
            kept.append(relative)
            continue
        if source.resolve() != target.resolve():
            destination.parent.mkdir(parents=True, exist_ok=True)
            replace_atomically(destination, content)
        written.append(relative)
    return written, kept
