"""The programs' entry points: parse the options, build library objects, run, exit.

`python sender/send.py`, `python receiver/receive.py`, `python stage/stage.py` and the console
scripts `rabbitipc-send`, `rabbitipc-receive`, `rabbitipc-stage` all land here.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from collections.abc import Callable, Sequence

from .. import defaults, wire
from ..backoff import Backoff
from ..connection import Broker, Retry, has_password
from ..consume.consumer import Consumer
from ..consume.handlers import load_handler
from ..consume.settings import ConsumerSettings
from ..consume.sinks import JsonlSink
from ..errors import EXIT_OK, EXIT_USAGE, FatalError
from ..health import Health
from ..publish.engine import StreamPublisher
from ..shutdown import StopFlag
from ..topology import Route, Subscription
from . import options
from .sender import Pacing, payloads, run_sender

LOGGER = logging.getLogger(__name__)

SEND_DESCRIPTION = f"""Publish messages to RabbitMQ with publisher confirms.

By default it sends forever to the durable queue '{defaults.QUEUE}', sleeping a random interval between
messages; each message is JSON (id, seq, sent_at, host, payload), persistent, and logged once
the broker confirmed it. Up to --window messages stream ahead of their confirms; any not
confirmed when a connection drops is published again (the receiver skips duplicates by id).
With --http it instead publishes what web clients POST to /messages.
SIGTERM or Ctrl-C stops it cleanly; messages in flight get up to 10 s to be confirmed."""

RECEIVE_DESCRIPTION = """Consume messages from RabbitMQ and log one line each (up to --log-rate a second).

Each message is acknowledged only after it was handled. Text that is not rabbitipc JSON is
shown escaped and truncated; a message that cannot be handled goes to <queue>.dead with the
reason in the x-rabbitipc-reason header. SIGTERM, Ctrl-C or `rabbitipc-ctl stop --queue NAME`
finishes the message in hand and stops."""

STAGE_DESCRIPTION = """A pipeline stage: consume a queue, apply --handler, publish its result to --forward-to.

The input is acked only after the output is confirmed, so a stage killed at any point loses
nothing; output ids derive from input ids, so a redone message is dropped downstream as a
duplicate. Run more copies to scale a stage. A handler returning None forwards nothing."""


class Setup:
    """What both programs build from the common options."""

    def __init__(self, args: argparse.Namespace, role: str) -> None:
        options.setup_logging(args.log_level)
        self.stop = StopFlag()
        self.stop.install_signal_handlers()
        # Built once from the flags and environment; everything below connects through it.
        self.broker = Broker(args.url, args.ca_file,
                             Retry(timeout=args.retry_timeout, backoff=Backoff(step=1.0, cap=args.max_retry_delay)))
        self.name = f"rabbitipc-{role}@{socket.gethostname()}"
        self.health = Health(args.health_file)
        self.queue = args.queue
        target = f"queue {args.queue}" if args.pattern == "work" else f"{args.pattern} exchange"
        LOGGER.info("%s starting: broker %s, %s", role, self.broker.redacted, target)
        LOGGER.info("%s", wire.describe())
        if "url" in args.from_flags and has_password(args.url):
            LOGGER.warning("the password in --url is visible to every user of this machine (ps); "
                           "prefer the AMQP_URL environment variable")


def _run(prog: str, body: Callable[[], None]) -> int:
    try:
        body()
    except FatalError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    return EXIT_OK


def send_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the sender."""
    args = options.parse(SEND_DESCRIPTION, options.COMMON + options.SENDER, argv)

    def body() -> None:
        setup = Setup(args, "sender")
        if args.pattern == "rpc":
            raise FatalError("--pattern rpc is the receiver's (the responder); to call it: rabbitipc-ctl call "
                             "--queue NAME PAYLOAD", EXIT_USAGE)
        route = Route(args.pattern, setup.queue or defaults.QUEUE, args.queue_type, args.exchange, args.routing_key,
                      args.exchange_durable, args.queue_durable)
        if args.http:
            from .http_front import serve

            # Each connection attempt gets 3 s at most: meanwhile POSTs wait, after it they get 503 at once.
            http_retry = Retry(timeout=min(args.retry_timeout or 3, 3), backoff=Backoff(step=0.5, cap=1))
            serve(lambda: StreamPublisher(setup.broker.url, route, http_retry, setup.stop, setup.name,
                                          window=args.window, health=setup.health, ca_file=setup.broker.ca_file),
                  args.http)
            return
        publisher = StreamPublisher(setup.broker.url, route, setup.broker.retry, setup.stop, setup.name,
                                    window=args.window, health=setup.health, ca_file=setup.broker.ca_file)
        pacing = Pacing(args.rate, args.min_interval, args.max_interval, args.seed)
        try:
            run_sender(publisher, payloads(args.message, args.size), pacing.intervals(), args.count,
                       log_rate=args.log_rate, persistent=not args.transient)
        finally:
            publisher.close()

    return _run("sender", body)


def _consumer(args: argparse.Namespace, role: str) -> Consumer:
    if args.pattern == "rpc" and not args.handler:
        raise FatalError("--pattern rpc needs --handler MOD:FUNC: its return value is the reply", EXIT_USAGE)
    handler = load_handler(args.handler) if args.handler else None
    setup = Setup(args, role)
    subscription = Subscription(args.pattern, setup.queue, args.queue_type, args.exchange, args.bind,
                                args.exchange_durable, args.queue_durable)
    forward = Route("work", args.forward_to, args.queue_type) if args.forward_to else None
    settings = ConsumerSettings(
        prefetch=args.prefetch, max_size=args.max_size, strict=args.strict, dedupe_window=args.dedupe_window,
        connection_name=setup.name, forward_to=forward, sink=JsonlSink(args.jsonl) if args.jsonl else None,
        poison_pill=args.poison_pill, ca_file=setup.broker.ca_file, count=args.count, log_rate=args.log_rate,
    )
    return Consumer(setup.broker.url, subscription, handler, settings, retry=setup.broker.retry, stop=setup.stop,
                    health=setup.health)


def receive_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the receiver."""
    args = options.parse(RECEIVE_DESCRIPTION, options.COMMON + options.RECEIVER, argv)
    return _run("receiver", lambda: _consumer(args, "receiver").run())


def stage_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of a pipeline stage: a receiver that must have --handler and --forward-to."""
    args = options.parse(STAGE_DESCRIPTION, options.COMMON + options.RECEIVER, argv)
    missing = [flag for flag, value in (("--handler", args.handler), ("--forward-to", args.forward_to)) if not value]
    if missing:
        print(f"stage: error: {' and '.join(missing)} required (see --help)", file=sys.stderr)
        return EXIT_USAGE
    return _run("stage", lambda: _consumer(args, "stage").run())
