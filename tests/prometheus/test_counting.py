"""Counting in bulk on every core gives exactly the totals of counting one record at a time."""

from __future__ import annotations

import os
import random

import pytest

from exporter.index.summary import RecordSummary, summarize
from exporter.prometheus import counting
from exporter.prometheus.aggregates import Aggregates
from exporter.prometheus.series import contributions
from tests.support.generated_archive import make_record


def summaries(n: int) -> list[RecordSummary]:
    """``n`` varied records; every seventh has a duration no clock can count."""
    rng = random.Random(7)
    out = []
    for i in range(n):
        s = summarize(make_record(rng, i), f"batch-{i}-x.json")
        out.append(s._replace(duration_seconds=1e300) if i % 7 == 3 else s)
    return out


def one_at_a_time(records: list[RecordSummary]) -> tuple[Aggregates, dict[str, str]]:
    totals, unusable = Aggregates(), {}
    for s in records:
        try:
            totals.apply(contributions(s))
        except ValueError as exc:
            unusable[s.file] = str(exc)
    return totals, unusable


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Fork from 10 records on, whatever threads the test process has; the children forked."""
    monkeypatch.setattr(counting, "PARALLEL_FROM", 10)
    monkeypatch.setattr(counting, "_may_fork", lambda: True)
    monkeypatch.setattr(counting, "usable_cores", lambda: 3)
    children: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid:
            children.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", fork)
    return children


def test_shares_counted_by_children_add_up_to_the_same_totals(forks: list[int]) -> None:
    records = summaries(61)
    expected, expected_unusable = one_at_a_time(records)
    totals = Aggregates()
    assert counting.count(records, totals) == expected_unusable
    assert len(forks) == 2  # three shares: two children and the parent
    assert totals.state() == expected.state()


def test_a_failed_child_has_its_share_counted_by_the_parent(
    forks: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    records = summaries(40)
    expected, expected_unusable = one_at_a_time(records)

    def broken(self: Aggregates) -> dict[str, object]:  # only a child sends its state
        raise RuntimeError("a child that dies")

    monkeypatch.setattr(Aggregates, "state", broken)
    totals = Aggregates()
    assert counting.count(records, totals) == expected_unusable
    assert len(forks) == 2
    monkeypatch.undo()
    assert totals.state() == expected.state()


def test_few_records_are_counted_in_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fork() -> int:
        raise AssertionError("forked for a few records")

    monkeypatch.setattr(os, "fork", no_fork)
    records = summaries(30)
    totals = Aggregates()
    expected, expected_unusable = one_at_a_time(records)
    assert counting.count(records, totals) == expected_unusable
    assert totals.state() == expected.state()
    assert counting.count([], totals) == {}
