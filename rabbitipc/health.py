"""Liveness and readiness for Kubernetes probes, through a small file the program keeps fresh.

The program's main loop calls beat() on every turn (throttled to one write every couple of
seconds): `alive` proves the loop turns, `connected` says whether it talks to the broker. The
probe is `python -m rabbitipc.health FILE [--connected] [--max-age S]`, which exits 0 when
healthy and 1 with one line saying why not. A file works with a read-only root filesystem
(mount an emptyDir) and needs no port.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable

LOGGER = logging.getLogger(__name__)


class Health:
    """Writes {"beat": unix time, "connected": bool} to a file; a no-op without a path."""

    def __init__(self, path: str | None, interval: float = 2.0) -> None:
        self.path = path
        self.interval = interval
        self._last = (0.0, None)
        self._warned = False
        self._lock = threading.Lock()
        #: Written beside the beat when set: the program's numbers (metrics.snapshot), for rabbitipc-ctl status.
        self.details: Callable[[], object] | None = None

    def beat(self, connected: bool) -> None:
        if not self.path:
            return
        now = time.time()
        last_time, last_state = self._last
        if last_state == connected and now - last_time < self.interval:
            return
        with self._lock:  # the I/O thread and the handler thread both beat
            self._write(now, connected)

    def _write(self, now: float, connected: bool) -> None:
        tmp = f"{self.path}.tmp"
        try:
            with open(tmp, "w") as handle:
                state = {"beat": now, "connected": connected, "pid": os.getpid()}
                if self.details is not None:
                    state["status"] = self.details()
                json.dump(state, handle)
            os.replace(tmp, self.path)
        except OSError as exc:
            if not self._warned:
                LOGGER.warning("cannot write health file %s: %s; probes will fail", self.path, exc)
                self._warned = True
        self._last = (now, connected)


def check(path: str, max_age: float, need_connected: bool) -> str | None:
    """None when healthy, else the reason."""
    try:
        with open(path) as handle:
            state = json.load(handle)
    except (OSError, ValueError) as exc:
        return f"no health file {path}: {exc.__class__.__name__}"
    age = time.time() - float(state.get("beat", 0))
    if age > max_age:
        return f"main loop silent for {age:.0f}s (limit {max_age:.0f}s)"
    if need_connected and not state.get("connected"):
        return "not connected to the broker"
    return None


if __name__ == "__main__":  # the probe's documented command; its main is programs/health.py
    from .programs.health import main

    sys.exit(main())
