"""The owned-connection hand-over (rabbitipc.owned): work from any thread runs on the owner's, in order."""

from __future__ import annotations

import threading

import pytest

from rabbitipc.owned import Closed, Dropped, Full, Owned


def test_work_runs_on_the_owner_thread_in_order_and_a_failure_keeps_its_place():
    """Functions run in submit order on the owner thread; one that raises goes back to the front and runs again."""
    owned = Owned("test-owner")
    ran: list[tuple[int, str]] = []
    failures = [RuntimeError("link lost")]

    def work(n: int):
        def run() -> int:
            if n == 1 and failures:
                raise failures.pop()
            ran.append((n, threading.current_thread().name))
            return n * 10
        return run

    futures = [owned.submit(work(n)) for n in range(3)]

    def owner() -> None:
        while owned.wait(5):
            try:
                owned.run_pending()
            except RuntimeError:
                continue  # the owner's loop handles a lost link: the work is still there

    owned.start(owner)
    assert [future.result(5) for future in futures] == [0, 10, 20]
    assert ran == [(0, "test-owner"), (1, "test-owner"), (2, "test-owner")]
    owned.close()
    assert owned.join(5)


def test_limit_close_and_drain_are_said_to_the_submitter():
    """Past its limit submit() raises Full, after close() Closed; drained work's futures carry the reason."""
    owned = Owned("test-owner", limit=2)
    first, _second = owned.submit(lambda: 1), owned.submit(lambda: 2)
    with pytest.raises(Full):
        owned.submit(lambda: 3)
    assert owned.drain("broker unreachable") == 2
    with pytest.raises(Dropped, match="broker unreachable"):
        first.result(1)
    owned.close()
    with pytest.raises(Closed):
        owned.submit(lambda: 4)
    assert not owned.wait(0), "a closed owner with nothing left has no work to wait for"
