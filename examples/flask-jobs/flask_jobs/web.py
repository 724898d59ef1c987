"""The web front: POST /jobs queues a job and answers 202 with its id once the broker has it.

    POST /jobs        {"text": "...", "seconds": 1} -> 202 {"id", "state", "status_url"}
                      400 for a job we cannot do; 503 (within JOBS_PUBLISH_TIMEOUT seconds)
                      while the broker cannot take it: nothing was queued, retry later
    GET  /jobs/<id>   200 {"id", "state": queued|running|done, "result"} or 404

Each job is published persistent to a durable queue and confirmed by the broker before the
202 goes out. Statuses come from the workers' reports on <queue>.results, consumed by a
background thread into an in-memory board: one web process per board (gunicorn --workers 1
with threads), and a restarted web front knows only the jobs reported since.

    gunicorn --threads 8 -b 0.0.0.0:8000 'flask_jobs.web:create_app()'
"""

from __future__ import annotations

import json
import logging
import threading

from flask import Flask, jsonify, request

from rabbitipc import Backoff, MessageQueue, Retry

from .jobs import STATES, BadJob, JobBoard, Settings, setup_logging, validate

LOGGER = logging.getLogger(__name__)


class JobQueue:
    """The publishing side (one confirmed publisher shared under a lock) and the status board."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # A short retry budget per request: a client waiting on us should get its 503 quickly.
        retry = Retry(timeout=settings.publish_timeout, backoff=Backoff(step=0.5, cap=1.0))
        self._jobs = MessageQueue(settings.queue, settings.url, retry=retry)
        self._lock = threading.Lock()
        self.board = JobBoard()
        # The reports consumer retries forever: reports wait in their durable queue meanwhile.
        self._reports = MessageQueue(settings.results_queue, settings.url, retry=Retry(timeout=0))
        self._reports.register(self._on_report)
        self._thread = threading.Thread(target=self._reports.start, name="job-reports", daemon=True)
        self._thread.start()

    def submit(self, job: dict) -> str:
        """Publish the job, wait for the broker's confirm, return its id; raise when it is not queued."""
        if not self._lock.acquire(timeout=self.settings.publish_timeout):
            raise TimeoutError("the broker is slow to confirm other jobs")
        try:
            job_id = self._jobs.publish(job)
        finally:
            self._lock.release()
        self.board.queued(job_id)
        return job_id

    def _on_report(self, delivery) -> None:
        """Called on the consumer's thread with each status report; raising dead-letters the report."""
        if delivery.message is None:
            raise ValueError(f"not a job report: {delivery.parse_error}")
        report = json.loads(delivery.message.payload)
        if not isinstance(report, dict) or report.get("state") not in STATES or not isinstance(report.get("id"), str):
            raise ValueError(f"not a job report: {delivery.message.payload[:200]!r}")
        self.board.report(report)

    def close(self) -> None:
        """Stop consuming reports and close the publishing connection."""
        self._reports.stop()
        self._thread.join(10)
        with self._lock:
            self._jobs.close()


def create_app(settings: Settings | None = None) -> Flask:
    """The Flask app; settings from the environment unless given. app.extensions["jobs"] is the JobQueue."""
    setup_logging()
    jobs = JobQueue(settings or Settings.from_env())
    app = Flask(__name__)
    app.extensions["jobs"] = jobs

    @app.post("/jobs")
    def submit():
        try:
            job = validate(request.get_json(silent=True))
        except BadJob as exc:
            return jsonify(error=str(exc)), 400
        try:
            job_id = jobs.submit(job)
        except Exception as exc:  # noqa: BLE001 - whatever kept the confirm away, the job is not queued
            LOGGER.warning("job not queued: %s: %s", exc.__class__.__name__, exc)
            answer = jsonify(error=f"the job was not queued ({exc.__class__.__name__}: {exc}); retry later")
            return answer, 503, {"Retry-After": "5"}
        LOGGER.info("queued job id=%s", job_id)
        status_url = f"/jobs/{job_id}"
        return jsonify(id=job_id, state="queued", status_url=status_url), 202, {"Location": status_url}

    @app.get("/jobs/<job_id>")
    def status(job_id: str):
        found = jobs.board.get(job_id)
        if found is None:
            return jsonify(error=f"no job {job_id} known here"), 404
        return jsonify(found)

    return app
