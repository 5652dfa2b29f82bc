"""The archive, the durable truth: the record model, its JSON schema, atomic files, pricing,
and crash recovery of in-flight batches.

Owns ``.ce/completed-batches/`` and every byte written there. May import :mod:`exporter.util`
and :mod:`instrumentation.semconv`; every other part reads records through it.
"""
