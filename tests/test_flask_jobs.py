"""The flask-jobs example (examples/flask-jobs) with Flask's test client against the real broker:
jobs queued with a confirm, done by workers that ack after the work, status visible, 503 while
the broker is away."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import pytest

from devtools.localbroker import free_port
from support import ROOT, Program, queue_depth, wait_until

flask = pytest.importorskip("flask", reason="Flask is in the test extra: pip install -e '.[test]'")

from flask_jobs.jobs import Settings  # noqa: E402 - after the Flask check
from flask_jobs.web import create_app  # noqa: E402
from flask_jobs.worker import Worker  # noqa: E402

EXAMPLE = ROOT / "examples" / "flask-jobs"


@pytest.fixture
def settings(broker, queue):
    return Settings(url=broker.url, queue=queue, publish_timeout=2.0)


@pytest.fixture
def app(settings):
    app = create_app(settings)
    yield app
    app.extensions["jobs"].close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def worker(settings):
    """A worker in a thread of this process, stopped at teardown."""
    running = Worker(settings)
    thread = threading.Thread(target=running.jobs.start, daemon=True)  # run() would set signal handlers
    thread.start()
    yield running
    running.jobs.stop()
    thread.join(15)
    running.reports.close()


def state_of(client, job_id: str) -> dict:
    answer = client.get(f"/jobs/{job_id}")
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def test_post_queues_the_job_with_a_confirm_and_answers_202(client, broker, queue):
    """POST /jobs answers 202 with the job id and a status URL; the job is in the durable queue."""
    answer = client.post("/jobs", json={"text": "count these four words"})
    assert answer.status_code == 202, answer.get_json()
    body = answer.get_json()
    assert len(body["id"]) == 32 and body["state"] == "queued"
    assert answer.headers["Location"] == body["status_url"] == f"/jobs/{body['id']}"
    assert state_of(client, body["id"])["state"] == "queued"
    assert queue_depth(broker.url, queue) == 1  # confirmed before the 202: already in the queue


def test_worker_does_the_job_and_the_client_sees_the_result(client, worker):
    """A worker takes the job, reports running then done; GET /jobs/<id> shows the result."""
    job_id = client.post("/jobs", json={"text": "one two three", "seconds": 0.2}).get_json()["id"]
    done = wait_until(lambda: (s := state_of(client, job_id))["state"] == "done" and s, 30, "the job done")
    assert done["result"]["words"] == 3
    assert done["result"]["worker"]


def test_unknown_job_is_404_and_bad_jobs_are_400(client):
    """Unknown ids are 404; a job without text, with bad seconds or not JSON is refused with 400."""
    assert client.get("/jobs/nope").status_code == 404
    for body in ({}, {"text": ""}, {"text": "x", "seconds": -1}, {"text": "x", "seconds": True}, [1]):
        answer = client.post("/jobs", json=body)
        assert answer.status_code == 400 and answer.get_json()["error"], body
    assert client.post("/jobs", data="not json", content_type="application/json").status_code == 400


def test_post_answers_503_quickly_while_the_broker_is_away(client, broker, worker):
    """Broker stopped: 503 with Retry-After within the publish timeout, nothing queued; back: 202 and done."""
    assert client.post("/jobs", json={"text": "before"}).status_code == 202
    broker.stop()
    try:
        started = time.monotonic()
        answer = client.post("/jobs", json={"text": "while away"})
        elapsed = time.monotonic() - started
        assert answer.status_code == 503, answer.get_json()
        assert answer.headers["Retry-After"] and "retry later" in answer.get_json()["error"]
        assert elapsed < 5, f"503 took {elapsed:.1f}s"
    finally:
        broker.start()
    # The client retries, as the 503 asks; the shared publisher reconnects.
    answer = wait_until(lambda: (a := client.post("/jobs", json={"text": "after the restart"})).status_code == 202
                        and a, 60, "a 202 after the broker came back")
    job_id = answer.get_json()["id"]
    wait_until(lambda: state_of(client, job_id)["state"] == "done", 60, "the job after the restart done")


def test_unreachable_broker_is_503_not_a_hang(settings):
    """A broker that is not there at all: the first POST already answers 503 within the timeout."""
    app = create_app(Settings(url=f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F", queue=settings.queue,
                              publish_timeout=1.0))
    try:
        started = time.monotonic()
        answer = app.test_client().post("/jobs", json={"text": "nobody home"})
        assert answer.status_code == 503
        assert time.monotonic() - started < 4
    finally:
        app.extensions["jobs"].close()


def test_a_killed_worker_never_acked_so_another_worker_does_the_job(client, broker, queue):
    """SIGKILL a worker mid-job: the job was not acked, so the next worker gets it and finishes it."""
    env = {**os.environ, "AMQP_URL": broker.url, "JOBS_QUEUE": queue, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(EXAMPLE), str(ROOT)])}
    command = [sys.executable, "-m", "flask_jobs.worker"]
    first = Program(command, env)
    try:
        job_id = client.post("/jobs", json={"text": "slow job here", "seconds": 4}).get_json()["id"]
        wait_until(lambda: state_of(client, job_id)["state"] == "running", 30, "the job running",
                   lambda: first.output)
        first.signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.stop()
    assert state_of(client, job_id)["state"] == "running"
    # The broker requeued it, marked redelivered; the next worker does it from the start.
    second = Program(command, env)
    try:
        second.wait_for_line(f"done job id={job_id} words=3 (redelivered)", timeout=60)
    finally:
        second.signal(signal.SIGTERM)
        assert second.wait(30) == 0, second.output
    assert state_of(client, job_id)["state"] == "done"


def test_bad_settings_stop_the_worker_with_one_line(broker):
    """A JOBS_PUBLISH_TIMEOUT that is not a number of seconds: one error line, exit code 1, no traceback."""
    env = {**os.environ, "AMQP_URL": broker.url, "JOBS_PUBLISH_TIMEOUT": "soon",
           "PYTHONPATH": os.pathsep.join([str(EXAMPLE), str(ROOT)])}
    program = Program([sys.executable, "-m", "flask_jobs.worker"], env)
    assert program.wait(30) == 1
    assert program.output.strip() == "error: JOBS_PUBLISH_TIMEOUT must be seconds from 0 to 300, not 'soon'"
