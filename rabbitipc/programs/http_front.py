"""An HTTP front for the sender: web apps POST work, the broker keeps it (seed: Flask producer).

`POST /messages` with a JSON body publishes it as one message (the JSON text is the payload)
with a publisher confirm, then answers 202 with the message id: the work is safely queued.
503 with a reason while the broker cannot take it (unreachable, or blocking publishers under a
memory or disk alarm): at once when the link is known to be down or blocked, else when no
confirm came within CONFIRM_DEADLINE seconds. A 503 means "not confirmed": the message may
still arrive (it was on its way when the broker stopped answering), so a client that retries
should send an `Idempotency-Key`. 400 for malformed JSON, a bad key or a body over the size
limit; 404 elsewhere.

`Idempotency-Key: K` (1 to 200 printable ASCII characters, no spaces) makes K the message id.
A retry with the same key and the same body answers 202 with the same id and seq and publishes
nothing new once the first was confirmed, even late, after its request got 503 (else it is
published again with the same id: receivers drop a duplicate by id); the same key with another
body gets 409. The last KEYS_REMEMBERED (10,000) keys are remembered, in memory, per process:
under 5 MB with keys of the longest length (bodies are not kept, only a 16-byte digest); an older
key counts as new, and receivers still drop a second copy by id within their --dedupe-window.

One thread owns the publisher (serve's caller): it connects, turns the I/O loop (heartbeats,
confirms) and publishes what request threads hand over; concurrent requests share its confirm
window. Request threads never touch the connection and hold no lock across a broker wait.
Standard library only (http.server).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ..bounded import BoundedMap
from ..errors import EXIT_AUTH, EXIT_TLS, FatalError, Stopped, UndeliverableError, UnreachableError
from ..loglines import SENT_VIA_HTTP_LINE
from ..message import Message, Stamper, printable
from ..publish.engine import StreamPublisher

LOGGER = logging.getLogger(__name__)
#: Seconds a request waits for the broker's confirm before it is answered 503.
CONFIRM_DEADLINE = 5.0
#: Requests handed over and not yet published, at most; beyond, 503 at once.
MAX_WAITING = 1000
#: Idempotency keys remembered (each under 500 bytes: the key, a body digest, the seq, a flag).
KEYS_REMEMBERED = 10_000
#: The longest Idempotency-Key (an AMQP message_id holds 255 bytes).
KEY_MAX = 200
#: How often the publisher thread picks up new requests while it waits for confirms.
PICKUP = 0.05
#: Seconds between connection attempts once the broker was found unreachable (503 at once meanwhile).
RECONNECT_PAUSE = 2.0
#: After a stop request, how long confirms of what is in flight are still awaited.
STOP_GRACE = 5.0

Answer = tuple[int, dict]


class Link(enum.Enum):
    """What the publisher thread knows of the broker, read by request threads to answer 503 at once."""

    CONNECTING = "connecting"
    UP = "up"
    BLOCKED = "blocked"
    DOWN = "down"


class Ticket:
    """One message handed to the publisher thread, and the answer its request waits for.

    The first settle() wins: a confirm after the request gave up (503) changes nothing.
    """

    def __init__(self, message: Message, deadline: float) -> None:
        self.message: Message | None = message  # dropped once settled: remembered keys keep no bodies
        self.id, self.seq, self.size = message.id, message.seq, len(message.payload)
        self.deadline = deadline
        self.answer: Answer | None = None
        self.remembered: Remembered | None = None  # the record of its Idempotency-Key, if it has one
        self._done = threading.Event()
        self._lock = threading.Lock()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def settle(self, status: int, answer: dict) -> bool:
        with self._lock:
            if self._done.is_set():
                return False
            self.answer = (status, answer)
            self.message = None
            remembered = self.remembered  # its accepted flag is set by _confirmed(), before the 202 settles here
            self._done.set()
            if remembered is not None and remembered.ticket is self:  # a retry may have put its own there
                remembered.ticket = None
        if status != 202:
            LOGGER.warning("not accepted id=%s: %s", self.id, answer["error"])
        return True

    def refuse(self, reason: str) -> bool:
        return self.settle(503, {"error": f"the broker cannot take messages now: {reason}; retry later"})

    def wait(self) -> Answer:
        if not self._done.wait(max(0.0, self.deadline - time.monotonic())):
            self.refuse(f"no confirm within {CONFIRM_DEADLINE:.0f}s")
        assert self.answer is not None
        return self.answer


class Dispatcher:
    """The publisher thread's side: owns the publisher; request threads submit() and wait on the ticket."""

    def __init__(self, make_publisher: Callable[[], StreamPublisher]) -> None:
        self._make = make_publisher
        self.publisher: StreamPublisher | None = self._new_publisher()
        self.stop = self.publisher.stop
        self.route = self.publisher.route
        self.link, self.reason = Link.CONNECTING, ""
        self._inbox: deque[Ticket] = deque()  # appended by request threads, emptied by the publisher thread
        #: A refusal retrying cannot fix (credentials, permissions, TLS): serve() stops and raises it.
        self.fatal: FatalError | None = None

    # -- request threads ---------------------------------------------------------------
    def submit(self, ticket: Ticket) -> Ticket:
        """Hand a message over; never waits. The ticket is settled (503) at once when the link is down."""
        if self.stop.is_set():
            ticket.refuse(f"stopping ({self.stop.reason})" if self.fatal is None else str(self.fatal))
        elif self.link in (Link.DOWN, Link.BLOCKED):
            ticket.refuse(self.reason)
        elif len(self._inbox) >= MAX_WAITING:
            ticket.refuse(f"{MAX_WAITING} requests already waiting")
        else:
            self._inbox.append(ticket)
            publisher = self.publisher
            if publisher is not None:
                publisher.wake()  # published now, not at the end of the publisher thread's pause
        return ticket

    # -- the publisher thread ----------------------------------------------------------
    def run(self) -> None:
        """Connect, publish what is handed over and read confirms until a stop; then settle what is left."""
        while not self.stop.is_set():
            try:
                if self.publisher is None:
                    self.publisher = self._new_publisher()
                self.publisher.connect()
                self._turn(self.publisher)
            except Stopped:
                break
            except UndeliverableError as exc:
                # One message refused for good (over the broker's max_message_size, nacked again and again): what
                # was in flight with it gets 503 with the reason and is dropped; the next POSTs go on a new link.
                self._give_up(str(exc))
            except FatalError as exc:
                if exc.exit_code in (EXIT_AUTH, EXIT_TLS):
                    # 503 for ever would hide a configuration error: stop, and exit with its code.
                    self.fatal = exc
                    self.stop.set(f"fatal: {exc}")
                    self._give_up(f"the broker refused: {exc}")
                    break
                # Unreachable (or a topology we cannot use): what is in flight is answered 503 and dropped with
                # this publisher (nothing is published after its 503); a new one tries again after a pause.
                self._set(Link.DOWN, f"broker unreachable: {exc}" if isinstance(exc, UnreachableError) else str(exc))
                self._give_up(self.reason)
                self.stop.wait(RECONNECT_PAUSE)
        self._finish()

    def _new_publisher(self) -> StreamPublisher:
        publisher = self._make()
        publisher.on_confirmed, publisher.on_unrouted = self._confirmed, self._unrouted
        return publisher

    def _turn(self, publisher: StreamPublisher) -> None:
        if publisher.blocked:
            if self.link is not Link.BLOCKED:
                self._set(Link.BLOCKED, "broker blocked publishing: memory or disk alarm")
            for ticket in publisher.unconfirmed():  # they may still arrive once unblocked: 503 says "not confirmed"
                ticket.refuse(self.reason)
        elif self.link is not Link.UP:
            self._set(Link.UP, "")
        while self._inbox:
            ticket = self._inbox.popleft()
            message = ticket.message
            if message is None or ticket.done:
                continue  # its request gave up already
            if self.link is Link.BLOCKED:
                ticket.refuse(self.reason)
                continue
            try:
                publisher.publish(message.body(), message.properties(), ticket)
            except BaseException:
                self._inbox.appendleft(ticket)  # answered with the others by whoever handles the error
                raise
        publisher.idle(PICKUP)

    def _set(self, link: Link, reason: str) -> None:
        if link is not self.link:
            LOGGER.info("http front: broker link %s%s", link.value, f" ({reason})" if reason else "")
        self.reason, self.link = reason, link

    def _confirmed(self, ticket: Ticket) -> None:
        if ticket.remembered is not None:
            ticket.remembered.accepted = True  # a retry with its key is answered 202, not published again
        if ticket.settle(202, {"id": ticket.id, "seq": ticket.seq}):
            LOGGER.info(SENT_VIA_HTTP_LINE, ticket.seq, ticket.id, ticket.size)
        else:  # the broker has it all the same: a "sent" line, as for every confirmed message
            LOGGER.info(SENT_VIA_HTTP_LINE + ", after its request was answered 503", ticket.seq, ticket.id, ticket.size)

    def _unrouted(self, ticket: Ticket) -> None:
        ticket.settle(503, {"error": f"no queue is bound to {self.route.describe}; retry later"})

    def _give_up(self, reason: str) -> None:
        """Answer 503 to everything handed over, and drop the publisher with what it holds."""
        publisher, self.publisher = self.publisher, None
        if publisher is not None:
            for ticket in publisher.unconfirmed():
                ticket.refuse(reason)
            publisher.close()
        while self._inbox:
            self._inbox.popleft().refuse(reason)

    def _finish(self) -> None:
        """After a stop: wait STOP_GRACE seconds at most for the confirms in flight, answer the rest 503."""
        publisher = self.publisher
        if publisher is not None:
            try:
                publisher.flush(grace=STOP_GRACE)
            except (Stopped, FatalError):
                pass
        self._give_up(f"stopping ({self.stop.reason})" if self.fatal is None else f"the broker refused: {self.fatal}")


class Remembered:
    """What one Idempotency-Key made: the body's digest, the message's seq, and whether the broker has it."""

    __slots__ = ("digest", "seq", "accepted", "ticket")

    def __init__(self, digest: bytes, seq: int) -> None:
        self.digest, self.seq = digest, seq
        self.accepted = False
        self.ticket: Ticket | None = None  # while its message is on its way


def digest(payload: str) -> bytes:
    return hashlib.blake2b(payload.encode(), digest_size=16).digest()


def check_key(value: str) -> str | None:
    """Why an Idempotency-Key is not acceptable, or None."""
    if not 1 <= len(value) <= KEY_MAX or not all("!" <= char <= "~" for char in value):
        return f"Idempotency-Key must be 1 to {KEY_MAX} printable ASCII characters without spaces"
    return None


class MessageServer(ThreadingHTTPServer):
    """The HTTP server: stamps messages, remembers idempotency keys, hands messages to the dispatcher."""

    daemon_threads = True
    #: Connections the kernel holds until accepted (socketserver's 5 reset clients arriving together).
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], dispatcher: Dispatcher, max_size: int) -> None:
        super().__init__(address, RequestHandler)
        self.dispatcher = dispatcher
        self.max_size = max_size
        self.stamp = Stamper()
        self.keys: BoundedMap[Remembered] = BoundedMap(KEYS_REMEMBERED)
        self.keys_lock = threading.Lock()  # held for dictionary work only, never across a broker wait

    def publish(self, payload: str, key: str | None = None) -> Answer:
        """Publish one payload (once per key); return (HTTP status, JSON answer) when it is settled."""
        if key is None:
            return self.dispatcher.submit(Ticket(self.stamp(payload), time.monotonic() + CONFIRM_DEADLINE)).wait()
        body_digest = digest(payload)
        with self.keys_lock:
            known = self.keys.get(key)
            if known is None:
                message = dataclasses.replace(self.stamp(payload), id=key)
                known = Remembered(body_digest, message.seq)
                self.keys.add(key, known)
            elif known.digest != body_digest:
                return 409, {"error": f"Idempotency-Key {key} was already used for a different body"}
            else:
                message = Message.new(known.seq, self.stamp.host, payload)  # a retry keeps id and seq
                message = dataclasses.replace(message, id=key)
            if known.accepted:
                return 202, {"id": key, "seq": known.seq}
            ticket = known.ticket
            if ticket is None or ticket.done:  # new, or answered 503: (again) to the broker
                ticket = Ticket(message, time.monotonic() + CONFIRM_DEADLINE)
                ticket.remembered = known
                known.ticket = ticket
                self.dispatcher.submit(ticket)
        return ticket.wait()


class RequestHandler(BaseHTTPRequestHandler):
    """POST /messages; everything else is 404."""

    server: MessageServer
    protocol_version = "HTTP/1.1"
    #: Seconds a client may take to send a request line, headers or body: a stalled client is disconnected.
    timeout = 10

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        if self.path.rstrip("/") != "/messages":
            self._answer(404, {"error": "POST JSON to /messages"})
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._answer(400, {"error": "Content-Length required"})
            return
        if length < 0:
            self.close_connection = True  # the body is not read: the connection cannot carry another request
            self._answer(400, {"error": f"invalid Content-Length {length}"})
            return
        if length > self.server.max_size:
            self.close_connection = True
            self._answer(400, {"error": f"body of {length} bytes exceeds the {self.server.max_size}-byte limit"})
            return
        raw = self.rfile.read(length)
        keys = self.headers.get_all("Idempotency-Key") or []
        if len(keys) > 1 or (keys and check_key(keys[0])):
            self._answer(400, {"error": check_key(keys[0]) or "one Idempotency-Key header at most"})
            return
        try:
            body = json.loads(raw)
        except ValueError as exc:
            self._answer(400, {"error": f"malformed JSON: {exc}"})
            return
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        self._answer(*self.server.publish(payload, keys[0] if keys else None))

    def do_GET(self) -> None:  # noqa: N802
        self._answer(404, {"error": "POST JSON to /messages"})

    def _answer(self, status: int, answer: dict) -> None:
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's signature
        # The request line is the client's text: escaped, it can neither forge a log line nor reach a terminal.
        LOGGER.info("http %s %s", self.address_string(), printable(format % args, 300))


def serve(make_publisher: Callable[[], StreamPublisher], address: tuple[str, int],
          max_size: int = 1024 * 1024) -> None:
    """Serve until the publisher's stop flag is set; the calling thread owns the publisher.

    `make_publisher` builds a publisher (again after the broker was unreachable: the old one's
    unconfirmed messages were answered 503 and are dropped with it). Raises the FatalError of
    refused credentials or permissions or a failed TLS handshake (exit 3 or 7) instead of
    answering 503 for ever.
    """
    dispatcher = Dispatcher(make_publisher)
    server = MessageServer(address, dispatcher, max_size)
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    LOGGER.info("accepting POST http://%s:%d/messages", *server.server_address[:2])
    try:
        dispatcher.run()
    finally:
        server.shutdown()
        server.server_close()
        LOGGER.info("http producer stopped")
    if dispatcher.fatal is not None:
        raise dispatcher.fatal
