"""sender --http: web apps POST work; 202 once the broker has it, 400/503 when it cannot."""

import json
import urllib.error
import urllib.request

from devtools.localbroker import free_port
from support import RECEIVED, wait_until


def post(port, body: bytes, path="/messages"):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def start_http_sender(run, **kwargs):
    port = free_port()
    sender = run("sender", "--http", f"127.0.0.1:{port}", **kwargs)
    sender.wait_for_line("accepting POST")
    return sender, port


def test_posted_json_is_confirmed_then_received(run):
    """POST /messages answers 202 with the id; the receiver gets that message with the JSON as payload."""
    receiver = run("receiver")
    sender, port = start_http_sender(run)
    status, answer = post(port, json.dumps({"job": "resize", "image": 42}).encode())
    assert status == 202 and answer["seq"] == 1
    receiver.wait_count(RECEIVED, 1)
    assert receiver.ids(RECEIVED) == [answer["id"]]
    assert 'payload={"job":"resize","image":42}' in receiver.output


def test_malformed_or_oversized_bodies_get_400(run):
    """Broken JSON and bodies over 1 MiB are refused with 400 and a reason; nothing is published."""
    sender, port = start_http_sender(run)
    status, answer = post(port, b'{"job": ')
    assert status == 400 and answer["error"].startswith("malformed JSON")
    status, answer = post(port, b'"' + b"x" * (1024 * 1024) + b'"')
    assert status == 400 and "exceeds the 1048576-byte limit" in answer["error"]
    status, _ = post(port, b"{}", path="/other")
    assert status == 404
    assert " sent seq=" not in sender.output


def test_broker_unreachable_gives_503_and_the_server_stays_up(run):
    """With no broker the POST fails fast with 503 and a clear reason; the server keeps serving."""
    sender, port = start_http_sender(run, url=f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F")
    for _ in range(2):
        status, answer = post(port, b'{"job": 1}')
        assert status == 503 and "retry later" in answer["error"]
    assert sender.proc.poll() is None


def test_http_sender_stops_cleanly_on_sigterm(run):
    """SIGTERM stops the HTTP producer with exit 0."""
    import signal

    sender, port = start_http_sender(run)
    assert post(port, b"[1, 2]")[0] == 202
    sender.signal(signal.SIGTERM)
    assert sender.wait(10) == 0, sender.output
    wait_until(lambda: "http producer stopped" in sender.output, 5, "stop line")
