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

from .. import control, metrics, tracing
from ..bounded import BoundedMap
from ..connection import RECONNECT, Broker, connect
from ..errors import EXIT_USAGE, AuthError, FatalError, ReplyCode, Stopped, UnfinishedStop
from ..health import Health
from ..loglines import ACTIVE_LINE, STANDING_BY_LINE
from ..message import describe_body, printable
from ..shutdown import StopFlag
from ..topology import DeadLetterSpec, Declarer, RetrySpec, Subscription
from ..wire import pika_adapter
from . import effects, reply, stage
from .dedupe_store import StoreUnreadable, check_queue
from .dispatch import Dispatcher
from .handlers import Handler
from .outcome import Fate, Outcome
from .pipeline import Pipeline
from .report import Report
from .retries import RetrySettings, attempts_made
from .settings import ConsumerSettings

LOGGER = logging.getLogger(__name__)


class Consumer:
    """Consumes one queue until stopped, surviving broker restarts.

    The connection and consume lifecycle live here; what happens to each message is decided
    by the Pipeline (pipeline.py) and carried out with effects.py (acks, dead-letter) and
    stage.py (forwarding a stage's result); report.py writes the log lines.
    """

    def __init__(self, broker: Broker | str | None, subscription: Subscription, handler: Handler | None = None,
                 settings: ConsumerSettings | None = None, *, stop: StopFlag | None = None,
                 health: Health | None = None, **options) -> None:
        """`broker`: a Broker, or a URL (None: AMQP_URL, else localhost). `options` override single
        fields of `settings` (ConsumerSettings), e.g. prefetch=50, or of its RetrySettings, e.g. max_attempts=1."""
        settings = settings or ConsumerSettings()
        retry = {name: options.pop(name) for name in ("max_attempts", "min_backoff", "max_backoff") if name in options}
        if retry:
            options["retry"] = dataclasses.replace(options.get("retry", settings.retry), **retry)
        settings = dataclasses.replace(settings, **options)
        if settings.retry.retries and not subscription.queue:
            # The broker names an exclusive queue anew at each connect: a copy waiting in a delay queue
            # would come back to a queue that is gone. Such messages are parked at once.
            LOGGER.warning("no retries on an exclusive queue (no --queue): a failed message goes to the dead-letter "
                           "queue at once; give the receiver a --queue to retry (--max-attempts %d)",
                           settings.retry.max_attempts)
            settings = dataclasses.replace(settings, retry=RetrySettings(1))
        self.settings = settings
        self.broker = Broker.of(broker)
        self.url = self.broker.url
        self.subscription = subscription
        self.stop = stop or StopFlag()
        self.health = health or Health(None)
        self.stats = metrics.stats_for(self.settings.program, subscription.queue or "exclusive", "consumer",
                                       owner=self)
        self.pipeline = Pipeline(self.settings, handler, replies=subscription.pattern.answers,
                                 handler_latency=self.stats.handler, queue=self.stats.queue)
        self.report = Report(self.settings.log_rate, self.stats.end_to_end)
        self.acks = effects.AckBatch(self.settings.ack_batch)
        self.park_retry = effects.ParkRetry()
        #: Decided dead or to retry, not yet carried out (key -> the outcome), and retries already sent
        #: (key -> a DUPLICATE): what a redelivered copy of that delivery gets without running the handler again.
        self._unsettled: BoundedMap[Outcome] = BoundedMap(1000)
        self.queue = subscription.queue or ""  # the server names exclusive queues at declare time
        if self.pipeline.store is not None:
            check_queue(self.queue)
            if settings.inline_handler:  # the store's catch_up waits on the I/O thread: never decided on it
                raise FatalError("--inline-handler cannot be used with --dedupe-store (reading the store back "
                                 "needs the connection's thread while the handler waits)", EXIT_USAGE)
        self.dead_letter: DeadLetterSpec | None = None  # known once declared
        retry = self.settings.retry
        #: The delay queues of a named queue (None: no retries).
        self.retries = RetrySpec(subscription.queue, retry.delays_ms) if retry.retries else None
        self._connection: pika.BlockingConnection | None = None
        self._confirm_channel = None
        self._cancelled: str | None = None  # set when the broker cancels our consumer
        #: rpc: which reply_to names get an answer (reply.py); None in the other patterns.
        self._replies = reply.ReplyGuard() if subscription.pattern.answers else None
        self._overran: str | None = None  # the message in hand when a stop's grace period ran out
        #: The handler thread, one for the consumer's life (see dispatch.py); None without handler or sink.
        self._dispatcher: Dispatcher | None = None

    @property
    def handled(self) -> int:
        """Messages handled (and acked) so far."""
        return self.report.handled

    @property
    def dead_letter_queue(self) -> str:
        return self.dead_letter.name if self.dead_letter is not None else ""

    @property
    def connected(self) -> bool:
        """True while connected and consuming (for the metrics' rabbitipc_connected)."""
        connection = self._connection
        return connection is not None and connection.is_open and self._cancelled is None

    @property
    def in_flight(self) -> int:
        """Delivered and not yet acked: queued for the handler, in its hands, or awaiting the batched ack."""
        dispatcher = self._dispatcher
        waiting = 0 if dispatcher is None else dispatcher.items.qsize() + dispatcher.busy.is_set()
        return waiting + self.acks.pending

    # -- lifecycle -------------------------------------------------------------------
    def run(self) -> int:
        """Consume until a stop is requested; return how many messages were handled.

        A stop that leaves work for the broker to deliver again raises UnfinishedStop (exit 9): the
        handler overran settings.grace_period, or handled messages could not be acked (no broker)."""
        try:
            while not self.stop.is_set():
                try:
                    self._consume_once()
                except px.ConsumerCancelled as exc:
                    self.stats.reconnected(metrics.Reconnect.CONSUMER_CANCELLED)
                    LOGGER.warning("the broker cancelled the consumer (%s); declaring and consuming again", exc)
                except RECONNECT as exc:
                    self.stats.reconnected(metrics.Reconnect.CONNECTION_LOST)
                    what = str(exc) if isinstance(exc, StoreUnreadable) else \
                        f"connection to the broker lost ({exc.__class__.__name__})"
                    LOGGER.warning("%s; reconnecting", what)
                except px.ChannelClosedByBroker as exc:
                    if exc.reply_code == ReplyCode.ACCESS_REFUSED:
                        raise AuthError(f"not allowed to consume from {self.queue!r}: {exc.reply_text}") from None
                    if "acknowledgement" in exc.reply_text and "timed out" in exc.reply_text:
                        self.stats.reconnected(metrics.Reconnect.CONSUMER_TIMEOUT)
                        LOGGER.warning("the broker's consumer_timeout expired before a message was acked (a "
                                       "handler slower than it); the message comes back, already-decided "
                                       "messages are not handled again; raise the broker's consumer_timeout")
                        continue
                    self.stats.reconnected(metrics.Reconnect.CHANNEL_CLOSED)
                    LOGGER.warning("channel closed by the broker (%s); reconnecting", exc.reply_text)
                    self.stop.wait(1)
                finally:
                    self._close()
        except Stopped:
            pass
        finally:
            if self._dispatcher is not None:
                # A stop while reconnecting finds the handler perhaps still busy: it gets the grace period
                # too; a handler still busy after it is left behind (a daemon thread), its message unacked.
                dispatcher, self._dispatcher = self._dispatcher, None
                dispatcher.close(0 if self._overran else self.settings.grace_period)
                in_hand = dispatcher.in_hand
                if self._overran is None and in_hand is not None:
                    self._overran = f"the message id={in_hand.message_id or '-'}"
        self.report.done(self.stop.reason if self.stop.is_set() else None)
        tracing.shutdown()
        self._check_finished()
        return self.handled

    def _check_finished(self) -> None:
        """A stop that leaves work to be done again says so: UnfinishedStop (exit 9) with the count."""
        if self._overran is not None:
            raise UnfinishedStop(
                f"the handler did not finish {self._overran} within the {self.settings.grace_period:g}s grace "
                "period (--grace-period); stopped without acking it: the broker delivers it again")
        if self.stop.is_set() and self.acks.unsent:
            then = ("the next receiver handles them again" if self.pipeline.store is None else
                    f"the next receiver skips those whose id reached {self.pipeline.store.name} (at most the "
                    "one in hand is handled again)")
            raise UnfinishedStop(
                f"stopped with {self.acks.unsent} handled message(s) not acked, the broker being unreachable: "
                f"it delivers them again, and {then}")

    def _consume_once(self) -> None:
        settings = self.settings
        self._connection = connect(self.broker, settings.connection_name, self.stop, self.health,
                                   opener=pika_adapter.blocking_connection)
        self.stats.node = pika_adapter.node(self._connection)
        if self._replies is not None:
            self._replies.reset(self._connection.channel)
        declarer = Declarer(self._connection.channel)  # a refused declare closes the channel: a new one
        self.queue, self.dead_letter = self.subscription.declare(declarer)
        if self.retries is not None:
            self.retries.declare(declarer)
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
        if self.pipeline.store is not None:  # the ids every replica handled, before any work comes
            self.pipeline.store.attach(self._connection, self.queue, self.stop,
                                       lambda: self.health.beat(connected=False))
            if self.stop.is_set():  # stopped while reading it back: nothing taken from the work queue
                return
        channel.basic_qos(prefetch_count=settings.prefetch)
        self._confirm_channel = self._connection.channel()
        self._confirm_channel.confirm_delivery()
        self.acks.reset(channel)
        # Handlers and sinks may be slow: they get a worker thread. Without them, deciding is
        # quick and never blocks, so it runs right in the delivery callback (no thread hop).
        # --inline-handler: on this thread too, the user vouching that the handler is quick.
        dispatcher = None
        on_delivery = self._on_request if self._replies is not None else self._handle_inline
        pipeline = self.pipeline  # a store's catch_up waits on the I/O thread: never decided on it
        if not settings.inline_handler and (
                pipeline.handler is not None or pipeline.sink is not None or pipeline.store is not None):
            if self._dispatcher is None:
                self._dispatcher = Dispatcher(self._decide, self._finish, self.stop.is_set, self.acks.lost)
            dispatcher = self._dispatcher
            on_delivery = self._on_request if self._replies is not None else dispatcher.submit
        try:
            standing_by = None
            if self.subscription.single_active_consumer:
                standing_by = _StandingBy(self.queue, self._consumers(declarer), on_delivery)
                on_delivery = standing_by.deliver
            tag = channel.basic_consume(self.queue, on_delivery, auto_ack=False)
            LOGGER.info("consuming from queue %s (prefetch %d)", self.queue, settings.prefetch)
            if standing_by is not None:
                standing_by.registered(self._consumers(declarer))
            while not self.stop.is_set():
                if channel.is_closed:
                    # pika's process_data_events does not raise when the broker closes a callback
                    # consumer's channel (e.g. its consumer_timeout): noticed here, raised with the reason.
                    raise pika_adapter.closing_reason(channel)
                if self._cancelled is not None:
                    self.health.beat(connected=False)  # not ready until consuming again
                    # Deliveries already in hand left the queue with it: handle them before leaving.
                    self._finish_in_hand(dispatcher, settings.grace_period, until_empty=True)
                    raise px.ConsumerCancelled(self._cancelled)
                self.health.beat(connected=True)
                self._connection.process_data_events(time_limit=self.acks.wait_limit(0.2))
                self.acks.flush_due()
                self.report.lines.tick()
            # Finish the message in hand (its ack needs this thread), then hand back the rest.
            self._finish_in_hand(dispatcher, settings.grace_period)
            in_hand = dispatcher.in_hand if dispatcher is not None else None
            if in_hand is not None:  # the handler overran the grace period: its message stays unacked
                self._overran = f"the message id={in_hand.message_id or '-'}"
            self.acks.flush()
            channel.basic_cancel(tag)
        finally:
            if dispatcher is not None:
                dispatcher.drop_queued()  # what was not started comes back on the next link
            self._flush_acks_quietly()

    def _consumers(self, declarer: Declarer) -> int:
        """How many consumers the queue has (a passive declare)."""
        return declarer(lambda ch: ch.queue_declare(self.queue, passive=True)).method.consumer_count

    def _handle_inline(self, channel, method, properties, body: bytes, decided: Outcome | None = None) -> None:
        """The delivery callback when there is no handler thread: decide (unless `decided`) and finish at once."""
        if self.stop.is_set():
            return  # stopping: left unacked, the broker requeues it when the channel closes
        self._finish(channel, method, properties, body,
                     decided if decided is not None else self._decide(method, properties, body))

    def _on_request(self, channel, method, properties, body: bytes) -> None:
        """The rpc pattern's delivery callback (I/O thread): a request whose reply_to may not be answered
        is dead-lettered in its turn, its handler never run (direct reply-to: no check, no cost)."""
        refusal = self._replies.refusal(properties.reply_to) if properties.reply_to else None
        decided = Outcome.refused(refusal) if refusal else None
        if self._dispatcher is None:  # no handler thread (--inline-handler, or nothing slow to run)
            self._handle_inline(channel, method, properties, body, decided)
        else:
            self._dispatcher.submit(channel, method, properties, body, decided)

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
        decided = self._unsettled.get(key) if method.redelivered else None
        if decided is not None:
            # Decided before, but the channel closed before it was parked or its retry sent (the broker's
            # consumer_timeout, a lost link), or after its retry was sent and before the ack: carried out
            # now, without running the handler again.
            return decided
        outcome = self.pipeline.decide(method, properties, body)
        if outcome.fate is Fate.DEAD or outcome.fate is Fate.RETRY:
            self._unsettled.add(key, outcome)
        return outcome

    def _finish(self, channel, method, properties, body: bytes, outcome: Outcome) -> None:
        """I/O thread: carry out the pipeline's outcome with the channel operations it needs.

        A message counts as handled (pipeline.confirmed) only after the broker confirmed its forward
        and reply: one that fails is dead-lettered with the reason; a lost link raises out of here and
        the message comes back unacked, to be handled again.
        """
        answers = self._replies is not None and bool(properties.reply_to) and outcome.answered
        if outcome.fate is Fate.DEAD:
            if answers:  # the caller learns at once (RemoteError) instead of waiting for its timeout
                reply.send(self._confirm(), self._replies, properties, error=outcome.reason)
            self._dead_letter(channel, method, properties, body, outcome.reason)
        elif outcome.fate is Fate.RETRY:
            self._retry(channel, method, properties, body, outcome.reason)
        elif outcome.fate is Fate.POISON:
            self.acks.ack(channel, method.delivery_tag)
            self.acks.flush()
            LOGGER.info("poison pill received; stopping")
            self.stop.set("poison pill")
        elif outcome.fate is Fate.DUPLICATE:
            self.stats.duplicate += 1
            self.acks.ack(channel, method.delivery_tag)
            LOGGER.info("%s", outcome.note)
        else:
            if answers:
                failed = reply.send(self._confirm(), self._replies, properties, outcome.result)
                if failed:
                    # e.g. a reply over max_message_size: the caller learns why at once
                    reply.send(self._confirm(), self._replies, properties, error=failed)
                    self._dead_letter(channel, method, properties, body, failed)
                    return
            forward_to = self.settings.forward_to
            if forward_to is not None and outcome.result is not None:
                failed = stage.forward(self._confirm(), forward_to, outcome.delivery, outcome.result, self.queue)
                if failed:
                    self._dead_letter(channel, method, properties, body, failed)
                    return
            self.pipeline.confirmed(outcome.delivery)
            self.report.received(outcome.delivery)
            self.stats.acked += 1
            self.acks.ack(channel, method.delivery_tag)
            count = self.settings.count
            if count is not None and self.handled >= count:
                self.stop.set(f"--count {count} reached")

    def _confirm(self):
        """The confirm channel, opened again if the broker closed it for refusing a publish."""
        if not self._confirm_channel.is_open:
            LOGGER.info("opening a new confirm channel (the broker closed the last one)")
            self._confirm_channel = self._connection.channel()
            self._confirm_channel.confirm_delivery()
        return self._confirm_channel

    def _send_copy(self, channel, method, properties, target: str, spec, send, reason: str) -> bool:
        """Publish a copy of the message in hand with send(confirm channel), confirmed and mandatory: True
        when the broker has it. A target queue deleted meanwhile is declared again (as at start) and the
        copy sent once more; any other refusal requeues the message later (ParkRetry), never drops it."""
        why = send(self._confirm())
        if why is not None and why.refusal is effects.Refusal.UNROUTABLE:
            LOGGER.warning("%s is missing; declaring it again", target)
            effects.declare_again(Declarer(self._connection.channel), spec, target)
            why = send(self._confirm())
        if why is not None:
            self.stats.retried += 1
            self.park_retry.requeue_later(self._connection, channel, self.acks, method, properties, target, why,
                                          reason)
            return False
        self.park_retry.succeeded()
        return True

    def _dead_letter(self, channel, method, properties, body: bytes, reason: str) -> None:
        """Park the message in <queue>.dead, then ack it; never drop it (effects.py)."""
        if not channel.is_open:
            return  # the ack cannot follow: parked when it comes back (see _decide), so parked once
        if not self._send_copy(channel, method, properties, self.dead_letter_queue, self.dead_letter,
                               lambda confirm: effects.park(confirm, properties, body, self.queue,
                                                            self.dead_letter_queue, reason), reason):
            return
        self.stats.dead_lettered += 1
        self._unsettled.discard(_redelivery_key(properties, body))
        self.acks.ack(channel, method.delivery_tag)
        self.acks.flush()  # before the log line: the line says the message left the queue
        LOGGER.warning("dead-lettered id=%s to %s: %s body=%s", properties.message_id or "-",
                       self.dead_letter_queue, printable(reason, 200), describe_body(body, 60))

    def _retry(self, channel, method, properties, body: bytes, reason: str) -> None:
        """Send a copy to the delay queue of its next attempt, then ack it; never drop it (effects.py)."""
        if not channel.is_open:
            return  # the ack cannot follow: sent when it comes back (see _decide), so sent once
        attempt = attempts_made(properties) + 1
        delay_ms = self.settings.retry.delay_ms(attempt)
        delay_queue = self.retries.name(delay_ms)
        if not self._send_copy(channel, method, properties, delay_queue, self.retries,
                               lambda confirm: effects.schedule_retry(confirm, properties, body, self.retries,
                                                                      delay_ms, reason), reason):
            return
        self.stats.delayed += 1
        key = _redelivery_key(properties, body)
        self._unsettled.add(key, Outcome.duplicate(f"id={properties.message_id or '-'} already waits for attempt "
                                                   f"{attempt + 1} in {delay_queue}; acked again"))
        self.acks.ack(channel, method.delivery_tag)
        self.acks.flush()  # at once, as a parked message's: a crash before it would retry the message twice
        LOGGER.warning("retrying id=%s (attempt %d of %d failed) in %.3gs via %s: %s", properties.message_id or "-",
                       attempt, self.settings.retry.max_attempts, delay_ms / 1000, delay_queue,
                       printable(reason, 200))


class _StandingBy:
    """A consumer of a single-active-consumer queue says whether it is the active one. AMQP 0-9-1 does not tell
    it: the broker makes the first consumer registered active, so one that found others registered stands by,
    one alone after registering is active, and one that stands by becomes active at its first delivery."""

    def __init__(self, queue: str, before: int, on_delivery) -> None:
        self.queue = queue
        self.before = before  # consumers registered before this one
        self.on_delivery = on_delivery
        self.active = False
        if before:
            LOGGER.info(STANDING_BY_LINE, queue)

    def registered(self, consumers: int) -> None:
        """After basic_consume: alone on the queue (this one included) means active."""
        if not self.before and consumers <= 1 and not self.active:
            self.active = True
            LOGGER.info(ACTIVE_LINE, self.queue, "")
        elif not self.before:  # another registered at the same moment: the first of the two is active
            LOGGER.info("queue %s has another consumer that started with this one (single active consumer); "
                        "this one says so when the broker makes it the active one", self.queue)

    def deliver(self, *args) -> None:
        """The delivery callback: the first delivery of a consumer not yet known as active says it now is."""
        if not self.active:
            self.active = True
            LOGGER.info(ACTIVE_LINE, self.queue, " now")
        self.on_delivery(*args)


def _redelivery_key(properties, body: bytes) -> str:
    """What recognises a redelivered delivery before it is parsed: its message_id (else its body's digest)
    and the attempts it had (a retry's copy is another delivery than the one it was made from)."""
    return f"{properties.message_id or hashlib.blake2b(body, digest_size=16).hexdigest()}:{attempts_made(properties)}"

