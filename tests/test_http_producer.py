"""sender --http: web apps POST work; 202 once the broker has it, 400/503 when it cannot."""

import json
import re
import socket
import struct
import threading
import time
import urllib.error
import urllib.request

from devtools.localbroker import free_port
from support import MAX_MESSAGE_SIZE, RECEIVED, SENT, get_all, queue_depth, wait_until


def post(port, body: bytes, path="/messages", headers=None, timeout=30):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        data = exc.read()
        return exc.code, json.loads(data) if exc.headers.get("Content-Type") == "application/json" else data.decode()


def start_http_sender(run, *args, **kwargs):
    port = free_port()
    sender = run("sender", "--http", f"127.0.0.1:{port}", *args, **kwargs)
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


def test_malformed_bodies_get_400_and_oversized_ones_413(run):
    """Broken JSON is refused with 400 and a reason; a body over 1 MiB with 413 on its headers alone, unread."""
    sender, port = start_http_sender(run)
    status, answer = post(port, b'{"job": ')
    assert status == 400 and answer["error"].startswith("malformed JSON")
    status, answer = post(port, b"[" * 100_000 + b"]" * 100_000)
    assert status == 400 and answer["error"] == "malformed JSON: nested too deep", answer
    status, _ = post(port, b"{}", path="/other")
    assert status == 404
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /messages HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n" + b'"' + b"x" * 65536)
        response = sock.recv(65536)
    assert status_of(response) == 413, response[:200]
    assert " sent seq=" not in sender.output
    assert post(port, b'"' + b"x" * (1024 * 1024 - 2) + b'"')[0] == 202  # 1 MiB exactly is within the limit


def test_broker_unreachable_gives_503_and_the_server_stays_up(run):
    """With no broker the POST fails fast with 503 and a clear reason, later ones at once; the server keeps serving."""
    sender, port = start_http_sender(run, url=f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F")
    status, answer = post(port, b'{"job": 1}')
    assert status == 503 and "broker unreachable" in answer["error"] and "retry later" in answer["error"], answer
    for _ in range(3):  # known unreachable now: answered at once, while the sender keeps trying to connect
        started = time.monotonic()
        status, answer = post(port, b'{"job": 1}')
        assert status == 503 and "broker unreachable" in answer["error"] and time.monotonic() - started < 2, answer
    assert sender.proc.poll() is None


def test_http_sender_stops_cleanly_on_sigterm(run):
    """SIGTERM stops the HTTP producer with exit 0."""
    import signal

    sender, port = start_http_sender(run)
    assert post(port, b"[1, 2]")[0] == 202
    sender.signal(signal.SIGTERM)
    assert sender.wait(10) == 0, sender.output
    wait_until(lambda: "http producer stopped" in sender.output, 5, "stop line")


# -- issue 13 item 6: every read and wait bounded, 503 at once, logs escaped, retries idempotent ---
def status_of(response: bytes) -> int | None:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/") else None


def test_negative_content_length_is_refused_without_reading_the_body(run):
    """Content-Length: -1 with a 3 MiB body: 400 at once, nothing published."""
    sender, port = start_http_sender(run)
    body = b'"' + b"x" * (3 * 1024 * 1024) + b'"'
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"POST /messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: -1\r\n\r\n" + body[:65536])
        sock.settimeout(5)
        try:
            response = sock.recv(65536)  # the fix answers on the headers alone
        except TimeoutError:  # today's server waits for the end of the body: give it that
            sock.settimeout(30)
            sock.sendall(body[65536:])
            sock.shutdown(socket.SHUT_WR)
            response = sock.recv(65536)
    assert status_of(response) == 400, response[:200]
    assert " sent seq=" not in sender.output


def test_memory_alarm_answers_503_quickly(run, broker):
    """While the broker blocks publishing (memory alarm) a POST gets 503 within seconds, as the README says."""
    sender, port = start_http_sender(run)
    assert post(port, b'{"before": "alarm"}')[0] == 202
    broker.ctl("set_vm_memory_high_watermark", "0")
    try:
        started = time.monotonic()
        try:
            status, answer = post(port, b'{"during": "alarm"}', timeout=12)
        except TimeoutError:
            status, answer = None, "no answer in 12 s"
        assert status == 503 and time.monotonic() - started < 10, (status, answer)
        assert "memory or disk alarm" in answer["error"], answer
        started = time.monotonic()
        status, answer = post(port, b'{"during": "alarm, again"}', timeout=12)
        assert status == 503 and time.monotonic() - started < 2, (status, answer)  # known blocked: at once
    finally:
        broker.ctl("set_vm_memory_high_watermark", "0.4")
    wait_until(lambda: post(port, b'{"after": "alarm"}')[0] == 202, 30, "a POST accepted after the alarm")
    assert sender.proc.poll() is None


def test_requests_while_the_broker_is_down_are_answered_in_parallel(run):
    """Five clients POST while no broker answers: each gets 503 within a few seconds, not one after another."""
    sender, port = start_http_sender(run, url=f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F")
    answers = []

    def client():
        started = time.monotonic()
        status, _ = post(port, b'{"job": 1}', timeout=60)
        answers.append((status, time.monotonic() - started))

    threads = [threading.Thread(target=client) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(70)
    assert [status for status, _ in answers] == [503] * 5
    assert max(seconds for _, seconds in answers) < 5, answers


def test_slow_clients_are_disconnected(run):
    """Twenty clients that send half a request and stall are disconnected; a normal POST is served meanwhile."""
    sender, port = start_http_sender(run)
    stalled = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(20)]
    try:
        for sock in stalled:
            sock.sendall(b"POST /messages HTTP/1.1\r\nContent-Le")
        assert post(port, b'{"job": 1}')[0] == 202

        def closed(sock):
            sock.settimeout(0.05)
            try:
                return sock.recv(65536) == b""
            except TimeoutError:
                return False
            except OSError:
                return True

        wait_until(lambda: all(closed(sock) for sock in stalled), 25, "the stalled connections closed by the server")
    finally:
        for sock in stalled:
            sock.close()


def test_control_characters_in_a_request_are_escaped_in_the_log(run):
    """A request line with a carriage return and an escape sequence cannot forge a log line or reach the terminal."""
    sender, port = start_http_sender(run)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # raw: refused by the parser
        sock.sendall(b"GET /\x1b[2J\rsent seq=999 id=raw bytes=1 via HTTP HTTP/1.1\r\n\r\n")
        assert status_of(sock.recv(65536)) == 400
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # percent-encoded: decoded, logged
        sock.sendall(b"GET /%1b[2J%0d%0asent%20seq=999%20id=forged%20bytes=1%20via%20HTTP HTTP/1.1\r\n"
                     b"Host: x\r\n\r\n")
        assert status_of(sock.recv(65536)) == 404
    wait_until(lambda: "forged" in sender.output, 10, "the request logged", lambda: sender.output)
    assert "forged" not in sender.ids(SENT), "a forged 'sent' line"
    assert "\x1b" not in sender.output


def test_a_retried_post_with_the_same_idempotency_key_is_one_message(run, broker, queue):
    """A client retrying with the same Idempotency-Key gets the same id back, and the receiver handles it once."""
    sender, port = start_http_sender(run)
    key = {"Idempotency-Key": "order-42"}
    first = post(port, b'{"order": 42}', headers=key)
    again = post(port, b'{"order": 42}', headers=key)
    assert first[0] == again[0] == 202
    assert first[1]["id"] == again[1]["id"]
    receiver = run("receiver")
    wait_until(lambda: queue_depth(broker.url, queue) == 0 and first[1]["id"] in receiver.ids(RECEIVED), 30,
               "the message received")
    assert receiver.ids(RECEIVED) == [first[1]["id"]]


def test_an_idempotency_key_with_another_body_is_409_and_a_bad_key_is_400(run):
    """The same key with another body is refused (409); keys with spaces, control bytes or over 200 chars get 400."""
    sender, port = start_http_sender(run)
    first = post(port, b'{"order": 7}', headers={"Idempotency-Key": "order-7"})
    assert first[0] == 202 and first[1]["id"] == "order-7"
    status, answer = post(port, b'{"order": 8}', headers={"Idempotency-Key": "order-7"})
    assert status == 409 and "different body" in answer["error"], answer
    for bad in ("two words", "x" * 201, "tab\there"):
        status, answer = post(port, b'{"order": 9}', headers={"Idempotency-Key": bad})
        assert status == 400 and "Idempotency-Key must be" in answer["error"], (bad, answer)
    assert sender.ids(SENT) == ["order-7"]


def test_a_post_refused_during_an_alarm_and_retried_with_its_key_is_one_message(run, broker, queue):
    """A keyed POST answered 503 under a memory alarm, retried after it, is handled once by the receiver."""
    sender, port = start_http_sender(run)
    assert post(port, b'{"before": "alarm"}')[0] == 202
    key = {"Idempotency-Key": "invoice-2026-11"}
    broker.ctl("set_vm_memory_high_watermark", "0")
    try:
        status, answer = post(port, b'{"invoice": 11}', headers=key, timeout=12)
        assert status == 503, answer
    finally:
        broker.ctl("set_vm_memory_high_watermark", "0.4")
    retried = []
    wait_until(lambda: retried.append(post(port, b'{"invoice": 11}', headers=key)) or retried[-1][0] == 202, 30,
               "the retry accepted", lambda: retried)
    assert retried[-1][1]["id"] == "invoice-2026-11"
    receiver = run("receiver")
    wait_until(lambda: queue_depth(broker.url, queue) == 0 and "invoice-2026-11" in receiver.ids(RECEIVED), 30,
               "the invoice received")
    assert receiver.ids(RECEIVED).count("invoice-2026-11") == 1


def test_concurrent_posts_are_each_confirmed_and_received(run):
    """Twenty clients POST at once: every one gets 202 with its own id, and the receiver gets all twenty."""
    sender, port = start_http_sender(run)
    answers = []

    def client(n):
        answers.append(post(port, json.dumps({"job": n}).encode()))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [status for status, _ in answers] == [202] * 20, answers
    receiver = run("receiver")
    receiver.wait_count(RECEIVED, 20)
    assert sorted(receiver.ids(RECEIVED)) == sorted(answer["id"] for _, answer in answers)


def test_a_broadcast_nobody_listens_to_gets_503_and_the_server_stays_up(run, queue):
    """--pattern broadcast with no receiver bound: 503 saying no queue is bound, not 202 for a message nobody gets."""
    sender, port = start_http_sender(run, "--pattern", "broadcast", "--exchange", f"{queue}-x", own_queue=False)
    status, answer = post(port, b'{"news": 1}', timeout=12)
    assert status == 503 and "no queue is bound" in answer["error"], answer
    assert post(port, b'{"news": 2}', timeout=12)[0] == 503
    assert sender.proc.poll() is None and " sent seq=" not in sender.output


def test_a_body_over_the_brokers_max_message_size_gets_503_and_the_next_post_202(run, limited_broker):
    """A body the broker refuses as too large is answered 503 naming its limit; the POST after it is accepted."""
    sender, port = start_http_sender(run, url=limited_broker.url)
    big = json.dumps({"blob": "x" * (MAX_MESSAGE_SIZE + 1000)}).encode()
    status, answer = post(port, big, timeout=12)
    assert status == 503 and str(MAX_MESSAGE_SIZE) in answer["error"], answer
    status, answer = post(port, b'{"small": 1}', timeout=12)
    assert status == 202, answer
    assert sender.proc.poll() is None


# -- request framing: every byte of a request is read as that request's, never as the next one ---------
END = b"GET /end HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"  # answered 404, then the server closes


def exchange(port: int, data: bytes) -> list[int]:
    """Send raw bytes on one connection, followed by END; the statuses of every response until the server closes."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data + END)
        while chunk := sock.recv(65536):
            received += chunk
    return [int(status) for status in re.findall(rb"HTTP/1\.[01] (\d{3}) ", received)]


def request(path: str, body: bytes, *headers: str) -> bytes:
    head = "".join(f"{header}\r\n" for header in ("Host: x", "Content-Type: application/json", *headers))
    return f"POST {path} HTTP/1.1\r\n{head}\r\n".encode() + body


def chunked(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


def test_an_unread_body_is_never_parsed_as_the_next_request(run):
    """POST /not-messages whose body is a whole POST /messages: one 404, nothing published."""
    sender, port = start_http_sender(run)
    smuggled = request("/messages", b'{"smuggled":1}', "Content-Length: 14", "Idempotency-Key: smuggled-1")
    statuses = exchange(port, request("/not-messages", smuggled, f"Content-Length: {len(smuggled)}"))
    assert statuses == [404, 404], statuses
    status, answer = post(port, b'{"after": 1}')  # published after anything the connection above published
    assert status == 202
    sender.wait_for_line(f"id={answer['id']}")
    assert sender.ids(SENT) == [answer["id"]], sender.output


def test_a_chunked_body_is_one_message(run):
    """POST /messages with Transfer-Encoding: chunked is decoded and published; the chunk bytes are no request."""
    receiver = run("receiver")
    sender, port = start_http_sender(run)
    statuses = exchange(port, request("/messages", chunked(b'{"via":"chunked"}'), "Transfer-Encoding: chunked"))
    assert statuses == [202, 404], statuses
    receiver.wait_count(RECEIVED, 1)
    assert 'payload={"via":"chunked"}' in receiver.output


def test_chunked_with_content_length_is_refused_or_read_as_chunked(run):
    """Transfer-Encoding: chunked with a Content-Length: refused, or framed by the chunks (RFC 7230), not the length."""
    receiver = run("receiver")
    sender, port = start_http_sender(run)
    # Framed by Content-Length, the body is `11\r\n` (JSON 11) and the chunk data the next request line.
    data = request("/messages", chunked(b'{"via":"chunked"}'), "Transfer-Encoding: chunked", "Content-Length: 4")
    statuses = exchange(port, data)
    assert statuses in ([400, 404], [400], [202, 404]), statuses
    if statuses[0] == 202:
        receiver.wait_count(RECEIVED, 1)
        assert 'payload={"via":"chunked"}' in receiver.output
    else:
        assert " sent seq=" not in sender.output


def test_a_client_reset_is_at_most_one_log_line_and_no_traceback(run):
    """Clients that reset mid-body or before their answer: no traceback, at most one log line each."""
    sender, port = start_http_sender(run)
    assert post(port, b'{"before": 1}')[0] == 202
    logged = len(sender.lines)
    resets = [request("/messages", b'{"job"', "Content-Length: 100"),  # reset while the body is read
              request("/messages", b'{"job":2}', "Content-Length: 9")]  # reset while the answer is awaited
    for data in resets * 2:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(data)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
        sock.close()
    status, answer = post(port, b'{"after": 1}')
    assert status == 202
    sender.wait_for_line(f"id={answer['id']}")
    new = [line for line in sender.lines[logged:] if " sent seq=" not in line and "/messages 202" not in line]
    assert "Traceback" not in sender.output and len(new) <= len(resets) * 2, "\n".join(new)


def test_a_key_reused_for_another_body_after_a_restart_is_dead_lettered_not_dropped(run, broker, queue):
    """After a front restart a key reused for another body (202: the front cannot know) is parked as a key conflict."""
    import signal

    receiver = run("receiver")
    sender, port = start_http_sender(run)
    assert post(port, b'{"order": 1}', headers={"Idempotency-Key": "order-1"})[0] == 202
    assert post(port, b'{"order": 2}', headers={"Idempotency-Key": "order-2"})[0] == 202
    receiver.wait_count(RECEIVED, 2)
    sender.signal(signal.SIGTERM)
    assert sender.wait(10) == 0
    sender, port = start_http_sender(run)  # remembers no key
    assert post(port, b'{"order": "another"}', headers={"Idempotency-Key": "order-1"})[0] == 202
    assert post(port, b'{"order": 2}', headers={"Idempotency-Key": "order-2"})[0] == 202  # a true retry
    receiver.wait_for_line("dead-lettered id=order-1")
    receiver.wait_for_line("id=order-2 already handled")
    assert receiver.ids(RECEIVED) == ["order-1", "order-2"]
    parked = get_all(broker.url, f"{queue}.dead")
    assert len(parked) == 1, parked
    properties, body = parked[0]
    assert json.loads(body)["payload"] == '{"order":"another"}'
    assert "Idempotency-Key conflict: id order-1" in properties.headers["x-rabbitipc-reason"], properties.headers


def test_an_address_in_use_exits_2_with_one_line(run):
    """--http on a port another program listens on: exit 2 and one line naming the address, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sender = run("sender", "--http", f"127.0.0.1:{port}")
        assert sender.wait(30) == 2, sender.output
    assert f"rabbitipc-send: error: --http 127.0.0.1:{port}: Address already in use" in sender.output
    assert "Traceback" not in sender.output
