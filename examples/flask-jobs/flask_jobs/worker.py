"""The worker: one job at a time from the durable queue, acked only after the work and its report.

    python -m flask_jobs.worker        (AMQP_URL, JOBS_QUEUE from the environment)

For each job: report "running", do the work, report "done" with the result (both confirmed
by the broker), then return, and rabbitipc acks. A worker killed mid-job never acked it, so
the broker hands the job to another worker: jobs are done at least once. Run as many workers
as you like (docker-compose up --scale worker=3): prefetch 1 spreads jobs evenly.
SIGTERM and Ctrl-C finish the job in hand, then stop.
"""

from __future__ import annotations

import json
import logging
import signal
import sys

from rabbitipc import MessageQueue, Retry

from .jobs import BadJob, Settings, setup_logging, validate, work

LOGGER = logging.getLogger(__name__)


class Worker:
    """Consumes jobs and publishes status reports, each side on its own connection."""

    def __init__(self, settings: Settings) -> None:
        # Retry forever: a worker outlives broker restarts.
        self.jobs = MessageQueue(settings.queue, settings.url, prefetch=1, retry=Retry(timeout=0))
        self.reports = MessageQueue(settings.results_queue, settings.url, retry=Retry(timeout=0))
        self.jobs.register(self.handle)

    def handle(self, delivery) -> None:
        """Called by rabbitipc with each job; returning acks it, raising dead-letters it to <queue>.dead."""
        if delivery.message is None:
            raise BadJob(f"not a job: {delivery.parse_error}")
        job = validate(json.loads(delivery.message.payload))
        job_id = delivery.message.id
        self.reports.publish({"id": job_id, "state": "running"})
        result = work(job)
        self.reports.publish({"id": job_id, "state": "done", "result": result})
        LOGGER.info("done job id=%s words=%d%s", job_id, result["words"],
                    " (redelivered)" if delivery.redelivered else "")

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.jobs.stop())
        try:
            handled = self.jobs.start()
        finally:
            self.reports.close()
        LOGGER.info("worker stopped after %d jobs", handled)
        return handled


def main() -> int:
    setup_logging()
    Worker(Settings.from_env()).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
