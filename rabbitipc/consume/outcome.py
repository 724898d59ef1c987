"""What the per-message pipeline decided: a type the I/O thread acts on, not a string it compares."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .handlers import Delivery


class Action(enum.Enum):
    """The four fates of a delivered message."""

    HANDLED = "handled"  # ack it (a stage forwards the handler's result first)
    DEAD = "dead"  # park it in <queue>.dead with the reason, then ack
    DUPLICATE = "duplicate"  # already handled (same id): ack again, log the note
    POISON = "poison"  # the poison pill: ack it and stop


@dataclass(frozen=True)
class Outcome:
    """One message's decision, made on the worker thread, carried out on the I/O thread."""

    action: Action
    delivery: Delivery | None = None
    result: object = None  # the handler's return value: what a stage forwards
    reason: str = ""  # DEAD: why, written to the dead-letter header and the log
    note: str = ""  # DUPLICATE: the log line

    @classmethod
    def handled(cls, delivery: Delivery, result: object) -> Outcome:
        return cls(Action.HANDLED, delivery=delivery, result=result)

    @classmethod
    def dead(cls, reason: str) -> Outcome:
        return cls(Action.DEAD, reason=reason)

    @classmethod
    def duplicate(cls, note: str) -> Outcome:
        return cls(Action.DUPLICATE, note=note)

    @classmethod
    def poison(cls) -> Outcome:
        return cls(Action.POISON)
