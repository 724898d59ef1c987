"""SIGTERM and Ctrl-C take the same clean path: the handler only sets a flag.

As in kopf, the signal handler does no work; the main loop sees the flag, finishes the
message in hand, and closes the connection within the Pod's grace period.
"""

from __future__ import annotations

import logging
import signal
import threading

LOGGER = logging.getLogger(__name__)


class StopFlag:
    """A stop request, settable from signal handlers, tests or other threads."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""
        self._signalled = ""  # the first signal received

    def set(self, reason: str = "requested") -> None:
        if not self._event.is_set():
            self.reason = reason
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        """Sleep up to timeout seconds; return True at once when a stop is requested."""
        return self._event.wait(timeout)

    def install_signal_handlers(self) -> None:
        """Route SIGTERM and SIGINT to this flag (call from the main thread)."""

        def handler(signum: int, _frame) -> None:
            name = signal.Signals(signum).name
            # One Ctrl-C under run-local.sh brings SIGINT (the terminal) and SIGTERM (the script) at once: one
            # line for the stop, the signals after the first only at DEBUG. A handler can run inside another
            # (Python checks for signals at calls), so the first is taken in one step without a call.
            earlier, self._signalled = self._signalled, self._signalled or name
            if earlier:
                LOGGER.debug("%s received, already stopping (%s)", name, earlier)
            else:
                LOGGER.info("%s received, stopping", name)
            self.set(self._signalled)

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
