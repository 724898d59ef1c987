"""The queues both programs declare: a durable work queue and its dead-letter queue.

Sender and receiver declare the same queue with the same arguments (as the RabbitMQ
tutorials do), so whichever starts first creates it and no message is published into a
queue that does not exist yet. Anything rejected from the work queue lands in
`<queue>.dead` through the queue's dead-letter arguments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pika.exceptions as px

from .errors import AuthError, TopologyError

QUEUE_TYPES = ("classic", "quorum")
DEAD_SUFFIX = ".dead"


@dataclass(frozen=True)
class QueueSpec:
    """A durable queue of a given type with a dead-letter queue beside it."""

    name: str = "hello"
    queue_type: str = "classic"

    @property
    def dead_letter_queue(self) -> str:
        return self.name + DEAD_SUFFIX

    def arguments(self) -> dict:
        return {
            "x-queue-type": self.queue_type,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.dead_letter_queue,
        }

    def declare(self, channel) -> None:
        """Declare the dead-letter queue and the work queue; explain a settings conflict."""
        declare_queue(channel, self.dead_letter_queue, {"x-queue-type": self.queue_type})
        declare_queue(channel, self.name, self.arguments())


_INEQUIVALENT = re.compile(r"inequivalent arg '([^']+)' for queue '([^']+)'.*received (.+) but current is (.+)")


def declare_queue(channel, name: str, arguments: dict) -> None:
    """queue_declare(durable) that turns broker refusals into one-line fatal errors."""
    try:
        channel.queue_declare(queue=name, durable=True, arguments=arguments)
    except px.ChannelClosedByBroker as exc:
        if exc.reply_code == 406:
            match = _INEQUIVALENT.search(exc.reply_text)
            detail = (
                f"its {match.group(1)!r} is {match.group(4)}, we need {match.group(3)}"
                if match else exc.reply_text
            )
            raise TopologyError(
                f"queue {name!r} already exists with other settings ({detail}); "
                f"delete it (rabbitmqctl delete_queue {name}) or choose another --queue"
            ) from None
        if exc.reply_code == 403:
            raise AuthError(f"not allowed to declare queue {name!r}: {exc.reply_text}") from None
        raise
