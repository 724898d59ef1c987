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
import ssl
import sys

import pika
import pika.exceptions as px

from . import defaults
from .connection import AUTH_ERRORS, TRANSIENT, Broker, Retry, check_url, describe, parameters, redact, root_cause
from .errors import EXIT_AUTH, EXIT_FAILURE, EXIT_TLS, EXIT_UNREACHABLE, FatalError
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
    """`rabbitipc-ctl stop --queue NAME`: stop every receiver and stage consuming NAME.
    `rabbitipc-ctl call [--queue NAME] PAYLOAD`: call a responder (receiver --pattern rpc, or the
    tutorial's rpc_server.py) and print its reply."""
    parser = argparse.ArgumentParser(prog="rabbitipc-ctl", description=main.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="exit codes: 0 done, 1 no receiver listening / no reply (call: "
                                            "timeout, or the responder failed), 3 refused credentials, "
                                            "4 broker unreachable, 7 the broker's TLS certificate not trusted")
    parser.add_argument("command", choices=(*COMMANDS, "call"))
    parser.add_argument("payload", nargs="?", help="call: the request body (text, sent as is)")
    parser.add_argument("--queue", default=None,
                        help="stop: the group to address, the receivers' queue (or exchange, for exclusive "
                             f"queues); call: the responder's queue (default {defaults.RPC_QUEUE})")
    parser.add_argument("--timeout", type=float, default=30.0, help="call: seconds to wait for the reply")
    parser.add_argument("--url", type=check_url, default=None, help="broker URL (env AMQP_URL)")
    parser.add_argument("--ca-file", default=os.environ.get("RABBITIPC_CA_FILE"),
                        help="CA to verify the broker with amqps:// (env RABBITIPC_CA_FILE)")
    args = parser.parse_intermixed_args(argv)  # the payload may come after the options
    url = Broker.from_env(args.url).url
    if args.command == "call":
        if args.payload is None:
            parser.error("call needs a PAYLOAD")
        return _call(url, args.queue or defaults.RPC_QUEUE, args.payload, args.timeout, args.ca_file)
    if args.queue is None:
        parser.error("stop needs --queue NAME")
    try:
        delivered = send(url, args.queue, args.command, args.ca_file)
    except AUTH_ERRORS as exc:
        print(f"rabbitipc-ctl: error: the broker at {redact(url)} refused: {describe(exc)}", file=sys.stderr)
        return EXIT_AUTH
    except px.ChannelClosedByBroker as exc:  # 403: this user may not use the control exchange
        print(f"rabbitipc-ctl: error: the broker at {redact(url)} refused: {describe(exc)}", file=sys.stderr)
        return EXIT_AUTH if exc.reply_code == 403 else EXIT_FAILURE
    except (ssl.SSLError, *TRANSIENT) as exc:
        cause = root_cause(exc)
        if isinstance(cause, ssl.SSLCertVerificationError):
            print(f"rabbitipc-ctl: error: the certificate of {redact(url)} is not trusted: {cause.verify_message}"
                  f"{'' if args.ca_file else ' (give the CA with --ca-file)'}", file=sys.stderr)
            return EXIT_TLS
        if isinstance(cause, ssl.SSLError):
            print(f"rabbitipc-ctl: error: TLS with {redact(url)} failed: {cause.reason or cause}", file=sys.stderr)
            return EXIT_TLS
        print(f"rabbitipc-ctl: error: broker at {redact(url)} unreachable: {describe(exc)}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if not delivered:
        print(f"rabbitipc-ctl: no receiver of {args.queue!r} is listening", file=sys.stderr)
        return 1
    print(f"{args.command} sent to every receiver of {args.queue!r}")
    return 0


def _call(url: str, queue: str, payload: str, timeout: float, ca_file: str | None) -> int:
    """One request/reply; the reply on stdout, any failure one line on stderr."""
    from .rpc import RpcClient, RpcError

    retry = Retry(timeout=min(timeout, 10.0))
    try:
        with RpcClient(url, queue, timeout=timeout, retry=retry, connection_name="rabbitipc-ctl",
                       ca_file=ca_file) as client:
            reply = client.call(payload, timeout)
    except FatalError as exc:
        print(f"rabbitipc-ctl: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except RpcError as exc:
        print(f"rabbitipc-ctl: error: {exc}", file=sys.stderr)
        return 1
    print(reply)
    return 0


if __name__ == "__main__":
    sys.exit(main())
