"""rabbitipc-ctl: stop the receivers of a queue, call a responder, look after dead letters, show status.

The library parts are rabbitipc.control (the control channel), rabbitipc.deadletters and
rabbitipc.status; --url and --ca-file are the programs' own options (options.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

import pika.exceptions as px

from .. import defaults
from ..backoff import RetryPolicy
from ..connection import Broker, describe
from ..control import COMMANDS, send
from ..deadletters import Action, DeadLetters, Selection
from ..errors import (
    EXIT_AUTH,
    EXIT_FAILURE,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_TLS,
    EXIT_UNDELIVERABLE,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    FatalError,
    ReplyCode,
    exit_codes_help,
)
from ..message import printable
from . import options

#: --url and --ca-file, declared once with the other programs' options.
BROKER_OPTIONS = [replace(options.URL, shown_default=defaults.URL.replace(":guest@", ":***@")), options.CA_FILE]
#: The codes `rabbitipc-ctl dead` returns (6: the broker refused a replayed message; 10: no such queue).
DEAD_EXIT_CODES = (EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_AUTH, EXIT_UNREACHABLE, EXIT_UNDELIVERABLE, EXIT_TLS,
                   EXIT_NOT_FOUND)
#: ctl's own meaning of 1, besides an unexpected error.
CTL_MEANINGS = {EXIT_FAILURE: "no receiver listening / no reply (call: timeout, or the responder failed), "
                              "or an unexpected error"}


def main(argv: list[str] | None = None) -> int:
    """`rabbitipc-ctl stop --queue NAME`: stop every receiver and stage consuming NAME.
    `rabbitipc-ctl call [--queue NAME] PAYLOAD`: call a responder (receiver --pattern rpc, or the
    tutorial's rpc_server.py) and print its reply.
    `rabbitipc-ctl dead list|replay|purge --queue NAME`: the dead letters of NAME (see dead --help).
    `rabbitipc-ctl status [--health-file PATH]... [--queue NAME]`: per program (from its health file)
    the broker node, connection, counts, in flight and latency percentiles; per queue the backlog,
    consumers and dead letters."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["dead"]:
        return dead_main(argv[1:])
    parser = options.OneLineParser(prog="rabbitipc-ctl", description=main.__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=exit_codes_help(DEAD_EXIT_CODES, CTL_MEANINGS))  # dead runs from here too
    parser.add_argument("command", choices=(*COMMANDS, "call", "dead", "status"))
    parser.add_argument("payload", nargs="?", help="call: the request body (text, sent as is)")
    parser.add_argument("--queue", default=None,
                        help="stop: the group to address, the receivers' queue (or exchange, for exclusive "
                             f"queues); call: the responder's queue (default {defaults.RPC_QUEUE})")
    parser.add_argument("--health-file", action="append", default=[],
                        help="status: a program's --health-file (repeat for several)")
    parser.add_argument("--timeout", type=float, default=30.0, help="call: seconds to wait for the reply")
    options.add_options(parser, BROKER_OPTIONS)
    args = parser.parse_intermixed_args(argv)  # the payload may come after the options
    options.apply_environment(parser, args, BROKER_OPTIONS, os.environ)
    if args.command == "dead":
        parser.error("dead comes first, with its own options: rabbitipc-ctl dead {list,replay,purge} --queue NAME")
    broker = Broker(args.url, args.ca_file)
    if args.command == "status":
        return _status(broker, args.health_file, args.queue)
    if args.command == "call":
        if args.payload is None:
            parser.error("call needs a PAYLOAD")
        return _call(broker, args.queue or defaults.RPC_QUEUE, args.payload, args.timeout)
    if args.queue is None:
        parser.error("stop needs --queue NAME")
    try:
        delivered = send(broker, args.queue, args.command)
    except FatalError as exc:  # connect()'s refusals: credentials, TLS, unreachable
        print(f"rabbitipc-ctl: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except px.ChannelClosedByBroker as exc:  # 403: this user may not use the control exchange
        print(f"rabbitipc-ctl: error: the broker at {broker.redacted} refused: {describe(exc)}", file=sys.stderr)
        return EXIT_AUTH if exc.reply_code == ReplyCode.ACCESS_REFUSED else EXIT_FAILURE
    if not delivered:
        print(f"rabbitipc-ctl: no receiver of {args.queue!r} is listening", file=sys.stderr)
        return 1
    print(f"{args.command} sent to every receiver of {args.queue!r}")
    return 0


def dead_main(argv: list[str]) -> int:
    """`rabbitipc-ctl dead`: list, replay or purge the messages handlers refused, parked in NAME.dead.

    list leaves every message where it is: each is read with a manual ack and returned unacked
    (a quorum queue counts that as a delivery in x-delivery-count; RabbitMQ sets no delivery-limit
    by default, so none is dropped, unless a policy sets one on the dead-letter queue).
    replay publishes each selected message back to NAME with its message id and properties (the
    dead-letter headers and attempts removed), confirmed, and only then takes it off NAME.dead:
    a replay killed midway leaves at worst one message in both, which the receivers' dedupe window
    drops by id when it is replayed again."""
    parser = options.OneLineParser(prog="rabbitipc-ctl dead", description=dead_main.__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=exit_codes_help(DEAD_EXIT_CODES))
    parser.add_argument("action", choices=[action.value for action in Action])
    parser.add_argument("--queue", required=True, help="the work queue; its dead letters are in QUEUE.dead")
    parser.add_argument("--limit", type=_positive_int, default=None,
                        help="list: show at most this many (default: all)")
    parser.add_argument("--reason", default=None, help="replay: only messages whose reason contains TEXT")
    parser.add_argument("--older-than", type=float, default=None, metavar="S",
                        help="replay: only messages sent more than S seconds ago")
    parser.add_argument("--id", dest="ids", action="append", default=[], metavar="ID",
                        help="replay: only the message with this id (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="replay: show what would be replayed, change nothing")
    parser.add_argument("--yes", action="store_true", help="purge: required, to confirm deleting every dead letter")
    options.add_options(parser, BROKER_OPTIONS)
    parser.add_argument("--retry-timeout", type=float, default=10.0,
                        help="seconds to keep trying an unreachable broker (default 10)")
    args = parser.parse_args(argv)
    options.apply_environment(parser, args, BROKER_OPTIONS, os.environ)
    action = Action(args.action)
    if action is Action.PURGE and not args.yes:
        parser.error(f"purge deletes every message in {args.queue}.dead: add --yes to confirm")
    broker = Broker(args.url, args.ca_file, RetryPolicy(timeout=args.retry_timeout))
    try:
        with DeadLetters(broker, args.queue) as dead:
            if action is Action.LIST:
                report = dead.list(args.limit)
                for letter in report.letters:
                    print(letter.line())
                print(f"{len(report.letters)} shown from {dead.dead_letter_queue}")
            elif action is Action.REPLAY:
                selection = Selection(args.reason, args.older_than, frozenset(args.ids))
                report = dead.replay(selection, args.dry_run)
                for letter in report.letters:
                    print(("would replay " if args.dry_run else "replayed ") + letter.line())
                if args.dry_run:
                    print(f"{len(report.letters)} would be replayed to {args.queue} (dry run: nothing changed)")
                else:
                    print(f"{report.moved} replayed to {args.queue}")
            else:
                report = dead.purge()
                print(f"{report.moved} purged from {dead.dead_letter_queue}")
    except FatalError as exc:
        print(f"rabbitipc-ctl: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _status(broker: Broker, health_files: list[str], queue: str | None) -> int:
    """The status screen; the programs' queues (and --queue) are asked of the broker."""
    from ..status import queue_numbers, read_health, render

    programs, queues = [], [queue] if queue else []
    for path in health_files:
        try:
            age, rows = read_health(path)
        except (OSError, ValueError) as exc:
            print(f"rabbitipc-ctl: error: cannot read health file {path}: {exc.__class__.__name__}", file=sys.stderr)
            return EXIT_FAILURE
        programs.append((path, age, rows))
        queues += [row["queue"] for row in rows if row.get("role") == "consumer" and row["queue"] not in queues]
    numbers = {}
    if queues:
        try:
            numbers = queue_numbers(broker, queues)
        except FatalError as exc:
            print(f"rabbitipc-ctl: broker at {broker.redacted} not asked: {exc}", file=sys.stderr)
    print(render(programs, numbers))
    return 0


def _call(broker: Broker, queue: str, payload: str, timeout: float) -> int:
    """One request/reply; the reply on stdout, any failure one line on stderr.

    Both come from the responder: control characters are escaped (message.printable), so no
    reply can drive the terminal it is printed on."""
    from ..rpc import RpcClient, RpcError

    try:
        with RpcClient(broker, queue, timeout=timeout, retry=RetryPolicy(timeout=min(timeout, 10.0)),
                       connection_name="rabbitipc-ctl") as client:
            reply = client.call(payload, timeout)
    except FatalError as exc:
        print(f"rabbitipc-ctl: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except RpcError as exc:
        print(f"rabbitipc-ctl: error: {printable(str(exc), None)}", file=sys.stderr)
        return 1
    print(printable(reply, None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
