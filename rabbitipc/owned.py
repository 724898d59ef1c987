"""One thread owns a connection; other threads hand it work and get a Future.

pika connections are not thread-safe: one thread connects, turns the I/O loop and does all the
broker work, and other threads only hand work over. The HTTP front (request threads hand
messages to the publisher thread), the RPC client (callers hand requests to its I/O thread), the
log handler (emit() hands records to its publishing thread) and the chat's outbox (the UI hands
messages to its sending thread) all do it through `Owned`:

- any thread: `submit(fn)` queues fn and returns a `concurrent.futures.Future` for its result;
  `wake` (given to the constructor) is then called, so an owner waiting in its I/O loop turns at
  once. Raises `Full` when `limit` functions already wait, `Closed` after close().
- the owner thread: `run_pending()` runs what was handed over, in order. An exception is the owner
  loop's to handle (a lost link, a stop): the function goes back to the front of the queue, so
  nothing is lost, and the exception propagates; the loop then retries, or `drain(reason)`s.
  `wait(timeout)` waits for work, for an owner that has no I/O loop of its own to turn.
- lifecycle: `start(target)` runs the owner loop on a daemon thread, `close()` refuses new work
  (what was handed over still runs), `join(timeout)` waits for the owner to end, with a deadline.

What each owner does on a lost link (retry, answer 503, publish again) stays with the owner.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


class Refused(Exception):
    """submit() cannot take the work: the owner is closed, or too much already waits."""


class Full(Refused):
    """`limit` functions already wait for the owner."""


class Closed(Refused):
    """close() was called: no new work is taken."""


class Dropped(Exception):
    """What a future gets when its function was dropped unrun (drain()): the owner's reason."""


class Owned:
    """The hand-over to the one thread that owns a connection."""

    def __init__(self, name: str, *, wake: Callable[[], None] | None = None, limit: int = 0) -> None:
        """`wake()` is called (on the submitting thread) after each submit; `limit` > 0 bounds the queue."""
        self.name = name
        self.limit = limit
        self._wake = wake
        self._queue: deque[tuple[Callable[[], Any], Future]] = deque()
        self._ready = threading.Condition(threading.Lock())
        self._closed = False
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def closed(self) -> bool:
        return self._closed

    # -- any thread ------------------------------------------------------------------------
    def submit(self, fn: Callable[[], Any], *, wake: bool = True) -> Future:
        """Hand fn to the owner thread; never waits. Raises Full or Closed."""
        future: Future = Future()
        with self._ready:
            if self._closed:
                raise Closed(f"{self.name} is closed")
            if self.limit and len(self._queue) >= self.limit:
                raise Full(f"{self.limit} waiting")
            self._queue.append((fn, future))
            self._ready.notify()
        if wake and self._wake is not None:
            self._wake()
        return future

    def close(self) -> None:
        """Take no new work; the owner still runs what was handed over (wait() ends once it is done)."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        if self._wake is not None:
            self._wake()

    # -- the owner thread -------------------------------------------------------------------
    def run_pending(self) -> int:
        """Run what was handed over, in order; returns how many ran. An exception propagates, its function
        back at the front of the queue."""
        count = 0
        queue = self._queue  # never replaced: drain() empties it in place
        while queue:
            with self._ready:
                if not queue:
                    break
                fn, future = queue.popleft()
            try:
                result = fn()
            except BaseException:
                with self._ready:
                    queue.appendleft((fn, future))
                raise
            future.set_result(result)
            count += 1
        return count

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until work is handed over (True), or the timeout passes, or the owner is closed and
        nothing is left (False)."""
        with self._ready:
            if not self._queue and not self._closed:
                self._ready.wait(timeout)
            return bool(self._queue)

    def drain(self, reason: str) -> int:
        """Drop what waits: each future gets Dropped(reason). Returns how many were dropped."""
        with self._ready:
            dropped = list(self._queue)
            self._queue.clear()
        for _fn, future in dropped:
            future.set_exception(Dropped(reason))
        return len(dropped)

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, target: Callable[[], None]) -> None:
        """Run the owner loop `target` on a daemon thread named after this owner."""
        self._thread = threading.Thread(target=target, name=self.name, daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float) -> bool:
        """Wait up to timeout seconds for the owner thread to end; True when it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.alive
