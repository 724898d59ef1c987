"""A logging.Handler that ships log records through RabbitMQ without blocking the application.

    handler = RabbitHandler(queue="logs")     # the broker of AMQP_URL (or pass url=...)
    logging.getLogger().addHandler(handler)

emit() only puts the formatted record into a bounded buffer; a background thread publishes
it with confirms and reconnects when the broker comes back. While the broker is down the
buffer fills; past `capacity` records are dropped and counted (`handler.dropped`), and the
count is reported on close. close() waits (up to `close_timeout`) until everything buffered
is confirmed: a clean shutdown loses nothing. Each record becomes a rabbitipc message, so a
receiver shows it and `--jsonl` stores it.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from queue import Empty, Full, Queue

from .backoff import Backoff
from .connection import Broker, Retry
from .errors import FatalError, Stopped
from .message import Stamper
from .publish.blocking import Publisher
from .shutdown import StopFlag
from .topology import Route

_CLOSE = object()


class RabbitHandler(logging.Handler):
    """Non-blocking log transport to a RabbitMQ queue (or exchange pattern)."""

    def __init__(
        self,
        url: str | None = None,
        queue: str = "logs",
        *,
        route: Route | None = None,
        capacity: int = 10000,
        close_timeout: float = 10.0,
        level: int = logging.NOTSET,
        ca_file: str | None = None,
    ) -> None:
        super().__init__(level)
        self.route = route or Route("work", queue)
        self.capacity = capacity
        self.close_timeout = close_timeout
        self.dropped = 0
        self.sent = 0
        self._buffer: Queue = Queue(capacity)
        self._stop = StopFlag()
        self._closed = False
        self._host = socket.gethostname()
        self._stamp = Stamper(self._host)
        # url, else AMQP_URL, else localhost; retried forever: the application must not stop for its logs.
        broker = Broker.from_env(url, ca_file, Retry(timeout=0, backoff=Backoff(cap=5)))
        self._publisher = Publisher(broker.url, self.route, broker.retry, self._stop,
                                    connection_name=f"rabbitipc-log-handler@{self._host}", ca_file=broker.ca_file)
        self._thread = threading.Thread(target=self._run, name="rabbitipc-log-handler", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        """Buffer the formatted record; never blocks, never raises into the application."""
        try:
            text = self.format(record)
            self._buffer.put_nowait(text)
        except Full:
            with self.lock:
                self.dropped += 1
        except Exception:  # noqa: BLE001 - logging's contract: report, never raise
            self.handleError(record)

    def _run(self) -> None:
        """The background thread: publish buffered records in order, each confirmed."""
        while True:
            try:
                item = self._buffer.get(timeout=0.5)
            except Empty:
                self._publisher.idle(0.05)  # heartbeats while there is nothing to send
                continue
            if item is _CLOSE:
                return
            message = self._stamp(item)
            try:
                self._publisher.publish(message.body(), message.properties())
            except Stopped:
                with self.lock:
                    self.dropped += 1 + self._discard_buffer()
                return
            except FatalError as exc:
                print(f"rabbitipc log handler: {exc}", file=sys.stderr)
                with self.lock:
                    self.dropped += 1
                continue
            with self.lock:
                self.sent += 1

    def _discard_buffer(self) -> int:
        """Empty the buffer; return how many records it held."""
        records = 0
        while True:
            try:
                item = self._buffer.get_nowait()
            except Empty:
                return records
            records += item is not _CLOSE

    def flush(self) -> None:
        """Nothing to do synchronously: the background thread publishes continuously."""

    def close(self) -> None:
        """Publish what is buffered (bounded by close_timeout), then stop the thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            try:
                self._buffer.put(_CLOSE, timeout=self.close_timeout)
            except Full:
                pass
            self._thread.join(self.close_timeout)
            if self._thread.is_alive():
                self._stop.set("log handler close timeout")
                self._thread.join(5)
            self._publisher.close()
        if self.dropped:
            print(f"rabbitipc log handler: {self.dropped} log records dropped (buffer of {self.capacity} "
                  "full while the broker was unreachable)", file=sys.stderr)
        super().close()
