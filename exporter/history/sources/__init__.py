"""Where ``batch-metrics analyze`` finds the traces of batches that were never instrumented.

Best first: the LLM-agent orchestrator's own files (:mod:`.orchestrator`), PRP front matter
(:mod:`.prp`) and ``git log`` (:mod:`.git`). :mod:`.ids` decides which PRP ids and commits
belong to a batch, exactly (``PRP-47`` never matches ``PRP-470`` or ``PRP-4.7``).
Each reader raises :class:`SourceError` (one line) when its source is unusable.
"""

from __future__ import annotations

__all__ = ["SourceError"]


class SourceError(Exception):
    """A source cannot be read (git missing, not a repository, ...); ``str()`` is one line."""
