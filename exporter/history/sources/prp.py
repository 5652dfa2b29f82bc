"""PRP front matter: ``status``, ``stage`` and ``batch_id`` of each work item.

PRPs live in ``PRPs/feature-requests/`` and ``PRPs/executed/``; their front matter is the YAML
between a first line ``---`` and the next ``---``. It is parsed with ``yaml.safe_load`` after
two guards: only the first :data:`MAX_FRONT_MATTER_BYTES` are read, and YAML anchors/aliases
(never needed in front matter, the tool of "billion laughs" bombs) are refused. A file that
fails is skipped with one warning; it never stops the analysis.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from exporter.archive.model import checked_stage
from exporter.history.sources.ids import belongs_to_batch, prp_id_of

__all__ = ["MAX_FRONT_MATTER_BYTES", "PRP_DIRS", "Prp", "find_batch_prps", "read_front_matter"]

PRP_DIRS: Final = (Path("PRPs/feature-requests"), Path("PRPs/executed"))
MAX_FRONT_MATTER_BYTES: Final = 64 * 1024


class FrontMatterError(ValueError):
    """The file has no usable front matter (one line)."""


@dataclass(frozen=True, slots=True)
class Prp:
    """One work item as its PRP file describes it."""

    path: Path
    item_id: str  # "PRP-47.1.2"
    status: str | None
    stage: int | None
    executed_dir: bool  # the file is in PRPs/executed/


def read_front_matter(path: Path) -> dict[str, Any]:
    """The front matter mapping of a PRP file; FrontMatterError when it has none or is bad."""
    try:
        with path.open("rb") as handle:
            head = handle.read(MAX_FRONT_MATTER_BYTES + 1)
    except OSError as exc:
        raise FrontMatterError(f"cannot read: {exc.strerror or exc}") from exc
    text = head.decode("utf-8", errors="replace")
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        raise FrontMatterError("no front matter (first line is not '---')")
    try:
        end = next(i for i, line in enumerate(lines[1:], start=1) if line.strip() == "---")
    except StopIteration:
        raise FrontMatterError(
            f"front matter not closed within {MAX_FRONT_MATTER_BYTES // 1024} KiB"
        ) from None
    block = "\n".join(lines[1:end])
    try:
        if any(isinstance(t, yaml.AliasToken | yaml.AnchorToken) for t in yaml.scan(block)):
            raise FrontMatterError("front matter uses YAML anchors or aliases (refused)")
        data = yaml.safe_load(block)
    except yaml.YAMLError as exc:
        raise FrontMatterError(f"front matter is not YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise FrontMatterError("front matter is not a mapping")
    return data


def _stage(value: Any) -> int | None:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    return checked_stage(value)


def _candidates(root: Path) -> Iterator[tuple[Path, bool]]:
    for directory in PRP_DIRS:
        folder = root / directory
        if folder.is_dir():
            for path in sorted(folder.glob("PRP-*.md")):
                yield path, directory.name == "executed"


def find_batch_prps(root: Path, batch_id: str) -> tuple[list[Prp], list[str]]:
    """The PRPs of ``batch_id`` under ``root`` and one warning per file that was skipped.

    A PRP belongs to the batch when its front matter says ``batch_id: <batch_id>``, or, when it
    names no batch, when its id (front matter ``prp_id`` or file name) is an item of the batch.
    """
    found: dict[str, Prp] = {}
    warnings: list[str] = []
    for path, executed in _candidates(root):
        number = prp_id_of(path.stem)
        try:
            meta = read_front_matter(path)
        except FrontMatterError as exc:
            if number is not None and belongs_to_batch(number, batch_id):
                warnings.append(f"{path}: {exc}; skipped")
            continue
        declared = meta.get("batch_id")
        prp_id = str(meta.get("prp_id") or f"PRP-{number}")
        item_number = prp_id_of(prp_id)
        if declared is not None:
            if str(declared) != batch_id:
                continue
        elif item_number is None or not belongs_to_batch(item_number, batch_id):
            continue
        if item_number == batch_id or (prp_id in found and not executed):
            # The batch's own plan (PRP-47) is not an item; an executed copy wins over a request.
            continue
        status = meta.get("status")
        found[prp_id] = Prp(
            path=path,
            item_id=prp_id,
            status=str(status).strip().lower() if status is not None else None,
            stage=_stage(meta.get("stage")),
            executed_dir=executed,
        )
    return sorted(found.values(), key=lambda p: p.item_id), warnings
