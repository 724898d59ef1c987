"""What the per-message pipeline decided: a type the I/O thread acts on, not a string it compares."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .handlers import Delivery


class Fate(enum.Enum):
    """The five fates of a delivered message."""

    HANDLED = "handled"  # ack it (a stage forwards the handler's result first)
    DEAD = "dead"  # park it in <queue>.dead with the reason, then ack
    RETRY = "retry"  # the handler failed, attempts are left: a copy to a delay queue with the reason, then ack
    DUPLICATE = "duplicate"  # already handled (same id): ack again, log the note
    POISON = "poison"  # the poison pill: ack it and stop


@dataclass(frozen=True)
class Outcome:
    """One message's decision, made on the worker thread, carried out on the I/O thread."""

    fate: Fate
    delivery: Delivery | None = None
    result: object = None  # the handler's return value: what a stage forwards
    reason: str = ""  # DEAD, RETRY: why, written to the dead-letter header and the log
    note: str = ""  # DUPLICATE: the log line
    answered: bool = True  # rpc: False when the request's reply_to was refused (reply.ReplyGuard)

    @classmethod
    def handled(cls, delivery: Delivery, result: object) -> Outcome:
        return cls(Fate.HANDLED, delivery=delivery, result=result)

    @classmethod
    def dead(cls, reason: str) -> Outcome:
        return cls(Fate.DEAD, reason=reason)

    @classmethod
    def retry(cls, reason: str) -> Outcome:
        """The handler failed and the message has attempts left: tried again after a backoff (retries.py)."""
        return cls(Fate.RETRY, reason=reason)

    @classmethod
    def refused(cls, reason: str) -> Outcome:
        """An RPC request whose reply_to may not be answered: dead-lettered unhandled, nothing published."""
        return cls(Fate.DEAD, reason=reason, answered=False)

    @classmethod
    def duplicate(cls, note: str) -> Outcome:
        return cls(Fate.DUPLICATE, note=note)

    @classmethod
    def poison(cls) -> Outcome:
        return cls(Fate.POISON)
