"""The programs' entry points: parse the options, build library objects, run, exit.

`python sender/send.py`, `python receiver/receive.py` and the console scripts `rabbitipc-send`,
`rabbitipc-receive`, `rabbitipc-stage` all land here.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from urllib.parse import urlsplit

from .. import defaults, localurls, metrics, wire
from ..backoff import RetryPolicy
from ..connection import check_url, has_password
from ..consume.consumer import Consumer
from ..consume.handlers import load_handler
from ..consume.retries import RetrySettings
from ..consume.settings import ConsumerSettings
from ..consume.sinks import JsonlSink
from ..errors import EXIT_OK, EXIT_USAGE, AuthError, FatalError
from ..health import Health
from ..localurls import LocalUrl
from ..publish.engine import StreamPublisher
from ..publish.settings import PublisherSettings
from ..shutdown import StopFlag
from ..topology import Pattern, Route, Subscription
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
shown escaped and truncated. A message whose handler fails is tried again after a backoff that
waits on the broker (--max-attempts in all); one that cannot be handled goes to <queue>.dead
with the reason in the x-rabbitipc-reason header. SIGTERM, Ctrl-C or `rabbitipc-ctl stop --queue NAME`
finishes the message in hand (within --grace-period) and stops."""

STAGE_DESCRIPTION = """A pipeline stage: consume a queue, apply --handler, publish its result to --forward-to.

The input is acked only after the output is confirmed, so a stage killed at any point loses
nothing; output ids derive from input ids, so a redone message is dropped downstream as a
duplicate. A failing handler is tried again after a backoff (--max-attempts in all). An output
the broker refuses (say, over its max_message_size) sends the input to <queue>.dead with the
reason. Each output counts its hops: an input already forwarded --max-hops times (a cycle of
stages) goes to <queue>.dead. Run more copies to scale a stage.
A handler returning None forwards nothing."""


#: Each program's user in the local broker's URL file (.rabbitmq/urls.env).
LOCAL_USER = {"sender": "SENDER_AMQP_URL", "receiver": "RECEIVER_AMQP_URL", "stage": "ADMIN_AMQP_URL"}


def local_url(args: argparse.Namespace, role: str) -> LocalUrl | None:
    """With neither --url nor AMQP_URL: the role's URL from the local broker's file, if there is one
    (flag beats AMQP_URL beats the file beats the localhost default). A bad URL there exits 2."""
    if "url" in args.from_flags or "url" in args.from_env:
        return None
    found = localurls.lookup(LOCAL_USER[role])
    if found is not None:
        try:
            check_url(found.url)
        except ValueError as exc:
            raise FatalError(f"{LOCAL_USER[role]} in {found.path}: {exc}", EXIT_USAGE) from None
    return found


class Setup:
    """What both programs build from the common options."""

    def __init__(self, args: argparse.Namespace, role: str) -> None:
        options.setup_logging(args.log_level)
        self.stop = StopFlag()
        self.stop.install_signal_handlers()
        local = local_url(args, role)
        if local is not None:
            args.url = local.url
        # Built once from the flags, environment or local broker's file; everything below connects through it.
        self.broker = options.broker(args)
        self.name = f"rabbitipc-{role}@{socket.gethostname()}"
        self.health = Health(args.health_file)
        self.health.details = metrics.snapshot  # the health file says why: rabbitipc-ctl status reads it
        self.queue = args.queue
        target = f"queue {args.queue}" if args.pattern.to_queue else f"{args.pattern} exchange"
        LOGGER.info("%s starting: broker %s%s, %s", role, self.broker.redacted,
                    f" (from {local.path})" if local else "", target)
        LOGGER.info("%s", wire.describe())
        if args.metrics_port:
            try:
                metrics.serve(args.metrics_port)
            except OSError as exc:
                raise FatalError(f"--metrics-port {args.metrics_port}: cannot listen: {exc.strerror or exc}",
                                 EXIT_USAGE) from None
        if "url" in args.from_flags and has_password(args.url):
            LOGGER.warning("the password in --url is visible to every user of this machine (ps); "
                           "prefer the AMQP_URL environment variable")


def _run(prog: str, body: Callable[[], None], args: argparse.Namespace) -> int:
    try:
        body()
    except FatalError as exc:
        print(f"{prog}: error: {exc}{_guest_hint(exc, args.url)}", file=sys.stderr, flush=True)
        return exc.exit_code
    return EXIT_OK


def _guest_hint(exc: FatalError, url: str) -> str:
    """For guest refused where the local broker (which has no guest) wrote its users' URLs: where they are."""
    path = localurls.find()
    if not isinstance(exc, AuthError) or urlsplit(url).username != "guest" or path is None:
        return ""
    return (f"; the local broker has no guest, its users' URLs are in {path}: without --url and AMQP_URL the "
            f"programs take theirs from there (in a shell: {localurls.shell_hint(path)})")


def send_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the sender."""
    args = options.parse(SEND_DESCRIPTION, options.COMMON + options.SENDER, argv, prog="rabbitipc-send")

    def body() -> None:
        setup = Setup(args, "sender")
        if args.pattern.answers:
            raise FatalError("--pattern rpc is the receiver's (the responder); to call it: rabbitipc-ctl call "
                             "--queue NAME PAYLOAD", EXIT_USAGE)
        route = Route(args.pattern, setup.queue or defaults.QUEUE, args.queue_type, args.exchange, args.routing_key,
                      args.exchange_durable, args.queue_durable, single_active_consumer=args.single_active_consumer,
                      max_priority=args.max_priority)
        if args.http:
            from .http_front import serve

            # Each connection attempt gets 3 s at most: meanwhile POSTs wait, after it they get 503 at once.
            http_broker = replace(setup.broker, retry=RetryPolicy(min(args.retry_timeout or 3, 3), 0.5, 1))
            http_settings = PublisherSettings(setup.name, args.window, program="http")
            serve(lambda: StreamPublisher(http_broker, route, http_settings, stop=setup.stop, health=setup.health),
                  args.http)
            return
        publisher = StreamPublisher(setup.broker, route, PublisherSettings(setup.name, args.window, program="sender"),
                                    stop=setup.stop, health=setup.health)
        # Lines of stdin go out as they come; --rate paces them.
        rate = 0 if args.message == "-" and args.rate is None else args.rate
        pacing = Pacing(rate, args.min_interval, args.max_interval, args.seed)
        try:
            run_sender(publisher, payloads(args.message, args.size), pacing.intervals(), args.count,
                       log_rate=args.log_rate, persistent=not args.transient, priority=args.priority)
        finally:
            publisher.close()

    return _run("rabbitipc-send", body, args)


def _consumer(args: argparse.Namespace, role: str) -> Consumer:
    if args.pattern.answers and not args.handler:
        raise FatalError("--pattern rpc needs --handler MOD:FUNC: its return value is the reply", EXIT_USAGE)
    if args.forward_to is not None and args.forward_to == args.queue:
        raise FatalError(f"--forward-to {args.forward_to} is the stage's own --queue: each result would come "
                         "back to it, forever", EXIT_USAGE)
    handler = load_handler(args.handler) if args.handler else None
    setup = Setup(args, role)
    subscription = Subscription(args.pattern, setup.queue, args.queue_type, args.exchange, args.bind,
                                args.exchange_durable, args.queue_durable, args.single_active_consumer,
                                args.max_priority)
    forward = (Route(Pattern.WORK, args.forward_to, args.queue_type, max_priority=args.max_priority)
               if args.forward_to else None)  # a priority queue's stage forwards to one: priorities go on
    settings = ConsumerSettings(
        prefetch=args.prefetch, max_size=args.max_size, strict=args.strict, dedupe_window=args.dedupe_window,
        dedupe_store=args.dedupe_store, connection_name=setup.name, forward_to=forward, max_hops=args.max_hops,
        sink=JsonlSink(args.jsonl) if args.jsonl else None, poison_pill=args.poison_pill,
        count=args.count, log_rate=args.log_rate, grace_period=args.grace_period,
        program=role, retry=RetrySettings(args.max_attempts, args.min_backoff, args.max_backoff),
        inline_handler=args.inline_handler,
    )
    return Consumer(setup.broker, subscription, handler, settings, stop=setup.stop, health=setup.health)


def receive_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the receiver."""
    args = options.parse(RECEIVE_DESCRIPTION, options.COMMON + options.RECEIVER, argv, prog="rabbitipc-receive")
    return _run("rabbitipc-receive", lambda: _consumer(args, "receiver").run(), args)


def stage_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of a pipeline stage: a receiver that must have --handler and --forward-to."""
    args = options.parse(STAGE_DESCRIPTION, options.COMMON + options.RECEIVER, argv, prog="rabbitipc-stage")
    missing = [flag for flag, value in (("--handler", args.handler), ("--forward-to", args.forward_to)) if not value]
    if missing:
        print(f"rabbitipc-stage: error: {' and '.join(missing)} required (see --help)", file=sys.stderr)
        return EXIT_USAGE
    return _run("rabbitipc-stage", lambda: _consumer(args, "stage").run(), args)
