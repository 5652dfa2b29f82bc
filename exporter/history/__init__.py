"""``analyze``: records of batches that were never instrumented, rebuilt from orchestrator
files, PRP front matter and ``git log`` (:mod:`.sources`).

:mod:`.evidence` reads every source once, :mod:`.classify` gives each commit its operation,
:mod:`.outcomes`, :mod:`.timing` and :mod:`.tokens` rank the sources, :mod:`.records` builds a
record per operation and :mod:`.analyze` is the public entry point. docs/sources.md states the
rules for users.

May import :mod:`exporter.archive` and :mod:`exporter.util`.
"""
