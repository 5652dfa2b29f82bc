"""Reports over the archive: ``trends``, ``prioritize`` and their renderers.

Pure functions over what :mod:`exporter.index` returns. May import :mod:`exporter.index`,
:mod:`exporter.signals`, :mod:`exporter.archive` and :mod:`exporter.util`.
"""
