"""One log line per message while people can read them; a summary per second beyond that.

At a few messages per second `kubectl logs` should show each one. At thousands per second a
line per message costs more than moving the message (formatting and writing it takes longer
than publishing 100 bytes) and floods the log. Every second the first `per_second` messages
get their own line; the rest are counted and reported in one summary line at the end of it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

# -- the per-message lines, and the patterns that read them back (tests, smoke scenario, benchmark) --
#: The sender's line per confirmed message.
SENT_LINE = "sent seq=%d id=%s bytes=%d payload=%s"
#: The HTTP front's line per message the broker confirmed.
SENT_VIA_HTTP_LINE = "sent seq=%d id=%s bytes=%d via HTTP"
#: The receiver's line per handled rabbitipc message, and per handled foreign (non-rabbitipc) body.
RECEIVED_LINE = "received seq=%d id=%s latency_ms=%.1f from=%s payload=%s"
RECEIVED_TEXT_LINE = "received text id=%s bytes=%d body=%s"
#: (seq, id) of each sent / received line.
SENT = re.compile(r"\bsent seq=(\d+) id=(\S+)")
RECEIVED = re.compile(r"\breceived seq=(\d+) id=(\S+)")
#: A consumer of a single-active-consumer queue: when it starts, and when it becomes the active one.
STANDING_BY_LINE = ("standing by: another consumer is active on queue %s (single active consumer); this one takes "
                    "over when it goes")
ACTIVE_LINE = "active consumer of queue %s (single active consumer): the broker delivers to this one alone%s"
#: A line no healthy run writes.
PROBLEM = re.compile(r" (ERROR|CRITICAL) |Traceback \(most recent call last\)")


class LineBudget:
    """Decides, per message, whether it gets its own log line; summarises the others."""

    def __init__(self, logger: logging.Logger, what: str, per_second: float,
                 detail: Callable[[], str] | None = None, interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.what = what  # e.g. "sent", "received"
        self.limit = per_second * interval
        self.detail = detail or (lambda: "")
        self.interval = interval
        self.clock = clock
        self._started = clock()
        self._lines = 0
        self._summarised = 0

    def allow(self) -> bool:
        """True: log this message's own line. False: it is counted for the summary."""
        now = self.clock()
        if now - self._started >= self.interval:
            self.summarise(now)
        if self._lines < self.limit:
            self._lines += 1
            return True
        self._summarised += 1
        return False

    def summarise(self, now: float | None = None) -> None:
        """End the current interval: one line for the messages that had none (if any)."""
        now = self.clock() if now is None else now
        if self._summarised:
            self.logger.info("%s %d more messages in %.1fs without a line each (%.0f msgs/s)%s",
                             self.what, self._summarised, now - self._started,
                             (self._summarised + self._lines) / max(now - self._started, 1e-9), self.detail())
        self._started, self._lines, self._summarised = now, 0, 0

    def tick(self) -> None:
        """Called from idle loops, so a summary is not held back when traffic stops."""
        if self._summarised and self.clock() - self._started >= self.interval:
            self.summarise()
