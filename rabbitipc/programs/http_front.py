"""An HTTP front for the sender: web apps POST work, the broker keeps it (seed: Flask producer).

`POST /messages` with a JSON body publishes it as one message (the JSON text is the payload)
with a publisher confirm, then answers 202 with the message id: the work is safely queued.
503 with a reason while the broker cannot take it (unreachable, or blocking publishers under a
memory or disk alarm): at once when the link is known to be down or blocked, else when no
confirm came within CONFIRM_DEADLINE seconds. A 503 means "not confirmed": the message may
still arrive (it was on its way when the broker stopped answering), so a client that retries
should send an `Idempotency-Key`. 400 for malformed JSON or a bad key, 413 for a body over the
size limit; 404 elsewhere.

`Idempotency-Key: K` (1 to 200 printable ASCII characters, no spaces) makes K the message id,
and the payload's SHA-256 goes with it (names.BODY_DIGEST_HEADER). A retry with the same key
and the same body answers 202 with the same id and seq and publishes nothing new once the first
was confirmed, even late, after its request got 503 (else it is published again with the same
id: receivers drop a duplicate by id); the same key with another body gets 409. The last
KEYS_REMEMBERED (10,000) keys are remembered, in memory, per process (bodies are not kept, only
their digest); an older key, or one sent to another replica or before a restart, counts as new:
receivers drop a same-digest copy by id within their --dedupe-window and dead-letter one with
another digest as a key conflict.

HTTP is waitress's (a WSGI server in pure Python): its parser frames every request (chunked
bodies decoded, Transfer-Encoding winning over Content-Length, bodies read whole even when the
answer is 404), bounds bodies and idle clients, and its threads run Front, one request each.
One thread owns the publisher (serve's caller): it connects, turns the I/O loop (heartbeats,
confirms) and publishes what request threads hand over (rabbitipc.owned); concurrent requests
share its confirm window. Request threads never touch the connection and hold no lock across a
broker wait.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from http import HTTPStatus

import waitress

from ..bounded import BoundedMap
from ..errors import EXIT_AUTH, EXIT_TLS, EXIT_USAGE, FatalError, Stopped, UndeliverableError, UnreachableError
from ..loglines import SENT_VIA_HTTP_LINE
from ..message import Message, Stamper, payload_digest, printable
from ..owned import Full, Owned
from ..publish.engine import StreamPublisher

LOGGER = logging.getLogger(__name__)
#: Seconds a request waits for the broker's confirm before it is answered 503.
CONFIRM_DEADLINE = 5.0
#: Requests handed over and not yet published, at most; beyond, 503 at once.
MAX_WAITING = 1000
#: Idempotency keys remembered (each under 500 bytes: the key, a body digest, the seq, a flag;
#: tracemalloc: 4.8 MB for 10,000 keys of 200 characters).
KEYS_REMEMBERED = 10_000
#: The longest Idempotency-Key (an AMQP message_id holds 255 bytes).
KEY_MAX = 200
#: How often the publisher thread picks up new requests while it waits for confirms.
PICKUP = 0.05
#: Seconds between connection attempts once the broker was found unreachable (503 at once meanwhile).
RECONNECT_PAUSE = 2.0
#: After a stop request, how long confirms of what is in flight are still awaited.
STOP_GRACE = 5.0
#: Requests served at once (waitress's threads): each waits for its confirm, CONFIRM_DEADLINE at most.
THREADS = 32
#: Seconds a connection may stay silent (half a request, or idle between requests) before it is closed.
CLIENT_TIMEOUT = 10

Answer = tuple[int, dict]


class BrokerState(enum.Enum):
    """What the publisher thread knows of the broker, read by request threads to answer 503 at once."""

    CONNECTING = "connecting"
    UP = "up"
    BLOCKED = "blocked"
    DOWN = "down"


class Ticket:
    """One message handed to the publisher thread, and the answer its request waits for.

    The first settle() wins: a confirm after the request gave up (503) changes nothing.
    """

    def __init__(self, message: Message, deadline: float, digest: str | None = None) -> None:
        self.message: Message | None = message  # dropped once settled: remembered keys keep no bodies
        self.id, self.seq, self.size = message.id, message.seq, len(message.payload)
        self.deadline = deadline
        self.digest = digest  # payload_digest() of a keyed message: receivers tell a retry from a conflict
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

    def refuse_if_dropped(self, handed_over: Future) -> None:
        """The publisher thread dropped this ticket unpublished (PublisherThread._give_up): 503 with the reason."""
        error = handed_over.exception()
        if error is not None:
            self.refuse(str(error))

    def wait(self) -> Answer:
        if not self._done.wait(max(0.0, self.deadline - time.monotonic())):
            self.refuse(f"no confirm within {CONFIRM_DEADLINE:.0f}s")
        assert self.answer is not None
        return self.answer


class PublisherThread:
    """The publisher thread's side: owns the publisher; request threads submit() and wait on the ticket."""

    def __init__(self, make_publisher: Callable[[], StreamPublisher]) -> None:
        self._make = make_publisher
        self.publisher: StreamPublisher | None = self._new_publisher()
        self.stop = self.publisher.stop
        self.route = self.publisher.route
        self.link, self.reason = BrokerState.CONNECTING, ""
        # Tickets handed over by request threads, published by the publisher thread.
        self._inbox = Owned("http-publisher", wake=self._wake, limit=MAX_WAITING)
        #: A refusal retrying cannot fix (credentials, permissions, TLS): serve() stops and raises it.
        self.fatal: FatalError | None = None

    # -- request threads ---------------------------------------------------------------
    def submit(self, ticket: Ticket) -> Ticket:
        """Hand a message over; never waits. The ticket is settled (503) at once when the link is down."""
        if self.stop.is_set():
            ticket.refuse(f"stopping ({self.stop.reason})" if self.fatal is None else str(self.fatal))
        elif self.link in (BrokerState.DOWN, BrokerState.BLOCKED):
            ticket.refuse(self.reason)
        else:
            try:
                self._inbox.submit(lambda: self._publish(ticket)).add_done_callback(ticket.refuse_if_dropped)
            except Full:
                ticket.refuse(f"{MAX_WAITING} requests already waiting")
        return ticket

    def _wake(self) -> None:
        publisher = self.publisher
        if publisher is not None:
            publisher.wake()  # published now, not at the end of the publisher thread's pause

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
                self._set(BrokerState.DOWN,
                          f"broker unreachable: {exc}" if isinstance(exc, UnreachableError) else str(exc))
                self._give_up(self.reason)
                self.stop.wait(RECONNECT_PAUSE)
        self._finish()

    def _new_publisher(self) -> StreamPublisher:
        publisher = self._make()
        publisher.on_confirmed, publisher.on_unrouted = self._confirmed, self._unrouted
        return publisher

    def _turn(self, publisher: StreamPublisher) -> None:
        if publisher.blocked:
            if self.link is not BrokerState.BLOCKED:
                self._set(BrokerState.BLOCKED, "broker blocked publishing: memory or disk alarm")
            for ticket in publisher.unconfirmed():  # they may still arrive once unblocked: 503 says "not confirmed"
                ticket.refuse(self.reason)
        elif self.link is not BrokerState.UP:
            self._set(BrokerState.UP, "")
        self._inbox.run_pending()  # an error leaves its ticket handed over: answered by whoever handles it
        publisher.idle(PICKUP)

    def _publish(self, ticket: Ticket) -> None:
        """Publish one ticket's message (on the publisher thread)."""
        message = ticket.message
        if message is None or ticket.done:
            return  # its request gave up already
        if self.link is BrokerState.BLOCKED:
            ticket.refuse(self.reason)
            return
        self.publisher.publish(message.body(), message.properties(body_digest=ticket.digest), ticket)

    def _set(self, link: BrokerState, reason: str) -> None:
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
        self._inbox.drain(reason)  # each ticket's refuse_if_dropped answers 503 with the reason

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


def check_key(value: str) -> str | None:
    """Why an Idempotency-Key is not acceptable, or None."""
    if not 1 <= len(value) <= KEY_MAX or not all("!" <= char <= "~" for char in value):
        return f"Idempotency-Key must be 1 to {KEY_MAX} printable ASCII characters without spaces"
    return None


class Front:
    """The WSGI application: stamps messages, remembers idempotency keys, hands messages to the publisher thread.

    Called by the server's threads, one request each; the server has read and bounded the body.
    """

    def __init__(self, publishing: PublisherThread) -> None:
        self.publishing = publishing
        self.stamp = Stamper()
        self.keys: BoundedMap[Remembered] = BoundedMap(KEYS_REMEMBERED)
        self.keys_lock = threading.Lock()  # held for dictionary work only, never across a broker wait

    def __call__(self, environ: dict, start_response: Callable) -> list[bytes]:
        status, answer = self.answer(environ)
        data = json.dumps(answer).encode()
        start_response(f"{status} {HTTPStatus(status).phrase}",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        # The path is the client's text: escaped, it can neither forge a log line nor reach a terminal.
        LOGGER.info("http %s %s", environ.get("REMOTE_ADDR", "-"),
                    printable(f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')} {status}", 300))
        return [data]

    def answer(self, environ: dict) -> Answer:
        """(HTTP status, JSON answer) for one request."""
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO", "").rstrip("/") != "/messages":
            return 404, {"error": "POST JSON to /messages"}
        length = int(environ.get("CONTENT_LENGTH") or 0)  # checked by the server's parser (chunked: decoded)
        raw = environ["wsgi.input"].read(length) if length else b""
        key = environ.get("HTTP_IDEMPOTENCY_KEY")  # the server joins repeated headers with ", ": refused below
        if key is not None and check_key(key):
            return 400, {"error": check_key(key)}
        try:
            payload = json.dumps(json.loads(raw), ensure_ascii=False, separators=(",", ":"))
        except ValueError as exc:
            return 400, {"error": f"malformed JSON: {exc}"}
        except RecursionError:
            return 400, {"error": "malformed JSON: nested too deep"}
        return self.publish(payload, key)

    def publish(self, payload: str, key: str | None = None) -> Answer:
        """Publish one payload (once per key); return (HTTP status, JSON answer) when it is settled."""
        if key is None:
            return self.publishing.submit(Ticket(self.stamp(payload), time.monotonic() + CONFIRM_DEADLINE)).wait()
        body_digest = payload_digest(payload)
        with self.keys_lock:
            known = self.keys.get(key)
            if known is None:
                message = dataclasses.replace(self.stamp(payload), id=key)
                known = Remembered(bytes.fromhex(body_digest), message.seq)
                self.keys.add(key, known)
            elif known.digest != bytes.fromhex(body_digest):
                return 409, {"error": f"Idempotency-Key {key} was already used for a different body"}
            else:
                message = Message.new(known.seq, self.stamp.host, payload)  # a retry keeps id and seq
                message = dataclasses.replace(message, id=key)
            if known.accepted:
                return 202, {"id": key, "seq": known.seq}
            ticket = known.ticket
            if ticket is None or ticket.done:  # new, or answered 503: (again) to the broker
                ticket = Ticket(message, time.monotonic() + CONFIRM_DEADLINE, body_digest)
                ticket.remembered = known
                known.ticket = ticket
                self.publishing.submit(ticket)
        return ticket.wait()


def serve(make_publisher: Callable[[], StreamPublisher], address: tuple[str, int],
          max_size: int = 1024 * 1024) -> None:
    """Serve until the publisher's stop flag is set; the calling thread owns the publisher.

    `make_publisher` builds a publisher (again after the broker was unreachable: the old one's
    unconfirmed messages were answered 503 and are dropped with it). Raises the FatalError of
    refused credentials or permissions or a failed TLS handshake (exit 3 or 7) instead of
    answering 503 for ever, and of an address it cannot listen on (exit 2).
    """
    publishing = PublisherThread(make_publisher)
    channels: dict = {}  # every socket of the server: its loop runs while one is open
    try:
        server = waitress.create_server(Front(publishing), map=channels, host=address[0], port=address[1],
                                        **server_settings(max_size))
    except OSError as exc:
        raise FatalError(f"--http {address[0]}:{address[1]}: {exc.strerror or exc}", EXIT_USAGE) from None
    thread = threading.Thread(target=server.run, name="http", daemon=True)
    thread.start()
    LOGGER.info("accepting POST http://%s:%s/messages", server.effective_host, server.effective_port)
    try:
        publishing.run()
    finally:
        # Every ticket is settled now: the server's threads write their answers and end, then its loop closes all.
        server.task_dispatcher.shutdown(timeout=STOP_GRACE)
        try:
            server.trigger.pull_trigger(lambda: [channel.close() for channel in list(channels.values())])
        except OSError:  # the server's loop has ended and closed its trigger already: nothing left to close
            pass
        thread.join(STOP_GRACE)
        LOGGER.info("http producer stopped")
    if publishing.fatal is not None:
        raise publishing.fatal


def server_settings(max_size: int) -> dict:
    """waitress's settings: bounded bodies and waits, quiet on client resets."""
    return {
        "threads": THREADS,
        "max_request_body_size": max_size + 1,  # refused (413) from max_size + 1 bytes on: waitress counts >=
        "channel_timeout": CLIENT_TIMEOUT,
        "cleanup_interval": 1,  # how often idle connections are looked for: a stalled one goes within 11 s
        "asyncore_use_poll": True,  # poll(), not select(): no limit at file descriptor 1024
        "log_socket_errors": False,  # a client that resets its connection is not an event worth a traceback
        "ident": "rabbitipc",
    }
