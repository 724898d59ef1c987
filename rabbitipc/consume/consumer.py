"""Consuming with manual acks: a message is acked only after it was handled.

Settings from the RabbitMQ work-queue tutorial (durable queue, prefetch, ack after work),
plus what the tutorial leaves out: reconnect after a broker restart, a dead-letter queue
with the reason for anything that cannot be handled, duplicates (same id) skipped within
a bounded window, and a clean stop on SIGTERM that finishes the message in hand. Handlers
run on a worker thread (dispatch.py) so slow work never starves the connection's heartbeats.
"""

from __future__ import annotations

import json
import logging
import socket
import time
import uuid
from dataclasses import dataclass

import pika
import pika.exceptions as px

from .. import control
from ..connection import RECONNECT, Retry, connect
from ..errors import AuthError, Stopped
from ..health import Health
from ..loglines import LineBudget
from ..message import Message, NotOurMessage, describe_body, printable
from ..shutdown import StopFlag
from ..topology import DEAD_EXCHANGE, Route, Subscription
from .dedupe import RecentIds
from .dispatch import Dispatcher
from .handlers import Delivery, Handler
from .latency import Latencies
from .sinks import JsonlSink

LOGGER = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What the worker decided for one message; the I/O thread carries it out."""

    action: str  # "ack", "dead", "duplicate" or "poison"
    delivery: Delivery | None = None
    result: object = None
    reason: str = ""
    note: str = ""


REASON_HEADER = "x-rabbitipc-reason"
QUEUE_HEADER = "x-rabbitipc-queue"


class Consumer:
    """Consumes one queue until stopped, surviving broker restarts."""

    def __init__(
        self,
        url: str,
        subscription: Subscription,
        handler: Handler | None = None,
        *,
        prefetch: int = 250,
        max_size: int = 1024 * 1024,
        strict: bool = False,
        dedupe_window: int = 10000,
        retry: Retry | None = None,
        stop: StopFlag | None = None,
        connection_name: str = "rabbitipc-receiver",
        health: Health | None = None,
        forward_to: Route | None = None,
        sink: JsonlSink | None = None,
        poison_pill: str | None = None,
        listen_for_control: bool = True,
        finish_timeout: float = 25.0,
        ca_file: str | None = None,
        count: int | None = None,
        log_rate: float = 100,
    ) -> None:
        self.url = url
        self.subscription = subscription
        self.forward_to = forward_to
        self.sink = sink
        self.poison_pill = poison_pill
        self.listen_for_control = listen_for_control
        self.finish_timeout = finish_timeout  # on stop, how long the message in hand may take
        self.ca_file = ca_file
        self.queue = subscription.queue or ""  # the server names exclusive queues at declare time
        self.dead_letter_queue = ""
        self.handler = handler
        self.prefetch = prefetch
        self.max_size = max_size
        self.strict = strict
        self.recent = RecentIds(dedupe_window)
        self.retry = retry or Retry()
        self.stop = stop or StopFlag()
        self.connection_name = connection_name
        self.health = health or Health(None)
        self.count = count
        self.handled = 0
        self.lines = LineBudget(LOGGER, "received", log_rate, detail=self._summary_detail)
        self.latency = Latencies()  # the whole run's; summaries report the part since the last one
        self._latency_mark = Latencies()
        self._first_handled = self._last_handled = 0.0
        # Acks are batched: the highest handled tag is acked with multiple=True every
        # ack_batch messages and whenever pika's loop comes up for air (no more deliveries).
        self.ack_batch = max(1, min(100, prefetch // 4))
        self._ack_channel = None
        self._ack_tag = 0
        self._acks_pending = 0
        self._connection: pika.BlockingConnection | None = None
        self._confirm_channel = None

    # -- lifecycle -------------------------------------------------------------------
    def run(self) -> int:
        """Consume until a stop is requested; return how many messages were handled."""
        try:
            while not self.stop.is_set():
                try:
                    self._consume_once()
                except RECONNECT + (px.ConsumerCancelled,) as exc:
                    LOGGER.warning("connection to the broker lost (%s); reconnecting", exc.__class__.__name__)
                except px.ChannelClosedByBroker as exc:
                    if exc.reply_code == 403:
                        raise AuthError(f"not allowed to consume from {self.queue!r}: {exc.reply_text}") from None
                    LOGGER.warning("channel closed by the broker (%s); reconnecting", exc.reply_text)
                    self.stop.wait(1)
                finally:
                    self._close()
        except Stopped:
            pass
        self.lines.summarise()
        span = self._last_handled - self._first_handled
        LOGGER.info("receiver done: %d messages handled%s%s", self.handled,
                    f"; first to last {span:.3f}s ({(self.handled - 1) / span:.0f} msgs/s), "
                    f"{self.latency.describe()}" if span > 0 else "",
                    f" (stopped by {self.stop.reason})" if self.stop.is_set() else "")
        return self.handled

    def _consume_once(self) -> None:
        self._connection = connect(self.url, self.connection_name, self.retry, self.stop, self.health,
                                   self.ca_file)
        channel = self._connection.channel()
        self.queue, self.dead_letter_queue = self.subscription.declare(channel)
        channel.basic_qos(prefetch_count=self.prefetch)
        self._confirm_channel = self._connection.channel()
        self._confirm_channel.confirm_delivery()
        if self.forward_to is not None:
            self.forward_to.declare(self._confirm_channel)
        if self.listen_for_control:
            # The same channel as the work: pika dispatches one channel's deliveries until none
            # are pending, so a busy work channel would starve a separate control channel.
            control.listen(channel, self.subscription.group, self._on_control)
        self._ack_channel, self._ack_tag, self._acks_pending = channel, 0, 0
        # Handlers and sinks may be slow: they get a worker thread. Without them, deciding is
        # quick and never blocks, so it runs right in the delivery callback (no thread hop).
        dispatcher = None
        on_delivery = self._handle_inline
        if self.handler is not None or self.sink is not None:
            dispatcher = Dispatcher(self._connection, self._decide, self._finish, self.stop.is_set)
            on_delivery = dispatcher.submit
        try:
            tag = channel.basic_consume(self.queue, on_delivery, auto_ack=False)
            LOGGER.info("consuming from queue %s (prefetch %d)", self.queue, self.prefetch)
            while not self.stop.is_set():
                self.health.beat(connected=True)
                self._connection.process_data_events(time_limit=0.2)
                self._flush_acks()  # nothing more to dispatch right now
                self.lines.tick()
            # Finish the message in hand (its ack needs this thread), then hand back the rest.
            deadline = time.monotonic() + self.finish_timeout
            while dispatcher is not None and dispatcher.busy.is_set() and time.monotonic() < deadline:
                self._connection.process_data_events(time_limit=0.1)
            self._flush_acks()
            channel.basic_cancel(tag)
        finally:
            if dispatcher is not None:
                dispatcher.close()

    def _handle_inline(self, channel, method, properties, body: bytes) -> None:
        """The delivery callback when there is no handler thread: decide and finish at once."""
        if self.stop.is_set():
            return  # stopping: left unacked, the broker requeues it when the channel closes
        self._finish(channel, method, properties, body, self._decide(method, properties, body))

    def _ack(self, channel, delivery_tag: int) -> None:
        """Ack a handled message, in a batch: deliveries are finished in order on one channel."""
        self._ack_channel, self._ack_tag = channel, delivery_tag
        self._acks_pending += 1
        if self._acks_pending >= self.ack_batch:
            self._flush_acks()

    def _flush_acks(self) -> None:
        if self._acks_pending:
            self._acks_pending = 0
            self._ack_channel.basic_ack(self._ack_tag, multiple=True)

    def _summary_detail(self) -> str:
        interval = self.latency.since(self._latency_mark)
        self._latency_mark = self.latency.copy()
        return f"; {self.handled} in all, {interval.describe()}"

    def _on_control(self, command: str) -> None:
        """A command from `rabbitipc-ctl` for this receiver's group (only "stop" exists)."""
        LOGGER.info("%s requested through the control exchange; finishing the message in hand", command)
        self.stop.set("control command")

    def _close(self) -> None:
        connection, self._connection, self._confirm_channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - the connection may already be half gone
                LOGGER.debug("ignoring error while closing", exc_info=True)

    # -- per message -----------------------------------------------------------------
    def _decide(self, method, properties, body: bytes) -> Outcome:
        """Worker thread: everything but channel operations (parse, handler, sink)."""
        self.health.beat(connected=True)  # under steady traffic the main loop may not turn for long
        if len(body) > self.max_size:
            return Outcome("dead", reason=f"body of {len(body)} bytes exceeds the {self.max_size}-byte limit")
        try:
            message, error = Message.parse(body), None
        except NotOurMessage as exc:
            message, error = None, str(exc)
        delivery = Delivery(body, properties, method.redelivered, message, error)
        if error and self.strict:
            return Outcome("dead", reason=f"not a rabbitipc message: {error}")
        if self.poison_pill is not None and self._text(delivery) == self.poison_pill:
            return Outcome("poison")
        message_id = delivery.id
        if message_id is not None and message_id in self.recent:
            seq = message.seq if message else "-"
            return Outcome("duplicate", note=f"duplicate seq={seq} id={message_id} already handled; acked again")
        try:
            result = self.handler(delivery) if self.handler is not None else None
        except Exception as exc:  # noqa: BLE001 - any handler failure dead-letters the message
            return Outcome("dead", reason=f"handler failed: {exc.__class__.__name__}: {exc}")
        if self.sink is not None:
            try:
                written = self.sink.write(delivery)
            except OSError as exc:
                return Outcome("dead", reason=f"sink failed: {exc}")
            if not written:
                seq = message.seq if message else "-"
                return Outcome("duplicate", note=f"duplicate seq={seq} id={message_id} already in "
                                                 f"{self.sink.path}; acked again")
        if message_id is not None:
            self.recent.add(message_id)  # handled: a redelivery after a lost ack is a duplicate
        return Outcome("ack", delivery=delivery, result=result)

    def _finish(self, channel, method, properties, body: bytes, outcome: Outcome) -> None:
        """I/O thread: apply the worker's outcome with the channel operations it needs."""
        if outcome.action == "dead":
            self._dead_letter(channel, method, properties, body, outcome.reason)
        elif outcome.action == "poison":
            self._ack(channel, method.delivery_tag)
            self._flush_acks()
            LOGGER.info("poison pill received; stopping")
            self.stop.set("poison pill")
        elif outcome.action == "duplicate":
            self._ack(channel, method.delivery_tag)
            LOGGER.info("%s", outcome.note)
        else:
            delivery = outcome.delivery
            if self.forward_to is not None and outcome.result is not None:
                if not self._forward(channel, method, properties, body, delivery, outcome.result):
                    return
            # The log line is the default sink: written before the ack, like any other handling.
            self._log_received(delivery)
            self._ack(channel, method.delivery_tag)
            self.handled += 1
            if self.count is not None and self.handled >= self.count:
                self.stop.set(f"--count {self.count} reached")

    @staticmethod
    def _text(delivery: Delivery) -> str:
        if delivery.message is not None:
            return delivery.message.payload
        return delivery.body.decode("utf-8", errors="replace")

    def _forward(self, channel, method, properties, body: bytes, delivery: Delivery, result) -> bool:
        """Publish a stage's result to the next queue, confirmed, before the input is acked.

        The output id is derived from the input id, so a stage that dies after publishing
        and before acking produces the same id again, and the next stage drops the duplicate.
        """
        output = result if isinstance(result, str) else json.dumps(result)
        source = delivery.message
        out = Message(
            id=uuid.uuid5(uuid.NAMESPACE_URL, f"rabbitipc:{delivery.id or uuid.uuid4().hex}:{self.queue}").hex,
            seq=source.seq if source else 0,
            sent_at=source.sent_at if source else time.time(),
            host=socket.gethostname(),
            payload=output,
        )
        try:
            self._confirm_channel.basic_publish(self.forward_to.exchange_name, self.forward_to.key,
                                                out.body(), out.properties(), mandatory=True)
        except (px.UnroutableError, px.NackError) as exc:
            self._dead_letter(channel, method, properties, body,
                              f"could not forward to {self.forward_to.describe}: {exc.__class__.__name__}")
            return False
        LOGGER.debug("forwarded id=%s as id=%s to %s", delivery.id, out.id, self.forward_to.describe)
        return True

    def _log_received(self, delivery: Delivery) -> None:
        now = time.time()
        self._first_handled = self._first_handled or now
        self._last_handled = now
        message = delivery.message
        latency = 0.0
        if message is not None:
            latency = (now - message.sent_at) * 1000
            self.latency.add(latency)
        if not self.lines.allow():
            return
        if message is not None:
            LOGGER.info("received seq=%d id=%s latency_ms=%.1f from=%s payload=%s",
                        message.seq, message.id, latency, printable(message.host, 60), printable(message.payload, 60))
        else:
            LOGGER.info("received text id=%s bytes=%d body=%s",
                        delivery.id or "-", len(delivery.body), describe_body(delivery.body))

    def _dead_letter(self, channel, method, properties, body: bytes, reason: str) -> None:
        """Move a message to <queue>.dead with the reason in a header, confirmed, then ack it."""
        headers = dict(properties.headers or {})
        headers[REASON_HEADER] = reason
        headers[QUEUE_HEADER] = self.queue
        dead_properties = pika.BasicProperties(
            content_type=properties.content_type,
            content_encoding=properties.content_encoding,
            headers=headers,
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=properties.message_id,
            timestamp=properties.timestamp,
            app_id=properties.app_id,
        )
        try:
            self._confirm_channel.basic_publish(DEAD_EXCHANGE, self.dead_letter_queue, body, dead_properties,
                                                mandatory=True)
        except (px.UnroutableError, px.NackError) as exc:
            # Never drop it: back to the queue, to be tried again (and logged again).
            channel.basic_nack(method.delivery_tag, requeue=True)
            LOGGER.error("could not park id=%s in %s (%s); requeued: %s", properties.message_id or "-",
                         self.dead_letter_queue, exc.__class__.__name__, printable(reason, 200))
            return
        channel.basic_ack(method.delivery_tag)
        LOGGER.warning("dead-lettered id=%s to %s: %s body=%s", properties.message_id or "-",
                       self.dead_letter_queue, printable(reason, 200), describe_body(body, 60))
