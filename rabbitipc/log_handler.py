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

from .backoff import RetryPolicy
from .connection import Broker
from .errors import FatalError, Stopped
from .message import Stamper
from .owned import Closed, Full, Owned
from .publish.blocking import Publisher
from .shutdown import StopFlag
from .topology import Route

#: The handler's retry policy: forever, at most 5 s apart.
FOREVER = RetryPolicy(timeout=0, max_delay=5)


class RabbitHandler(logging.Handler):
    """Non-blocking log transport to a RabbitMQ queue (or exchange pattern)."""

    def __init__(
        self,
        url: Broker | str | None = None,
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
        self._stop = StopFlag()
        self._closed = False
        self._host = socket.gethostname()
        self._stamp = Stamper(self._host)
        # A Broker, or a URL (None: AMQP_URL, else localhost); retried forever: the application must not
        # stop for its logs.
        broker = Broker.of(url, ca_file, FOREVER)
        self._publisher = Publisher(broker, self.route, self._stop,
                                    connection_name=f"rabbitipc-log-handler@{self._host}")
        # The buffer: records handed to the publishing thread, which owns the connection.
        self._owner = Owned("rabbitipc-log-handler", limit=capacity)
        self._owner.start(self._run)

    def emit(self, record: logging.LogRecord) -> None:
        """Buffer the formatted record; never blocks, never raises into the application."""
        try:
            text = self.format(record)
            self._owner.submit(lambda: self._publish(text))
        except Full:
            with self.lock:
                self.dropped += 1
        except Closed:
            pass  # after close(): nobody publishes any more
        except Exception:  # noqa: BLE001 - logging's contract: report, never raise
            self.handleError(record)

    def _run(self) -> None:
        """The background thread: publish buffered records in order, each confirmed."""
        while True:
            if not self._owner.wait(0.5):
                if self._owner.closed:
                    return  # close(): everything buffered was published
                self._publisher.idle(0.05)  # heartbeats while there is nothing to send
                continue
            try:
                self._owner.run_pending()
            except Stopped:
                with self.lock:
                    self.dropped += self._owner.drain("stopped")
                return

    def _publish(self, text: str) -> None:
        """One record, confirmed (on the background thread); a refusal drops it, said on stderr."""
        message = self._stamp(text)
        try:
            self._publisher.publish(message.body(), message.properties())
        except FatalError as exc:
            print(f"rabbitipc log handler: {exc}", file=sys.stderr)
            with self.lock:
                self.dropped += 1
            return
        with self.lock:
            self.sent += 1

    def flush(self) -> None:
        """Nothing to do synchronously: the background thread publishes continuously."""

    def close(self) -> None:
        """Publish what is buffered (bounded by close_timeout), then stop the thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._owner.alive:
            self._owner.close()
            if not self._owner.join(self.close_timeout):
                self._stop.set("log handler close timeout")
                self._owner.join(5)
            self._publisher.close()
        if self.dropped:
            print(f"rabbitipc log handler: {self.dropped} log records dropped (buffer of {self.capacity} "
                  "full while the broker was unreachable)", file=sys.stderr)
        super().close()
