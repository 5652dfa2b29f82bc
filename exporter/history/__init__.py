"""``analyze``: records of batches that were never instrumented, rebuilt from orchestrator
files, PRP front matter and ``git log`` (:mod:`.sources`).

May import :mod:`exporter.archive` and :mod:`exporter.util`.
"""
