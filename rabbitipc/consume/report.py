"""The consumer's log lines: one "received" line per handled message (up to a rate), summaries, latency.

The log line is the default sink: it is written before the ack, like any other handling.
"""

from __future__ import annotations

import logging
import time

from ..loglines import RECEIVED_LINE, RECEIVED_TEXT_LINE, LineBudget
from ..message import describe_body, printable
from .handlers import Delivery
from .latency import Latencies

LOGGER = logging.getLogger(__name__)


class Report:
    """Counts handled messages, measures send-to-handled latency, and logs them."""

    def __init__(self, log_rate: float, latency: Latencies | None = None) -> None:
        self.handled = 0
        self.lines = LineBudget(LOGGER, "received", log_rate, detail=self._summary_detail)
        # The whole run's (the metrics' end-to-end histogram: metrics.Stats); summaries report the part
        # since the last one.
        self.latency = latency or Latencies()
        self._latency_mark = Latencies()
        self._first = self._last = 0.0

    def received(self, delivery: Delivery) -> None:
        now = time.time()
        self._first = self._first or now
        self._last = now
        message = delivery.message
        latency = 0.0
        if message is not None:
            latency = (now - message.sent_at) * 1000
            self.latency.add(latency)
        if self.lines.allow():  # a summary line, when one is due, counts the messages before this one
            if message is not None:
                LOGGER.info(RECEIVED_LINE, message.seq, message.id,
                            latency, printable(message.host, 60), printable(message.payload, 60))
            else:
                LOGGER.info(RECEIVED_TEXT_LINE,
                            delivery.id or "-", len(delivery.body), describe_body(delivery.body))
        self.handled += 1

    def _summary_detail(self) -> str:
        interval = self.latency.since(self._latency_mark)
        self._latency_mark = self.latency.copy()
        return f"; {self.handled} in all, {interval.describe()}"

    def done(self, stopped_by: str | None) -> None:
        """The last lines: the pending summary, then the run's totals."""
        self.lines.summarise()
        span = self._last - self._first
        LOGGER.info("receiver done: %d messages handled%s%s", self.handled,
                    f"; first to last {span:.3f}s ({(self.handled - 1) / span:.0f} msgs/s), "
                    f"{self.latency.describe()}" if span > 0 else "",
                    f" (stopped by {stopped_by})" if stopped_by else "")
