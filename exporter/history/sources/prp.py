"""PRP files of a batch and their front matter: ``status``, ``stage`` and ``batch_id``.

PRPs live in ``PRPs/feature-requests/`` and ``PRPs/executed/``. Only files named like an item
of the batch (``PRP-{batch}.x.y[-slug].md``) are read; other documents there
(``PRP-47-BATCH-PLAN.md``) are listed in ``ignored`` and never warned about. Front matter
is the YAML between a first line ``---`` and the next ``---``, parsed with ``yaml.safe_load``
after two guards: only the first :data:`MAX_FRONT_MATTER_BYTES` are read, and YAML anchors/aliases
(never needed in front matter, the tool of "billion laughs" bombs) are refused. A file that
fails is skipped with one warning; it never stops the analysis.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from exporter.archive.model import checked_stage
from exporter.history.sources.ids import belongs_to_batch, is_item_of, item_of_name, prp_id_of
from exporter.history.sources.status import status_outcome

__all__ = [
    "MAX_FRONT_MATTER_BYTES",
    "PRP_DIRS",
    "Prp",
    "PrpScan",
    "find_batch_prps",
    "read_front_matter",
    "split_front_matter",
]

PRP_DIRS: Final = (Path("PRPs/feature-requests"), Path("PRPs/executed"))
MAX_FRONT_MATTER_BYTES: Final = 64 * 1024


class FrontMatterError(ValueError):
    """The file has no usable front matter (one line)."""


@dataclass(frozen=True, slots=True)
class Prp:
    """One work item as its PRP file describes it."""

    path: Path
    item_id: str  # "PRP-47.1.2", from the file name
    status: str | None  # lower case
    stage: int | None  # front matter "stage", else the id's first part (PRP-{batch}.{stage}.n)
    executed_dir: bool  # the file is in PRPs/executed/
    stage_from_id: bool = False


@dataclass
class PrpScan:
    """The batch's PRPs (one per item id) and what was left out, with the reason."""

    prps: list[Prp] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # unreadable item files, one line each
    ignored: list[Path] = field(default_factory=list)  # batch documents that are not items
    notes: list[str] = field(default_factory=list)  # duplicate ids, for the records' notes
    foreign: set[str] = field(default_factory=set)  # items a more specific batch claims


def split_front_matter(text: str) -> tuple[str | None, str]:
    """The front matter block (``None`` if there is none) and the rest of a PRP's text."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return None, text
    for i, line in enumerate(lines[1:], start=1):
        if line.strip() == "---":
            return "".join(lines[1:i]), "".join(lines[i + 1 :])
    return None, text


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


def _stage_of_id(item_id: str, batch_id: str) -> int | None:
    """``PRP-{batch}.{stage}.{order}``: the batch generator's naming, when there is an order."""
    parts = item_id[len("PRP-") + len(batch_id) + 1 :].split(".")
    return int(parts[0]) if len(parts) >= 2 and parts[0].isdigit() else None


def _candidates(root: Path) -> Iterator[tuple[Path, bool]]:
    for directory in PRP_DIRS:
        folder = root / directory
        if folder.is_dir():
            for path in sorted(folder.glob("PRP-*.md")):
                if path.is_file():
                    yield path, directory.name == "executed"


# Which of two files claiming one id holds the stronger evidence: an outcome beats none, then
# success > partial > failure; then a file in PRPs/executed/; then the later file name.
_STRENGTH: dict[str | None, int] = {"success": 3, "partial": 2, "failure": 1, None: 0}


def _strength(prp: Prp) -> tuple[int, bool, str]:
    return (_STRENGTH[status_outcome(prp.status)], prp.executed_dir, prp.path.name)


def _describe(prp: Prp, root: Path) -> str:
    return f"{_relative(prp.path, root)} ({prp.status or 'no status'})"


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def find_batch_prps(root: Path, batch_id: str) -> PrpScan:
    """The PRPs of ``batch_id`` under ``root``: files named ``PRP-{batch}.x.y...``.

    The file name decides; the front matter's ``batch_id`` only moves a file to a more
    specific batch it also names (``PRP-4.6.1`` with ``batch_id: 4.6`` is not batch 4's).
    Where several files claim one id, the item counts once, by the stronger evidence.
    """
    scan = PrpScan()
    claims: dict[str, list[Prp]] = {}
    for path, executed in _candidates(root):
        item_id = item_of_name(path.name, batch_id)
        if item_id is None:
            number = prp_id_of(path.stem)
            if number is not None and belongs_to_batch(number, batch_id):
                scan.ignored.append(path)
            continue
        try:
            meta = read_front_matter(path)
        except FrontMatterError as exc:
            scan.warnings.append(f"{path}: {exc}; skipped")
            continue
        declared = meta.get("batch_id")
        declared_text = str(declared).strip() if declared is not None else batch_id
        if declared_text.startswith(batch_id + ".") and is_item_of(item_id[4:], declared_text):
            scan.foreign.add(item_id)
            continue
        stage = _stage(meta.get("stage"))
        from_id = stage is None and (stage := _stage_of_id(item_id, batch_id)) is not None
        status = meta.get("status")
        claims.setdefault(item_id, []).append(
            Prp(
                path=path,
                item_id=item_id,
                status=str(status).strip().lower() if status is not None else None,
                stage=stage,
                executed_dir=executed,
                stage_from_id=from_id,
            )
        )
    for item_id, found in sorted(claims.items()):
        best = max(found, key=_strength)
        scan.prps.append(best)
        if len(found) > 1:
            others = ", ".join(_describe(p, root) for p in found if p is not best)
            scan.notes.append(
                f"{item_id}: {len(found)} files claim this id; counted once, by "
                f"{_describe(best, root)}; also: {others}"
            )
    return scan
