"""A broadcast control channel: one command reaches every receiver and stage of a queue.

The seed's poison pill stops one consumer of N (the one that happens to get it). Instead,
every consumer binds an exclusive queue to the direct exchange `rabbitipc.control` with its
group's name (its queue, or its exchange), so `rabbitipc-ctl stop --queue hello` reaches all
of them at once; each finishes the message in hand, acks it and exits 0. The command line
is programs/ctl.py.
"""

from __future__ import annotations

import json
import logging

import pika.exceptions as px

from .connection import Broker, open_once
from .topology import CONTROL_EXCHANGE, Declarer, bind, declare_exchange

LOGGER = logging.getLogger(__name__)
COMMANDS = ("stop",)


def listen(declare: Declarer, group: str, on_command) -> None:
    """Bind an exclusive queue for `group` to the control exchange and consume it with on_command.

    The control exchange is the admin's (the definitions declare it; a receiver may not delete
    it): where the receiver may not declare it, it is checked passively.
    """
    declare_exchange(declare, CONTROL_EXCHANGE, "direct")
    queue = declare(lambda ch: ch.queue_declare(queue="", exclusive=True, auto_delete=True)).method.queue
    bind(declare, queue, CONTROL_EXCHANGE, group)
    channel = declare.channel

    def deliver(_channel, _method, _properties, body: bytes) -> None:
        """pika calls this for each control message."""
        try:
            command = json.loads(body).get("command")
        except (ValueError, AttributeError):
            command = None
        if command not in COMMANDS:
            LOGGER.warning("ignoring unknown control message %r", body[:100])
            return
        on_command(command)

    channel.basic_consume(queue, deliver, auto_ack=True)

def send(broker: Broker, group: str, command: str) -> bool:
    """Publish a command for a group; False when no receiver of that group is listening.

    Each node is tried once: connect()'s AuthError, TlsError or UnreachableError when none answers."""
    connection = open_once(broker, "rabbitipc-ctl")
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.exchange_declare(exchange=CONTROL_EXCHANGE, exchange_type="direct", durable=True)
        try:
            channel.basic_publish(CONTROL_EXCHANGE, group, json.dumps({"command": command}).encode(),
                                  mandatory=True)
        except px.UnroutableError:
            return False
        return True
    finally:
        connection.close()


if __name__ == "__main__":  # the former home of rabbitipc-ctl, still named in some docs
    import sys

    from .programs.ctl import main

    sys.exit(main())
