"""Which PRP ids, file names and commit subjects belong to a batch.

PRP ids are ``PRP-{batch}`` followed by dotted parts: ``PRP-47.7.1`` is an item of batch 47,
``PRP-47`` is the batch itself (its plan), never an item. An id belongs to batch ``47`` when it
is ``47`` or starts with ``47.``: never ``470``, ``4.7`` or ``47a``. The batch id is compared
as text, never used as a pattern.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "belongs_to_batch",
    "convention_items",
    "is_item_of",
    "item_of_name",
    "mentioned_items",
    "normal_item_id",
    "prp_id_of",
    "subject_names_batch",
]

# A PRP id: "PRP-" and dot-separated alphanumeric parts; a trailing sentence dot is not a part.
_PRP_ID: Final = re.compile(r"(?<![\w-])PRP-([0-9A-Za-z]+(?:\.[0-9A-Za-z]+)*)(?![0-9A-Za-z])")
# "batch 47", "batch-47", "batch #47", "batch_id: 47" as written in commit subjects.
_BATCH_WORD: Final = re.compile(
    r"(?<![\w-])batch(?:[ _-]?id)?[ :#=_-]+([0-9A-Za-z]+(?:\.[0-9A-Za-z]+)*)(?![0-9A-Za-z])",
    re.IGNORECASE,
)
# The orchestrator's execute convention: the subject starts "PRP-{id}: ..." (one or more ids).
_CONVENTION: Final = re.compile(
    r"\s*PRP-([0-9A-Za-z]+(?:\.[0-9A-Za-z]+)+)(?:\s*[,&]\s*PRP-[0-9A-Za-z.]+)*\s*:"
)
_BARE_NUMBER: Final = re.compile(r"[0-9]+(?:\.[0-9A-Za-z]+)*")


def belongs_to_batch(prp_number: str, batch_id: str) -> bool:
    """Whether the id after ``PRP-`` is the batch itself or one of its items."""
    return prp_number == batch_id or prp_number.startswith(batch_id + ".")


def is_item_of(prp_number: str, batch_id: str) -> bool:
    """Whether the id after ``PRP-`` is an item of the batch (``47.x...``), not the batch."""
    return prp_number.startswith(batch_id + ".") and len(prp_number) > len(batch_id) + 1


def prp_id_of(name: str) -> str | None:
    """The PRP number at the start of a file stem or id (``PRP-47.1.2-foo`` -> ``47.1.2``)."""
    match = _PRP_ID.match(name)
    return match[1] if match else None


def item_of_name(file_name: str, batch_id: str) -> str | None:
    """``PRP-47.1.2`` when a file is named like an item of the batch (``PRP-47.1.2-x.md``).

    The id must be followed by the end of the stem or a separator (``-``, ``_``, space).
    ``PRP-47-BATCH-PLAN.md`` and ``PRP-47.md`` name the batch, not an item: ``None``.
    """
    stem = file_name[:-3] if file_name.lower().endswith(".md") else file_name
    number = prp_id_of(stem)
    if number is None or not is_item_of(number, batch_id):
        return None
    rest = stem[len("PRP-") + len(number) :]
    if rest and rest[0] not in "-_ ":
        return None
    return f"PRP-{number}"


def normal_item_id(value: object) -> str | None:
    """An item id as written in orchestrator files: ``PRP-47.1.2`` or bare ``47.1.2``."""
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    if _BARE_NUMBER.fullmatch(text) and "." in text:
        return f"PRP-{text}"
    number = prp_id_of(text)
    return f"PRP-{number}" if number is not None else (text[:200] or None)


def mentioned_items(text: str, batch_id: str) -> set[str]:
    """The item ids of ``batch_id`` that ``text`` mentions (``PRP-47.1.2``), exactly."""
    return {f"PRP-{m}" for m in _PRP_ID.findall(text) if is_item_of(m, batch_id)}


def subject_names_batch(subject: str, batch_id: str) -> bool:
    """Whether a subject names the batch or one of its items (``PRP-47``, ``batch 47``)."""
    if any(belongs_to_batch(m, batch_id) for m in _PRP_ID.findall(subject)):
        return True
    return batch_id in _BATCH_WORD.findall(subject)


def convention_items(subject: str, batch_id: str) -> frozenset[str]:
    """Items of the batch a subject names by the execute convention ``PRP-47.1.2: ...``.

    The subject must start with the id(s) and a colon; ids of other batches are left out.
    """
    match = _CONVENTION.match(subject)
    if match is None:
        return frozenset()
    return frozenset(mentioned_items(match[0], batch_id))
