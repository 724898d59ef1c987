"""Request/reply (the tutorials' sixth pattern): call(payload, timeout=...) returns the responder's reply.

    with RpcClient(queue="rpc_queue") as client:
        print(client.call("30", timeout=5))    # "832040" from the tutorial's rpc_server.py

A request goes to the queue through the default exchange with reply_to set to RabbitMQ's
direct reply-to (`amq.rabbitmq.reply-to`: no reply queue to declare or clean up) and a fresh
correlation_id; the reply carrying that id is the result. One connection serves any number of
threads calling at once: pika connections are not thread-safe, so one I/O thread owns it and
callers only hand it requests (rabbitipc.owned) and wait for their own reply. A caller that
finds the connection free (one caller at a time: the usual case) takes it instead: it publishes
its request and turns the loop itself until its reply is in, without a hand-over to the I/O
thread and back (two thread switches, about 0.15 ms per call on 2 cores). The
I/O thread stands by meanwhile, and takes the connection back for calls the caller left waiting,
a lost link, or when no call came for STAND_BY seconds (heartbeats). Confirms are
streamed (the publisher's link, rabbitipc.publish.link): a request goes out at once, whatever
number of earlier ones still wait for their confirm, so concurrent callers do not queue behind
each other's round trips.

Requests are persistent, confirmed and mandatory (no queue of that name: an error at once,
not a silent wait), and expire when their caller stops waiting, so a responder that starts
later does not work on calls nobody waits for. If the connection drops, calls still waiting
are published again after reconnecting (at least once, as everywhere in rabbitipc): the
responder may see a request twice, with the same message_id.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions as px

from . import defaults
from .backoff import RetryPolicy
from .connection import RECONNECT, Broker, connect, describe
from .errors import FatalError, Stopped
from .owned import Closed, Owned
from .publish.link import TURN, LinkLost, PublishLink
from .shutdown import StopFlag

LOGGER = logging.getLogger(__name__)

#: RabbitMQ's pseudo-queue for direct reply-to.
REPLY_TO = "amq.rabbitmq.reply-to"
#: The queue the tutorial's rpc_server.py serves.
DEFAULT_QUEUE = defaults.RPC_QUEUE
#: A reply carrying this header reports the responder's failure (its value says what failed).
ERROR_HEADER = "x-rabbitipc-error"
#: How long the I/O thread leaves the connection to callers after the last one used it.
STAND_BY = 0.05


class RpcError(Exception):
    """A call that cannot get a reply: no such queue, refused by the broker, client closed."""


class RpcTimeout(RpcError, TimeoutError):
    """No reply came within the call's timeout."""


class RemoteError(RpcError):
    """The responder could not handle the request and said so (reply header x-rabbitipc-error)."""


@dataclass
class _Call:
    correlation_id: str
    body: bytes
    properties: pika.BasicProperties
    done: threading.Event
    reply: bytes | None = None
    error: BaseException | None = None


def encode(payload: Any) -> tuple[bytes, str]:
    """Body and content type: text as UTF-8 (the tutorials send numbers as text), bytes as they are, else JSON."""
    if isinstance(payload, bytes):
        return payload, "application/octet-stream"
    if isinstance(payload, str):
        return payload.encode(), "text/plain"
    return json.dumps(payload).encode(), "application/json"


class RpcClient:
    """Calls a responder's queue and waits for the reply; safe to use from many threads at once."""

    def __init__(
        self,
        url: Broker | str | None = None,
        queue: str = DEFAULT_QUEUE,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        connection_name: str = "rabbitipc-rpc-client",
        ca_file: str | None = None,
    ) -> None:
        self.broker = Broker.of(url, ca_file, retry)  # a Broker, or a URL (None: AMQP_URL, else localhost)
        self.url = self.broker.url
        self.queue = queue
        self.timeout = timeout
        self.connection_name = connection_name
        self._lock = threading.Lock()
        self._pending: dict[str, _Call] = {}
        self._stop = StopFlag()
        self._link = PublishLink(after_turn=_nothing)
        self._sent: dict[int, _Call] = {}  # delivery tag -> request, until the broker confirms it (I/O thread)
        self._tag = 0  # the last delivery tag on the current channel
        self._failure: BaseException | None = None
        self._ready = threading.Event()
        # Who may use the connection: the I/O thread, or a caller taking it (_lead); _serving: it is up.
        self._io = threading.Lock()
        self._serving = False
        self._standby = threading.Condition()  # the I/O thread standing by waits on it
        self._callers_at = 0.0  # when a caller last used, or wanted, the connection (monotonic)
        # Requests handed to the I/O thread, which owns the connection; the wake-up ends its loop's wait.
        self._owner = Owned("rabbitipc-rpc", wake=self._wake)
        self._owner.start(self._run)
        self._ready.wait()  # connected, or failed for good (wrong credentials, unreachable)
        if self._failure is not None:
            raise self._failure

    # -- callers' side -----------------------------------------------------------------
    def call(self, payload: Any, timeout: float | None = None) -> str:
        """Send payload and return the reply body as text.

        Raises RpcTimeout when no reply comes within timeout seconds (default: the client's),
        RemoteError when the responder replied that it failed, RpcError when the queue does
        not exist or the broker refuses the request, and the
        connection's FatalError (AuthError, UnreachableError) when the broker is gone for good.
        """
        timeout = self.timeout if timeout is None else timeout
        body, content_type = encode(payload)
        correlation_id = uuid.uuid4().hex
        properties = pika.BasicProperties(
            reply_to=REPLY_TO, correlation_id=correlation_id, message_id=correlation_id,
            content_type=content_type, delivery_mode=pika.DeliveryMode.Persistent,
            expiration=str(max(1, int(timeout * 1000))),
        )
        call = _Call(correlation_id, body, properties, threading.Event())
        with self._lock:
            if self._failure is not None:
                raise self._failure
            if self._stop.is_set():
                raise RpcError("the RPC client is closed")
            self._pending[correlation_id] = call
        deadline = time.monotonic() + timeout
        try:
            if not self._lead(call, deadline):
                self._owner.submit(lambda: self._publish(call))
            answered = call.done.wait(max(0.0, deadline - time.monotonic()))
        except Closed:  # close() came in between
            with self._lock:
                self._pending.pop(correlation_id, None)
            raise RpcError("the RPC client is closed") from None
        except BaseException:  # a Ctrl-C: the call is abandoned, never sent again after a reconnect
            with self._lock:
                self._pending.pop(correlation_id, None)
                call.done.set()
            raise
        if not answered:
            with self._lock:
                self._pending.pop(correlation_id, None)
                if call.reply is None and call.error is None:
                    call.done.set()  # not sent yet? then it never will be
                    raise RpcTimeout(f"no reply from queue {self.queue!r} within {timeout:g}s "
                                     f"(correlation_id {correlation_id}): is a responder consuming it?")
        if call.error is not None:
            raise call.error
        return call.reply.decode("utf-8", errors="replace")

    def _lead(self, call: _Call, deadline: float) -> bool:
        """Publish the call and turn the loop on this thread until its reply is in (or the deadline, a stop, a lost
        link): True once published here. False, unpublished, when the connection is busy or down."""
        if deadline <= time.monotonic():
            return False  # handed over instead, and never sent: its caller has given up by then
        if not self._io.acquire(blocking=False):
            self._callers_at = time.monotonic()  # the I/O thread stands by after its turn: the next call leads
            return False
        published = False
        try:
            if not self._serving or self._link.lost is not None or self._stop.is_set():
                return False
            self._publish(call)
            published = True
            while not call.done.is_set() and self._link.lost is None and not self._stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._owner.run_pending()  # requests other callers handed over meanwhile
                self._link.turn(min(TURN, remaining))
        except (LinkLost, *RECONNECT, px.AMQPError):  # a lost link, a refused publish: the I/O thread deals with it
            LOGGER.debug("a caller gave the connection back to the I/O thread", exc_info=True)
        except Exception:  # noqa: BLE001 - a bug; the I/O thread goes on with the connection, the call may time out
            LOGGER.exception("unexpected error while a caller turned the RPC connection")
        except BaseException:
            # A Ctrl-C (the calling thread may be the main one) may have stopped pika's loop halfway through
            # a frame: the connection is not to be trusted; the I/O thread opens a new one.
            self._link.lost = self._link.lost or LinkLost("a caller was interrupted while turning the connection")
            raise
        finally:
            self._callers_at = time.monotonic()
            self._io.release()
            with self._standby:
                self._standby.notify_all()
        return published

    def _wake(self) -> None:
        """Work handed over (any thread): end the I/O thread's wait, in its loop's turn or standing by."""
        self._link.wake()
        with self._standby:
            self._standby.notify_all()

    def close(self) -> None:
        """Stop the I/O thread and close the connection; calls still waiting raise RpcError."""
        self._stop.set("RpcClient.close()")
        self._owner.close()  # wakes the I/O thread
        self._owner.join(10)

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    # -- the I/O thread ----------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._serve_one_connection()
                except (LinkLost, *RECONNECT) as exc:
                    LOGGER.warning("RPC connection lost (%s); reconnecting, waiting calls are sent again",
                                   describe(exc))
                    self._resend_waiting()
                except px.ChannelClosedByBroker as exc:
                    LOGGER.warning("the broker closed the RPC channel (%s); reconnecting", exc.reply_text)
                    self._fail_waiting(RpcError(f"the broker closed the channel: {exc.reply_text}"))
                    self._stop.wait(1)
                finally:  # without self._io: callers see _serving False (set before its release) and stay out
                    self._sent.clear()
                    self._link.take_lost()
                    self._link.drop()
        except Stopped:
            pass
        except FatalError as exc:
            self._failure = exc
        except Exception as exc:  # noqa: BLE001 - a bug: say so to every caller instead of hanging them
            LOGGER.exception("RPC I/O thread failed")
            self._failure = RpcError(f"the RPC client failed: {exc.__class__.__name__}: {exc}")
        finally:
            self._ready.set()
            self._fail_waiting(self._failure or RpcError("the RPC client was closed while waiting for a reply"))

    def _serve_one_connection(self) -> None:
        self._io.acquire()
        try:
            self._serve_holding_the_connection()
        finally:
            self._serving = False
            self._io.release()

    def _serve_holding_the_connection(self) -> None:
        link = self._link
        link.attach(connect(self.broker, self.connection_name, self._stop, opener=link.open))
        self._tag = 0
        link.open_confirm_channel(self._on_confirm, self._on_return)
        # Direct reply-to: consume the pseudo-queue (no-ack mode) before publishing on this channel.
        consuming: list = []
        link.channel.basic_consume(REPLY_TO, self._on_reply, auto_ack=True, callback=consuming.append)
        link.wait(lambda: consuming, "basic.consume")
        self._serving = True
        self._ready.set()
        while not self._stop.is_set():
            self._raise_if_lost()
            try:
                self._owner.run_pending()  # the request that failed stays first; the others wait
            except RECONNECT:
                self._raise_if_lost()
                raise
            link.turn(TURN)  # sends what was published, reads confirms and replies
            if time.monotonic() - self._callers_at < STAND_BY:
                self._io.release()
                try:
                    self._stand_by()
                finally:
                    self._io.acquire()

    def _stand_by(self) -> None:
        """Leave the connection to callers (_lead) until one leaves work undone (a request handed over, a call
        waiting for its reply), the link is lost, a stop, or no caller came for STAND_BY seconds."""
        with self._standby:
            while not self._stop.is_set() and self._link.lost is None:
                if not self._io.locked():  # no caller has it now
                    with self._lock:
                        waiting = bool(self._pending)
                    if waiting or len(self._owner) or time.monotonic() - self._callers_at >= STAND_BY:
                        return
                self._standby.wait(STAND_BY)

    def _raise_if_lost(self) -> None:
        lost = self._link.lost
        if isinstance(lost, px.ChannelClosedByBroker):
            raise lost
        if lost is not None:
            raise LinkLost(describe(lost))

    def _publish(self, call: _Call) -> None:
        """Publish one request (on the I/O thread); its confirm, or its return, comes later."""
        if call.done.is_set():
            return  # its caller gave up already
        self._link.publish("", self.queue, call.body, call.properties)
        self._tag += 1
        self._sent[self._tag] = call

    def _on_confirm(self, frame: Any) -> None:
        """A confirm (ack or nack, maybe of every tag up to this one): a nacked request fails at once."""
        method = frame.method
        nacked = isinstance(method, pika.spec.Basic.Nack)
        sent, tag = self._sent, method.delivery_tag
        confirmed = [t for t in sent if t <= tag] if method.multiple else [tag]
        for each in confirmed:
            call = sent.pop(each, None)
            if nacked and call is not None:
                self._finish(call, error=RpcError(f"the broker refused the request to queue {self.queue!r}"))

    def _on_return(self, _channel: Any, _method: Any, properties: pika.BasicProperties, _body: bytes) -> None:
        """No queue took the request (mandatory): its caller learns it at once."""
        with self._lock:
            call = self._pending.get(properties.correlation_id or "")
        if call is not None:
            self._finish(call, error=RpcError(f"no queue {self.queue!r} on the broker: is a responder running?"))

    def _on_reply(self, _channel, _method, properties, body: bytes) -> None:
        with self._lock:
            call = self._pending.pop(properties.correlation_id or "", None)
            if call is None:
                LOGGER.debug("reply for correlation_id %s nobody waits for; dropped", properties.correlation_id)
                return
            error = (properties.headers or {}).get(ERROR_HEADER)
            if error is not None:
                text = error.decode(errors="replace") if isinstance(error, bytes) else str(error)
                call.error = RemoteError(f"the responder on queue {self.queue!r} failed: {text}")
            call.reply = body
            call.done.set()

    def _finish(self, call: _Call, error: BaseException) -> None:
        with self._lock:
            if call.done.is_set():
                return  # answered, or its caller gave up: that stands
            self._pending.pop(call.correlation_id, None)
            call.error = error
            call.done.set()

    def _resend_waiting(self) -> None:
        """After a lost connection, replies to calls already sent cannot arrive: send them again."""
        # Drained first: a call handed over meanwhile is then in the copy below (sent twice at worst, as
        # at-least-once allows), never dropped by the drain without being in it.
        self._owner.drain("sent again after reconnecting")  # the handed-over calls are all waiting ones
        with self._lock:
            waiting = [call for call in self._pending.values() if not call.done.is_set()]
        try:
            for call in waiting:
                self._owner.submit(lambda call=call: self._publish(call), wake=False)  # the next connection sends them
        except Closed:
            pass  # closing: the calls still waiting are failed as the I/O thread ends

    def _fail_waiting(self, error: BaseException) -> None:
        with self._lock:
            waiting, self._pending = list(self._pending.values()), {}
            for call in waiting:
                call.error = error
                call.done.set()


def _nothing() -> None:
    """The link's after-turn hook: the RPC client has nothing to do between turns."""


def call(payload: Any, *, url: str | None = None, queue: str = DEFAULT_QUEUE, timeout: float = 30.0) -> str:
    """One call on a connection of its own; for many calls, keep an RpcClient."""
    with RpcClient(url, queue, timeout=timeout) as client:
        return client.call(payload, timeout)
