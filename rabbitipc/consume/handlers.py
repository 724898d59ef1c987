"""What the receiver does with each message, and loading a user's handler by name.

A handler is any callable taking a Delivery. It returns when the message is handled; an
exception means "not now": the message is tried again after a backoff (up to --max-attempts in
all, retries.py), then sent to the dead-letter queue. Raising Reject means "never": the message
goes to the dead-letter queue at once. What it
returns is the result: a pipeline stage forwards it to the next queue (text as is, anything
else as JSON; None forwards nothing); a plain receiver ignores it.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import pika

from ..errors import EXIT_USAGE, FatalError
from ..message import Message


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivered message: raw body and properties, and our schema when it parsed."""

    body: bytes
    properties: pika.BasicProperties
    redelivered: bool
    message: Message | None
    parse_error: str | None
    attempt: int = 1  # 1 for the first delivery; the broker-side retries count up to --max-attempts

    @property
    def id(self) -> str | None:
        """Our id, else the AMQP message_id another client may have set."""
        return self.message.id if self.message else self.properties.message_id


class Reject(Exception):  # noqa: N818 - what a handler says, as in `raise Reject("unknown customer")`
    """Raised by a handler that refuses a message for good: it is dead-lettered at once, never retried,
    with the reason "rejected: <text>"."""


#: Takes a Delivery; may return a value, which a stage forwards.
Handler = Callable[[Delivery], object]


def load_handler(spec: str) -> Handler:
    """Import `package.module:function`; a bad spec is a usage error (exit 2)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise FatalError(f"--handler {spec!r}: expected module:function", EXIT_USAGE)
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # as `python -m` does: a module in the current directory is found
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise FatalError(f"--handler {spec!r}: cannot import {module_name!r}: {exc}", EXIT_USAGE) from None
    handler = getattr(module, attr, None)
    if not callable(handler):
        raise FatalError(f"--handler {spec!r}: {module_name} has no callable {attr!r}", EXIT_USAGE)
    return handler
