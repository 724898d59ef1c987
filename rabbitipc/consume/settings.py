"""How a consumer behaves, in one object: the options of the receiver and the stage, with their defaults."""

from __future__ import annotations

from dataclasses import dataclass

from .. import defaults
from ..topology import Route
from .retries import RetrySettings
from .sinks import JsonlSink


@dataclass(frozen=True)
class ConsumerSettings:
    """Everything a Consumer needs besides the broker, the subscription and the handler."""

    prefetch: int = defaults.PREFETCH
    max_size: int = defaults.MAX_SIZE  # bytes; a bigger body is dead-lettered unread
    strict: bool = False  # dead-letter bodies that are not rabbitipc messages
    dedupe_window: int = defaults.DEDUPE_WINDOW  # ids remembered to skip redelivered duplicates
    dedupe_store: bool = False  # keep the handled ids in the stream <queue>.handled too (dedupe_store.py)
    connection_name: str = "rabbitipc-receiver"
    forward_to: Route | None = None  # a stage: where the handler's result goes
    max_hops: int = defaults.MAX_HOPS  # a stage dead-letters an input already forwarded this many times
    sink: JsonlSink | None = None
    poison_pill: str | None = None  # a payload that stops the consumer
    listen_for_control: bool = True
    grace_period: float = defaults.GRACE_PERIOD  # on stop, how long the message in hand may take
    count: int | None = None  # stop after this many handled
    log_rate: float = defaults.LOG_RATE  # "received" lines a second at most, then a summary per second
    program: str = "consumer"  # the `program` label of its metrics (metrics.py): receiver, stage, ...
    retry: RetrySettings = RetrySettings()  # attempts per message and the backoff between them (retries.py)
    #: Run the handler (and sink) on the connection's thread, as the tutorials do: one thread hop less per message
    #: (an RPC round trip about 0.2 ms shorter, bench.rpc), but no heartbeat is answered while it runs, and a stop
    #: waits for it without a grace period. Only for handlers that return well within the heartbeat interval.
    inline_handler: bool = False

    @property
    def ack_batch(self) -> int:
        """Acks go out with multiple=True every this many messages (and whenever the loop is idle)."""
        return max(1, min(100, self.prefetch // 4))
