"""Handlers run off pika's I/O thread, so slow work never starves the connection.

pika's BlockingConnection is single-threaded: while a handler runs inside the delivery
callback, no heartbeat is answered, and work longer than two heartbeat intervals makes the
broker drop the connection (and redeliver the message, forever). As in pika's threaded
consumer example, the delivery callback only queues the message; one worker thread runs the
handler, then hands the outcome back to the I/O thread with add_callback_threadsafe, where
the ack (or dead-letter, or forward) happens. One message at a time, in delivery order.

The thread outlives connections: a handler still busy when the link drops (say, publishing
a report and waiting for the broker to come back) finishes before anything from the new link
is handled, so handlers never run twice at once, even across reconnects. Its outcome is
dropped, as the channel it came on is gone: the broker delivers that message again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from queue import Empty, Queue
from typing import Any

from .outcome import Outcome

LOGGER = logging.getLogger(__name__)


class Dispatcher:
    """One worker thread: decide on the worker, finish on the I/O thread of the message's connection."""

    def __init__(self, decide: Callable[..., Any], finish: Callable[..., None],
                 should_skip: Callable[[], bool], dropped: Callable[[Any], None] = lambda channel: None) -> None:
        """dropped(channel) is called (worker thread) for a decided message whose channel closed before
        its outcome was carried out: it comes back from the broker."""
        self.decide = decide
        self.finish = finish
        self.should_skip = should_skip
        self.dropped = dropped
        self.items: Queue = Queue()
        self.busy = threading.Event()
        #: The properties of the message being decided (None when idle): who the stop's last line names.
        self.in_hand = None
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rabbitipc-handler", daemon=True)
        self._thread.start()

    def submit(self, channel, method, properties, body: bytes, decided: Outcome | None = None) -> None:
        """The delivery callback (I/O thread): queue the message and return at once. A message
        `decided` already (a refused RPC request) is carried out in its turn, without deciding."""
        self.items.put((channel, method, properties, body, decided))

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                item = self.items.get(timeout=0.2)
            except Empty:
                continue
            self.busy.set()  # before the stop check, so a stopping main loop waits for us
            if self.should_skip() or not item[0].is_open:  # stopping, or its link is gone: it comes back
                self.busy.clear()
                continue  # stopping: left unacked, the broker requeues it when the channel closes
            self.in_hand = item[2]
            try:
                try:
                    outcome = item[4] if item[4] is not None else self.decide(*item[1:4])
                except Exception as exc:  # noqa: BLE001 - never let the worker die silently
                    # Not left unacked: the next batched ack (multiple=True) would cover it, unhandled.
                    LOGGER.exception("unexpected error while deciding about a message; dead-lettering it")
                    outcome = Outcome.dead(f"unexpected error: {exc.__class__.__name__}: {exc}")
                self._finish_on_io_thread(item[:4], outcome)
            finally:
                self.in_hand = None
                self.busy.clear()

    def _finish_on_io_thread(self, item, outcome) -> None:
        connection = item[0].connection
        done = threading.Event()

        def finish() -> None:
            try:
                self.finish(*item, outcome)
            finally:
                done.set()

        try:
            connection.add_callback_threadsafe(finish)
        except Exception:  # noqa: BLE001 - connection already closed: the message will be redelivered
            LOGGER.debug("connection closed before the outcome could be applied")
            self.dropped(item[0])
            return
        while not done.wait(0.5):
            if not connection.is_open or self._closed.is_set():
                if not done.is_set():
                    self.dropped(item[0])
                return

    def drop_queued(self) -> None:
        """Forget the messages not started yet (their link is gone: the broker delivers them again)."""
        while True:
            try:
                self.items.get_nowait()
            except Empty:
                return

    def close(self, timeout: float = 5.0) -> None:
        """Stop taking messages; the one in hand may finish within timeout (the thread is a daemon: a
        handler that never returns does not keep the process alive)."""
        self._closed.set()
        self._thread.join(timeout)
