"""The per-call objects of the API carry no instance dict: their __slots__ take effect."""

from __future__ import annotations

from instrumentation import batch, item, traced_stage


def test_batch_stage_and_item_objects_have_no_instance_dict() -> None:
    for obj in (batch("47", operation="execute"), traced_stage(1), item("PRP-47.1.1")):
        assert not hasattr(obj, "__dict__"), type(obj).__qualname__
