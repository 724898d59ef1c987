"""A broadcast control channel: one command reaches every receiver and stage of a queue.

The seed's poison pill stops one consumer of N (the one that happens to get it). Instead,
every consumer binds an exclusive queue to the direct exchange `rabbitipc.control` with its
group's name (its queue, or its exchange), so `rabbitipc-ctl stop --queue hello` reaches all
of them at once; each finishes the message in hand, acks it and exits 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import pika
import pika.exceptions as px

from .connection import AUTH_ERRORS, TRANSIENT, Broker, check_url, describe, parameters, redact
from .errors import EXIT_AUTH, EXIT_UNREACHABLE
from .topology import CONTROL_EXCHANGE

LOGGER = logging.getLogger(__name__)
COMMANDS = ("stop",)


def listen(channel, group: str, on_command) -> None:
    """Bind an exclusive queue for `group` to the control exchange and consume it with on_command."""
    channel.exchange_declare(exchange=CONTROL_EXCHANGE, exchange_type="direct", durable=True)
    queue = channel.queue_declare(queue="", exclusive=True, auto_delete=True).method.queue
    channel.queue_bind(queue, CONTROL_EXCHANGE, routing_key=group)

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


def send(url: str, group: str, command: str, ca_file: str | None = None) -> bool:
    """Publish a command for a group; False when no receiver of that group is listening."""
    connection = pika.BlockingConnection(parameters(url, "rabbitipc-ctl", ca_file))
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


def main(argv: list[str] | None = None) -> int:
    """`rabbitipc-ctl stop --queue NAME`: stop every receiver and stage consuming NAME."""
    parser = argparse.ArgumentParser(prog="rabbitipc-ctl", description=main.__doc__)
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("--queue", required=True,
                        help="the group to address: the receivers' queue (or exchange, for exclusive queues)")
    parser.add_argument("--url", type=check_url, default=None, help="broker URL (env AMQP_URL)")
    parser.add_argument("--ca-file", default=os.environ.get("RABBITIPC_CA_FILE"),
                        help="CA to verify the broker with amqps:// (env RABBITIPC_CA_FILE)")
    args = parser.parse_args(argv)
    url = Broker.from_env(args.url).url
    try:
        delivered = send(url, args.queue, args.command, args.ca_file)
    except AUTH_ERRORS as exc:
        print(f"rabbitipc-ctl: error: the broker at {redact(url)} refused: {describe(exc)}", file=sys.stderr)
        return EXIT_AUTH
    except TRANSIENT as exc:
        print(f"rabbitipc-ctl: error: broker at {redact(url)} unreachable: {describe(exc)}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if not delivered:
        print(f"rabbitipc-ctl: no receiver of {args.queue!r} is listening", file=sys.stderr)
        return 1
    print(f"{args.command} sent to every receiver of {args.queue!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
