"""rabbitipc: Python processes talking through RabbitMQ, without losing a message.

The public API (imported lazily, so `python3 -m rabbitipc.definitions` needs no pika):
MessageQueue, RabbitHandler, Publisher, StreamPublisher, Consumer, Route, Subscription, QueueSpec, Message,
Delivery, Retry, Backoff, StopFlag.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Publisher": "publish.blocking",
    "StreamPublisher": "publish.engine",
    "Consumer": "consume.consumer",
    "QueueSpec": "topology",
    "Message": "message",
    "Delivery": "consume.handlers",
    "Retry": "connection",
    "Backoff": "backoff",
    "StopFlag": "shutdown",
    "MessageQueue": "mq",
    "RabbitHandler": "log_handler",
    "Route": "topology",
    "Subscription": "topology",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rabbitipc' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
