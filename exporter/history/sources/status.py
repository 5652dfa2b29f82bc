"""What a status word written by an orchestrator or in PRP front matter says about an item."""

from __future__ import annotations

from typing import Final, Literal

__all__ = ["FAILURE", "PARTIAL", "SUCCESS", "ItemOutcome", "status_outcome"]

ItemOutcome = Literal["success", "failure", "partial"]

SUCCESS: Final = frozenset(
    {
        "completed",
        "complete",
        "success",
        "successful",
        "succeeded",
        "done",
        "ok",
        "passed",
        "executed",
        "merged",
        "approved",
    }
)
FAILURE: Final = frozenset(
    {
        "failed",
        "failure",
        "error",
        "errored",
        "cancelled",
        "canceled",
        "timeout",
        "timed_out",
        "crashed",
        "blocked",
        "abandoned",
        "rejected",
    }
)
PARTIAL: Final = frozenset(
    {"partial", "partially_completed", "in_progress", "in-progress", "needs_revision"}
)


def status_outcome(status: str | None) -> ItemOutcome | None:
    """success, failure or partial for a known status word; None for planning and the unknown."""
    word = (status or "").strip().lower().replace(" ", "_")
    if word in SUCCESS:
        return "success"
    if word in FAILURE:
        return "failure"
    if word in PARTIAL:
        return "partial"
    return None
