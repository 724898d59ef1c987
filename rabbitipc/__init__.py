"""rabbitipc: Python processes talking through RabbitMQ, without losing a message.

The public API (imported lazily: `import rabbitipc` loads none of it until a name is used):
MessageQueue, RabbitHandler, Publisher, StreamPublisher, PublisherSettings, Consumer, Route, Subscription,
Pattern, Message, Delivery, Reject, RetrySettings, Broker, RetryPolicy, StopFlag; Retry and Backoff for older callers.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Publisher": "publish.blocking",
    "StreamPublisher": "publish.engine",
    "Consumer": "consume.consumer",
    "Pattern": "topology",
    "Message": "message",
    "Delivery": "consume.handlers",
    "Reject": "consume.handlers",
    "RetrySettings": "consume.retries",
    "PublisherSettings": "publish.settings",
    "Broker": "connection",
    "RetryPolicy": "backoff",
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
