"""Where ``batch-metrics analyze`` finds the traces of batches that were never instrumented.

The LLM-agent orchestrator's task files (:mod:`.orchestrator`) and its batch result in both
shapes found in the wild (:mod:`.batch_result`), PRP files and their front matter (:mod:`.prp`)
and ``git log --name-status`` (:mod:`.git`). :mod:`.ids` decides which PRP ids, file names and
commit subjects belong to a batch, exactly (``PRP-47`` never matches ``PRP-470`` or
``PRP-4.7``); :mod:`.status` reads status words, :mod:`.values` the other JSON values.
The sources only read; ranking and combining them is :mod:`exporter.history`'s job.
Each reader raises :class:`SourceError` (one line) when its source is unusable.
"""

from __future__ import annotations

__all__ = ["SourceError"]


class SourceError(Exception):
    """A source cannot be read (git missing, not a repository, ...); ``str()`` is one line."""
