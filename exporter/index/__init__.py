"""The derived SQLite index of the archive, its maintained totals and its queries.

Owns the SQL: no other part writes a query. May import :mod:`exporter.archive` and
:mod:`exporter.util`; reports and Prometheus read the archive through it.
"""
