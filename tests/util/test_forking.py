"""A fork waits for the helper threads still running, and may_fork does not count them."""

from __future__ import annotations

import os
import threading

import pytest

from exporter.util import forking

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this system")


def _waiting_helper() -> tuple[threading.Thread, threading.Event, list[str]]:
    release = threading.Event()
    done: list[str] = []

    def work() -> None:
        release.wait(timeout=30)
        done.append("done")

    return forking.start_helper(work, name="test-helper"), release, done


def test_a_running_helper_leaves_may_fork_as_it_was_and_another_thread_does_not() -> None:
    before = forking.may_fork()
    helper, release, _ = _waiting_helper()
    try:
        assert forking.may_fork() == before
        other = threading.Thread(target=release.wait, args=(30,))
        other.start()
        assert not forking.may_fork()
    finally:
        release.set()
        helper.join()
        other.join()
    assert forking.may_fork() == before


def test_a_fork_waits_for_the_running_helpers_and_the_child_has_none() -> None:
    helper, release, done = _waiting_helper()
    timer = threading.Timer(0.2, release.set)
    timer.start()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it inherited, and leave at once
        os.write(write_end, str(len(forking._helpers)).encode())
        os._exit(0)
    os.close(write_end)
    try:
        assert done == ["done"]  # ended before the fork went on
        assert not helper.is_alive()
        assert os.read(read_end, 16) == b"0"
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
        timer.join()
