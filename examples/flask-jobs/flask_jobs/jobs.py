"""What the web front and the workers share: settings, the job itself, and the status board.

A job is a JSON object {"text": "...", "seconds": 0.5}: the worker counts the words of the
text, after pretending to work for `seconds` (at most MAX_SECONDS). Status reports travel on
a second durable queue, <queue>.results: the worker publishes "running", then "done" with the
result; the web front consumes them into the board that GET /jobs/<id> reads.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

LOGGER = logging.getLogger(__name__)

MAX_SECONDS = 60.0
MAX_TEXT = 64 * 1024
#: States in the order a job goes through them; a report never moves a job backwards.
STATES = ("queued", "running", "done")


@dataclass(frozen=True)
class Settings:
    """From the environment: AMQP_URL (the library's default when unset), JOBS_QUEUE, JOBS_PUBLISH_TIMEOUT."""

    url: str | None = None
    queue: str = "jobs"
    publish_timeout: float = 2.0

    @property
    def results_queue(self) -> str:
        return f"{self.queue}.results"

    @classmethod
    def from_env(cls) -> Settings:
        """Settings from the environment; a bad value stops the program with one line saying which."""
        raw = os.environ.get("JOBS_PUBLISH_TIMEOUT", "2")
        try:
            timeout = float(raw)
        except ValueError:
            timeout = -1.0
        if not 0 < timeout <= 300:
            raise SystemExit(f"error: JOBS_PUBLISH_TIMEOUT must be seconds from 0 to 300, not {raw!r}")
        return cls(url=os.environ.get("AMQP_URL"), queue=os.environ.get("JOBS_QUEUE") or "jobs",
                   publish_timeout=timeout)


class BadJob(ValueError):
    """The request's job is not one we can do; str() says why, for the 400 answer."""


def validate(job: object) -> dict:
    """The job as the worker will get it, or BadJob."""
    if not isinstance(job, dict):
        raise BadJob('expected a JSON object such as {"text": "count these words", "seconds": 1}')
    text, seconds = job.get("text"), job.get("seconds", 0)
    if not isinstance(text, str) or not text:
        raise BadJob('"text" must be a non-empty string')
    if len(text) > MAX_TEXT:
        raise BadJob(f'"text" is longer than {MAX_TEXT} characters')
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= MAX_SECONDS:
        raise BadJob(f'"seconds" must be a number from 0 to {MAX_SECONDS:g}')
    return {"text": text, "seconds": seconds}


def work(job: dict) -> dict:
    """The work itself: slow on purpose (job["seconds"]), then count the words."""
    time.sleep(job["seconds"])
    return {"words": len(job["text"].split()), "worker": socket.gethostname()}


class JobBoard:
    """The latest state of recent jobs, fed by status reports; the oldest are forgotten past `size`."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._jobs: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()

    def queued(self, job_id: str) -> None:
        self.report({"id": job_id, "state": "queued"})

    def report(self, status: dict) -> None:
        """Record a status report {"id", "state", ...}; a late "running" never hides "done"."""
        with self._lock:
            current = self._jobs.get(status["id"])
            if current and STATES.index(current["state"]) > STATES.index(status["state"]):
                return
            self._jobs[status["id"]] = status
            self._jobs.move_to_end(status["id"])
            while len(self._jobs) > self.size:
                self._jobs.popitem(last=False)

    def get(self, job_id: str) -> dict | None:
        with self._lock:
            return self._jobs.get(job_id)


def setup_logging() -> None:
    """One line per event on stderr; pika's own chatter only when something is really wrong."""
    logging.basicConfig(stream=sys.stderr, level=os.environ.get("JOBS_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pika").setLevel(logging.CRITICAL)
