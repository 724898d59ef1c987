"""How a StreamPublisher behaves, in one object: everything besides the broker and the route."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import defaults


def _ignore(_item: Any) -> None:
    pass


@dataclass(frozen=True)
class PublisherSettings:
    """A publisher's name, window, refusal limit, callbacks and metrics label."""

    connection_name: str = "rabbitipc-sender"
    window: int = defaults.WINDOW  # messages awaiting confirms at most
    max_refusals: int = defaults.MAX_REFUSALS  # returns or nacks of one message before UndeliverableError
    on_confirmed: Callable[[Any], None] = _ignore  # called with a message's item once confirmed
    on_unrouted: Callable[[Any], None] = _ignore  # called with the item of a message no queue took
    program: str = "publisher"  # the `program` label of its metrics (metrics.py): sender, http, or your own
