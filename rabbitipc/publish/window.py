"""The unconfirmed window: every message from its publish until the broker confirms it.

Messages published on the current channel wait here by delivery tag; a nacked one, or one the
work queue returned as unroutable, goes on the list to publish again first, after a pause that
doubles with each refusal; after a lost link the whole unconfirmed window goes there, in order.
No I/O here: the engine publishes, this class keeps the books.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import pika

from .. import metrics
from ..errors import UndeliverableError
from ..topology import Route

LOGGER = logging.getLogger(__name__)

#: The pause before publishing a refused message again, doubled for each further refusal
#: (1 + 2 + 4 + 8 s before the fifth refusal gives up): a quorum queue whose leader was killed nacks
#: until its other members elect a new one, which took more than the 3 s of 0.2 s pauses on a loaded
#: 3-node cluster (the sender gave up, exit 6).
REFUSAL_PAUSE = 1.0
#: Seconds without a confirm, messages waiting, before the publisher says so: on a cluster, a
#: quorum queue that lost its majority of nodes confirms nothing until enough nodes are back.
CONFIRM_OVERDUE = 10.0


@dataclass
class Outgoing:
    """One message until the broker confirms it: what to send, and the caller's handle."""

    body: bytes
    properties: pika.BasicProperties
    item: Any
    refusals: int = 0

    @property
    def key(self) -> object:
        return self.properties.message_id or self.body


class Listener(Protocol):
    """Who hears of each message's fate and counts it (the engine, whose callers may set the callbacks at any
    time)."""

    stats: metrics.Stats
    on_confirmed: Callable[[Any], None]
    on_unrouted: Callable[[Any], None]


class Window:
    """The messages handed over and not yet confirmed, and how the broker's answers settle them."""

    def __init__(self, route: Route, max_refusals: int, listener: Listener) -> None:
        self.route = route
        self.max_refusals = max_refusals
        self.listener = listener
        self.unconfirmed: OrderedDict[int, Outgoing] = OrderedDict()  # by delivery tag
        self.bytes = 0  # of the unconfirmed bodies
        self.again: deque[Outgoing] = deque()  # to publish (again) before anything new
        self.again_at = 0.0  # not before this time.monotonic(): the pause after a refusal
        self.redeclare = False  # the work queue returned a message: declare the topology again
        self.renew_channel = False  # a nack came: publish again on a fresh channel (engine._renew)
        self.fatal: Exception | None = None  # an error found inside a callback, raised after the turn
        self._returned: set[object] = set()
        self._next_tag = 0
        self._progress_at = 0.0  # time.monotonic() of the last confirm, or of the first publish since
        self._overdue = False  # the "no confirm for ..." line was logged for this wait
        # One message at a time is timed from publish to confirm (a tag and a clock reading, not one
        # per message): at full speed that is one sample per confirm round trip.
        self._probe_tag, self._probe_at = 0, 0.0

    def __len__(self) -> int:
        return len(self.unconfirmed) + len(self.again)

    def items(self) -> list[Any]:
        """The items of messages handed over and not confirmed yet."""
        return [outgoing.item for outgoing in (*self.unconfirmed.values(), *self.again)]

    # -- the engine's side ---------------------------------------------------------------
    def new_channel(self) -> None:
        """A confirm channel was opened: its delivery tags start at 1."""
        self._next_tag = self._probe_tag = 0

    def sent(self, outgoing: Outgoing) -> None:
        """`outgoing` was published on the current channel: it waits for the next delivery tag's confirm."""
        self._next_tag += 1
        if not self._probe_tag:
            self._probe_tag, self._probe_at = self._next_tag, time.perf_counter()
        if not self.unconfirmed:
            self._progress_at = time.monotonic()
        self.unconfirmed[self._next_tag] = outgoing
        self.bytes += len(outgoing.body)

    @property
    def due(self) -> bool:
        """True when messages wait to be published again and the pause after a refusal is over."""
        return bool(self.again) and time.monotonic() >= self.again_at

    def take_again(self) -> deque[Outgoing]:
        """What is to be published again, taken off the list."""
        again, self.again = self.again, deque()
        return again

    def lost(self) -> None:
        """The link was lost: everything unconfirmed goes again, first, on the next link."""
        unconfirmed = list(self.unconfirmed.values())
        self.unconfirmed.clear()
        self.bytes = 0
        self._returned.clear()
        self.again = deque([*unconfirmed, *self.again])

    def check_overdue(self) -> None:
        """Say so (once per wait) when no confirm came for CONFIRM_OVERDUE seconds with messages waiting."""
        if self.unconfirmed and not self._overdue and time.monotonic() - self._progress_at > CONFIRM_OVERDUE:
            self._overdue = True
            LOGGER.warning("no confirm from the broker for %.0fs, %d messages waiting: on a cluster the queue may "
                           "have lost its majority of nodes (a quorum queue needs 2 of 3); still waiting, they are "
                           "kept", time.monotonic() - self._progress_at, len(self.unconfirmed))

    # -- pika's callbacks (run inside a turn of the loop) --------------------------------
    def on_confirm(self, frame: Any) -> None:
        try:
            self._settle_confirmed(frame.method)
        except Exception as exc:  # noqa: BLE001 - pika would swallow it: raise it after the turn instead
            self.fatal = self.fatal or exc

    def on_return(self, _channel: Any, _method: Any, properties: pika.BasicProperties, body: bytes) -> None:
        self._returned.add(properties.message_id or body)

    def _settle_confirmed(self, method: Any) -> None:
        self._progress_at = time.monotonic()
        if self._overdue:
            self._overdue = False
            LOGGER.info("confirms from the broker again")
        acked = isinstance(method, pika.spec.Basic.Ack)
        if self._probe_tag and self._probe_tag <= method.delivery_tag:
            self.listener.stats.confirm.add((time.perf_counter() - self._probe_at) * 1000)
            self._probe_tag = 0
        if method.multiple:
            while self.unconfirmed:
                tag = next(iter(self.unconfirmed))
                if tag > method.delivery_tag:
                    break
                self._settle(self.unconfirmed.pop(tag), acked)
        else:
            outgoing = self.unconfirmed.pop(method.delivery_tag, None)
            if outgoing is not None:
                self._settle(outgoing, acked)

    def _settle(self, outgoing: Outgoing, acked: bool) -> None:
        self.bytes -= len(outgoing.body)
        returned = bool(self._returned) and outgoing.key in self._returned
        if returned:
            self._returned.discard(outgoing.key)
        if acked and not returned:
            self.listener.stats.confirmed += 1
            self.listener.on_confirmed(outgoing.item)
            return
        if returned and not self.route.pattern.to_queue:
            self.listener.stats.unrouted += 1
            self.listener.on_unrouted(outgoing.item)  # nobody subscribes: reported, not retried
            return
        outgoing.refusals += 1
        reason = f"returned as unroutable (queue {self.route.key!r} missing?)" if returned else "nacked by the broker"
        if outgoing.refusals >= self.max_refusals:
            self.fatal = self.fatal or UndeliverableError(f"message {reason} {outgoing.refusals} times; giving up")
            return
        LOGGER.warning("message id=%s %s; publishing it again (%d/%d)", outgoing.properties.message_id or "-",
                       reason, outgoing.refusals, self.max_refusals)
        self.redeclare = self.redeclare or returned
        if not returned:
            self.renew_channel = True
            pause = REFUSAL_PAUSE * 2 ** (outgoing.refusals - 1)
            self.again_at = max(self.again_at, time.monotonic() + pause)
        self.again.append(outgoing)
