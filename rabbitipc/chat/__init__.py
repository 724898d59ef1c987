"""The seed's chat room on rabbitipc: one small backend interface, two backends, three front ends.

    backend.py   ChatBackend (send, listen, close) and the Outbox that sends from its own thread
    rabbitmq.py  RabbitBackend: fanout exchange `chat`, history stream `chat.history`
    pubsub.py    PubSubBackend: topic `chat`, one subscription per listener
    events.py    ChatMessage (text, joined, left) and Status (connected, reconnecting)
    printer.py   `listen --mode print|rich`
    room.py      `room`: the full-screen Textual app
    (the `rabbitipc-chat` program, options, subcommands and exit codes: rabbitipc/programs/chat.py)
"""

from .backend import ChatBackend, Outbox
from .events import ChatMessage, Kind, Link, Status

__all__ = ["ChatBackend", "ChatMessage", "Kind", "Link", "Outbox", "Status"]
