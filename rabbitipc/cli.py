"""The two programs' entry points: parse config, build library objects, run, exit.

`python sender/send.py`, `python receiver/receive.py` and the console scripts
`rabbitipc-send` / `rabbitipc-receive` all land here.
"""

from __future__ import annotations

import logging
import socket
import sys
from typing import Callable, Sequence

from . import config
from .backoff import Backoff
from .connection import Retry, redact
from .consumer import Consumer
from .errors import EXIT_OK, FatalError
from .handlers import load_handler
from .health import Health
from .publisher import Publisher
from .sending import Pacing, payloads, run_sender
from .shutdown import StopFlag
from .topology import QueueSpec

LOGGER = logging.getLogger(__name__)

SEND_DESCRIPTION = """Publish messages to a durable RabbitMQ queue with publisher confirms.

By default it sends forever, sleeping a random interval between messages; each message is
JSON (id, seq, sent_at, host, payload), persistent, and logged once the broker confirmed it.
SIGTERM or Ctrl-C stops it cleanly after the message in flight."""

RECEIVE_DESCRIPTION = """Consume messages from a durable RabbitMQ queue and log one line each.

Each message is acknowledged only after it was handled. Text that is not rabbitipc JSON is
shown escaped and truncated; a message that cannot be handled goes to <queue>.dead with the
reason in the x-rabbitipc-reason header. SIGTERM or Ctrl-C finishes the message in hand."""


def _common(args, role: str) -> tuple[QueueSpec, Retry, StopFlag, str, Health]:
    config.setup_logging(args.log_level)
    stop = StopFlag()
    stop.install_signal_handlers()
    retry = Retry(timeout=args.retry_timeout, backoff=Backoff(step=1.0, cap=args.max_retry_delay))
    name = f"rabbitipc-{role}@{socket.gethostname()}"
    LOGGER.info("%s starting: broker %s, queue %s", role, redact(args.url), args.queue)
    return QueueSpec(args.queue, args.queue_type), retry, stop, name, Health(args.health_file)


def _run(prog: str, body: Callable[[], None]) -> int:
    try:
        body()
    except FatalError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    return EXIT_OK


def send_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the sender."""
    args = config.parse(SEND_DESCRIPTION, config.COMMON + config.SENDER, argv)
    prog = "sender"

    def body() -> None:
        spec, retry, stop, name, health = _common(args, "sender")
        publisher = Publisher(args.url, spec, retry, stop, connection_name=name, health=health)
        pacing = Pacing(args.rate, args.min_interval, args.max_interval, args.seed)
        try:
            run_sender(publisher, payloads(args.message, args.size), pacing.intervals(), args.count)
        finally:
            publisher.close()

    return _run(prog, body)


def receive_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the receiver."""
    args = config.parse(RECEIVE_DESCRIPTION, config.COMMON + config.RECEIVER, argv)
    prog = "receiver"

    def body() -> None:
        handler = load_handler(args.handler) if args.handler else None
        spec, retry, stop, name, health = _common(args, "receiver")
        consumer = Consumer(
            args.url, spec, handler, prefetch=args.prefetch, max_size=args.max_size,
            strict=args.strict, dedupe_window=args.dedupe_window, retry=retry, stop=stop,
            connection_name=name, health=health,
        )
        consumer.run()

    return _run(prog, body)
