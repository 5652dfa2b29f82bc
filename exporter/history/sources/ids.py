"""Which PRP ids and commit messages belong to a batch, and which operation a commit did.

PRP ids are ``PRP-{batch}`` followed by dotted parts (``PRP-47.7.1`` is an item of batch 47).
A mention belongs to batch ``47`` when its id is ``47`` or starts with ``47.``: never
``470``, ``4.7`` or ``47a``. The batch id is compared as text, never used as a pattern.
"""

from __future__ import annotations

import re
from typing import Final

from instrumentation.semconv import Operation

__all__ = [
    "belongs_to_batch",
    "classify_commit",
    "mentioned_batches",
    "mentioned_items",
    "prp_id_of",
]

# A PRP id: "PRP-" and dot-separated alphanumeric parts; a trailing sentence dot is not a part.
_PRP_ID: Final = re.compile(r"(?<![\w-])PRP-([0-9A-Za-z]+(?:\.[0-9A-Za-z]+)*)(?![0-9A-Za-z])")
# "batch 47", "batch-47", "batch #47", "batch_id: 47" as written in commit messages.
_BATCH_WORD: Final = re.compile(
    r"(?<![\w-])batch(?:[ _-]?id)?[ :#=_-]+([0-9A-Za-z]+(?:\.[0-9A-Za-z]+)*)(?![0-9A-Za-z])",
    re.IGNORECASE,
)
# Words that say which operation a commit belongs to; checked in this order.
_OPERATION_WORDS: Final[tuple[tuple[Operation, re.Pattern[str]], ...]] = (
    ("update-context", re.compile(r"\b(update[- ]context|context[- ]update|drift)\b", re.I)),
    ("review", re.compile(r"\b(peer[- ]review|review(ed|s)?)\b", re.I)),
    (
        "generate",
        re.compile(r"\b(generate[ds]?|generation|create[ds]? prps?|add(ed)? prps?)\b", re.I),
    ),
)


def belongs_to_batch(prp_number: str, batch_id: str) -> bool:
    """Whether the id after ``PRP-`` is the batch itself or one of its items."""
    return prp_number == batch_id or prp_number.startswith(batch_id + ".")


def prp_id_of(name: str) -> str | None:
    """The PRP number at the start of a file stem or id (``PRP-47.1.2-foo`` -> ``47.1.2``)."""
    match = _PRP_ID.match(name)
    return match[1] if match else None


def mentioned_items(text: str, batch_id: str) -> set[str]:
    """The PRP ids of ``batch_id`` that ``text`` mentions (``PRP-47.1.2``), exactly."""
    return {f"PRP-{m}" for m in _PRP_ID.findall(text) if belongs_to_batch(m, batch_id)}


def mentioned_batches(text: str) -> set[str]:
    """Batch ids that ``text`` names as a batch (``batch 47``)."""
    return set(_BATCH_WORD.findall(text))


def classify_commit(message: str) -> Operation:
    """The operation a commit message describes; work with no keyword is ``execute``."""
    for operation, words in _OPERATION_WORDS:
        if words.search(message):
            return operation
    return "execute"
