"""Generated files kept under a directory: which are stale, and writing those that changed.

``rendered`` maps a path relative to the directory to the text the code generates for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from exporter.util.atomic import replace_atomically

__all__ = ["stale", "write"]


def stale(root: Path, rendered: Mapping[str, str]) -> list[str]:
    """The paths of ``rendered`` that are missing under ``root`` or differ from their text."""
    out: list[str] = []
    for relative, content in rendered.items():
        try:
            current: str | None = (root / relative).read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        if current != content:
            out.append(relative)
    return out


def write(root: Path, rendered: Mapping[str, str]) -> list[str]:
    """Write (atomically) the paths of ``rendered`` that are stale; returns them."""
    changed = stale(root, rendered)
    for relative in changed:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_atomically(path, rendered[relative])
    return changed
