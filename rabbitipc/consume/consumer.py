"""Consuming with manual acks: a message is acked only after it was handled.

Settings from the RabbitMQ work-queue tutorial (durable queue, prefetch, ack after work),
plus what the tutorial leaves out: reconnect after a broker restart, a dead-letter queue
with the reason for anything that cannot be handled, duplicates (same id) skipped within
a bounded window, and a clean stop on SIGTERM that finishes the message in hand. Handlers
run on a worker thread (dispatch.py) so slow work never starves the connection's heartbeats.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time

import pika
import pika.exceptions as px

from .. import control
from ..bounded import BoundedMap
from ..connection import RECONNECT, Retry, connect
from ..errors import AuthError, Stopped
from ..health import Health
from ..message import describe_body, printable
from ..shutdown import StopFlag
from ..topology import Declarer, Subscription
from ..wire import pika_adapter
from . import effects, reply, stage
from .dispatch import Dispatcher
from .handlers import Handler
from .outcome import Action, Outcome
from .pipeline import Pipeline
from .report import Report
from .settings import ConsumerSettings

LOGGER = logging.getLogger(__name__)


class Consumer:
    """Consumes one queue until stopped, surviving broker restarts.

    The connection and consume lifecycle live here; what happens to each message is decided
    by the Pipeline (pipeline.py) and carried out with effects.py (acks, dead-letter) and
    stage.py (forwarding a stage's result); report.py writes the log lines.
    """

    def __init__(self, url: str, subscription: Subscription, handler: Handler | None = None,
                 settings: ConsumerSettings | None = None, *, retry: Retry | None = None,
                 stop: StopFlag | None = None, health: Health | None = None, **options) -> None:
        """`options` override single fields of `settings` (ConsumerSettings), e.g. prefetch=50."""
        self.settings = dataclasses.replace(settings or ConsumerSettings(), **options)
        self.url = url
        self.subscription = subscription
        self.retry = retry or Retry()
        self.stop = stop or StopFlag()
        self.health = health or Health(None)
        self.pipeline = Pipeline(self.settings, handler)
        self.report = Report(self.settings.log_rate)
        self.acks = effects.AckBatch(self.settings.ack_batch)
        self.park_retry = effects.ParkRetry()
        self._dead_unparked: BoundedMap[str] = BoundedMap(1000)  # decided dead, not yet parked: key -> reason
        self.queue = subscription.queue or ""  # the server names exclusive queues at declare time
        self.dead_letter_queue = ""
        self._connection: pika.BlockingConnection | None = None
        self._confirm_channel = None
        self._cancelled: str | None = None  # set when the broker cancels our consumer
        #: The handler thread, one for the consumer's life (see dispatch.py); None without handler or sink.
        self._dispatcher: Dispatcher | None = None

    @property
    def handled(self) -> int:
        """Messages handled (and acked) so far."""
        return self.report.handled

    # -- lifecycle -------------------------------------------------------------------
    def run(self) -> int:
        """Consume until a stop is requested; return how many messages were handled."""
        try:
            while not self.stop.is_set():
                try:
                    self._consume_once()
                except px.ConsumerCancelled as exc:
                    LOGGER.warning("the broker cancelled the consumer (%s); declaring and consuming again", exc)
                except RECONNECT as exc:
                    LOGGER.warning("connection to the broker lost (%s); reconnecting", exc.__class__.__name__)
                except px.ChannelClosedByBroker as exc:
                    if exc.reply_code == 403:
                        raise AuthError(f"not allowed to consume from {self.queue!r}: {exc.reply_text}") from None
                    if "acknowledgement" in exc.reply_text and "timed out" in exc.reply_text:
                        LOGGER.warning("the broker's consumer_timeout expired before a message was acked (a "
                                       "handler slower than it); the message comes back, already-decided "
                                       "messages are not handled again; raise the broker's consumer_timeout")
                        continue
                    LOGGER.warning("channel closed by the broker (%s); reconnecting", exc.reply_text)
                    self.stop.wait(1)
                finally:
                    self._close()
        except Stopped:
            pass
        finally:
            if self._dispatcher is not None:
                self._dispatcher.close()
                self._dispatcher = None
        self.report.done(self.stop.reason if self.stop.is_set() else None)
        return self.handled

    def _consume_once(self) -> None:
        settings = self.settings
        self._connection = connect(self.url, settings.connection_name, self.retry, self.stop, self.health,
                                   settings.ca_file, opener=pika_adapter.blocking_connection)
        declarer = Declarer(self._connection.channel)  # a refused declare closes the channel: a new one
        self.queue, self.dead_letter_queue = self.subscription.declare(declarer)
        if settings.forward_to is not None:
            settings.forward_to.declare(declarer)
        if settings.listen_for_control:
            # The same channel as the work: pika dispatches one channel's deliveries until none
            # are pending, so a busy work channel would starve a separate control channel.
            control.listen(declarer, self.subscription.group, self._on_control)
        channel = declarer.channel
        # pika drops the broker's Basic.Cancel (queue deleted, quorum leader moved, node in
        # maintenance) for callback consumers: without this, we would sit connected, consuming nothing.
        self._cancelled = None
        channel.add_on_cancel_callback(self._on_cancelled_by_broker)
        channel.basic_qos(prefetch_count=settings.prefetch)
        self._confirm_channel = self._connection.channel()
        self._confirm_channel.confirm_delivery()
        self.acks.reset(channel)
        # Handlers and sinks may be slow: they get a worker thread. Without them, deciding is
        # quick and never blocks, so it runs right in the delivery callback (no thread hop).
        dispatcher = None
        on_delivery = self._handle_inline
        if self.pipeline.handler is not None or self.pipeline.sink is not None:
            if self._dispatcher is None:
                self._dispatcher = Dispatcher(self._decide, self._finish, self.stop.is_set)
            dispatcher = self._dispatcher
            on_delivery = dispatcher.submit
        try:
            tag = channel.basic_consume(self.queue, on_delivery, auto_ack=False)
            LOGGER.info("consuming from queue %s (prefetch %d)", self.queue, settings.prefetch)
            while not self.stop.is_set():
                if channel.is_closed:
                    # pika's process_data_events does not raise when the broker closes a callback
                    # consumer's channel (e.g. its consumer_timeout): noticed here, raised with the reason.
                    raise pika_adapter.closing_reason(channel)
                if self._cancelled is not None:
                    self.health.beat(connected=False)  # not ready until consuming again
                    # Deliveries already in hand left the queue with it: handle them before leaving.
                    self._finish_in_hand(dispatcher, settings.finish_timeout, until_empty=True)
                    raise px.ConsumerCancelled(self._cancelled)
                self.health.beat(connected=True)
                self._connection.process_data_events(time_limit=self.acks.wait_limit(0.2))
                self.acks.flush_due()
                self.report.lines.tick()
            # Finish the message in hand (its ack needs this thread), then hand back the rest.
            self._finish_in_hand(dispatcher, settings.finish_timeout)
            self.acks.flush()
            channel.basic_cancel(tag)
        finally:
            if dispatcher is not None:
                dispatcher.drop_queued()  # what was not started comes back on the next link
            self._flush_acks_quietly()

    def _handle_inline(self, channel, method, properties, body: bytes) -> None:
        """The delivery callback when there is no handler thread: decide and finish at once."""
        if self.stop.is_set():
            return  # stopping: left unacked, the broker requeues it when the channel closes
        self._finish(channel, method, properties, body, self._decide(method, properties, body))

    def _finish_in_hand(self, dispatcher: Dispatcher | None, timeout: float, until_empty: bool = False) -> None:
        """Let the worker finish its message (and with until_empty, those queued behind it) within timeout."""
        deadline = time.monotonic() + timeout
        while dispatcher is not None and time.monotonic() < deadline and (
                dispatcher.busy.is_set() or (until_empty and not dispatcher.items.empty())):
            self._connection.process_data_events(time_limit=0.1)

    def _on_cancelled_by_broker(self, *args) -> None:
        """pika calls this (I/O thread) when the broker cancels one of this channel's consumers."""
        self._cancelled = f"consumer {args[-1].method.consumer_tag} of queue {self.queue}"

    def _flush_acks_quietly(self) -> None:
        """Whatever ends this link, the acks of messages already handled go out if the channel still can."""
        try:
            self.acks.flush()
        except Exception:  # noqa: BLE001 - the channel is gone: those messages come back as duplicates
            LOGGER.debug("pending acks could not be sent", exc_info=True)

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
        key = _redelivery_key(properties, body)
        reason = self._dead_unparked.get(key) if method.redelivered else None
        if reason is not None:
            # Decided dead before, but the channel closed before it was parked (the broker's
            # consumer_timeout, a lost link): park it now, without running the handler again.
            return Outcome.dead(reason)
        outcome = self.pipeline.decide(method, properties, body)
        if outcome.action is Action.DEAD:
            self._dead_unparked.add(key, outcome.reason)
        return outcome

    def _finish(self, channel, method, properties, body: bytes, outcome: Outcome) -> None:
        """I/O thread: carry out the pipeline's outcome with the channel operations it needs."""
        answers = self.subscription.pattern == "rpc" and bool(properties.reply_to)
        if outcome.action is Action.DEAD:
            if answers:  # the caller learns at once (RemoteError) instead of waiting for its timeout
                reply.send(self._confirm_channel, properties, error=outcome.reason)
            self._dead_letter(channel, method, properties, body, outcome.reason)
        elif outcome.action is Action.POISON:
            self.acks.ack(channel, method.delivery_tag)
            self.acks.flush()
            LOGGER.info("poison pill received; stopping")
            self.stop.set("poison pill")
        elif outcome.action is Action.DUPLICATE:
            self.acks.ack(channel, method.delivery_tag)
            LOGGER.info("%s", outcome.note)
        else:
            if answers:
                failed = reply.send(self._confirm_channel, properties, outcome.result)
                if failed:
                    self._dead_letter(channel, method, properties, body, failed)
                    return
            forward_to = self.settings.forward_to
            if forward_to is not None and outcome.result is not None:
                failed = stage.forward(self._confirm_channel, forward_to, outcome.delivery, outcome.result,
                                       self.queue)
                if failed:
                    self._dead_letter(channel, method, properties, body, failed)
                    return
            self.report.received(outcome.delivery)
            self.acks.ack(channel, method.delivery_tag)
            count = self.settings.count
            if count is not None and self.handled >= count:
                self.stop.set(f"--count {count} reached")

    def _dead_letter(self, channel, method, properties, body: bytes, reason: str) -> None:
        """Park the message in <queue>.dead, then ack it; never drop it (effects.py)."""
        if not channel.is_open:
            return  # the ack cannot follow: parked when it comes back (see _decide), so parked once
        why = effects.park(self._confirm_channel, properties, body, self.queue, self.dead_letter_queue, reason)
        if why == "UnroutableError":  # <queue>.dead was deleted: declare it again, try once more
            LOGGER.warning("%s is missing; declaring it again", self.dead_letter_queue)
            queue_type = self.subscription.queue_type if self.subscription.queue else "classic"
            effects.declare_dead_letter_queue(Declarer(self._connection.channel), self.dead_letter_queue, queue_type)
            why = effects.park(self._confirm_channel, properties, body, self.queue, self.dead_letter_queue, reason)
        if why is not None:
            self.park_retry.requeue_later(self._connection, channel, self.acks, method, properties,
                                          self.dead_letter_queue, why, reason)
            return
        self.park_retry.succeeded()
        self._dead_unparked.discard(_redelivery_key(properties, body))
        self.acks.ack(channel, method.delivery_tag)
        self.acks.flush()  # before the log line: the line says the message left the queue
        LOGGER.warning("dead-lettered id=%s to %s: %s body=%s", properties.message_id or "-",
                       self.dead_letter_queue, printable(reason, 200), describe_body(body, 60))


def _redelivery_key(properties, body: bytes) -> str:
    """What recognises a redelivered message before it is parsed: its message_id, else its body's digest."""
    return properties.message_id or hashlib.blake2b(body, digest_size=16).hexdigest()

