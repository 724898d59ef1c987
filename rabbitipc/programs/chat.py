"""`rabbitipc-chat`: send, listen or enter the room.

Options before the subcommand choose the backend and the server; each is a flag, an
environment variable and a default, declared once (rabbitipc.programs.options.Option), like the
other programs' options.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from collections.abc import Mapping, Sequence

from ..chat.backend import ChatBackend
from ..chat.events import ChatMessage, username
from ..errors import EXIT_OK, EXIT_USAGE, FatalError, UnreachableError
from ..message import printable
from ..shutdown import StopFlag
from . import options as config

LOGGER = logging.getLogger(__name__)
PROG = "rabbitipc-chat"

DESCRIPTION = """The seed's chat: everyone who listens gets every message sent to the room.

  rabbitipc-chat send --username alice --message "hello"     one message ('-': one per stdin line)
  rabbitipc-chat listen --mode rich                           a live table of what is said
  rabbitipc-chat room --username alice                        the full-screen chat room
  rabbitipc-chat --backend pubsub room --username alice       the same on Google Cloud Pub/Sub

RabbitMQ: a durable fanout exchange named after the room, with a stream `<room>.history` bound
to it that gives late joiners the last messages. Pub/Sub: a topic named after the room and one
subscription per listener, created and deleted by the program (see docs/chat.md)."""

BACKENDS = ("rabbitmq", "pubsub")
_COMMON = {opt.flag: opt for opt in config.COMMON}


def _username(text: str) -> str:
    return username(text)


GLOBAL = [
    config.Option("--backend", "RABBITIPC_CHAT_BACKEND", "rabbitmq", config.choice(BACKENDS),
           "rabbitmq or pubsub (Google Cloud Pub/Sub: pip install 'rabbitipc[chat-pubsub]')", "NAME"),
    config.Option("--room", "RABBITIPC_CHAT_ROOM", "chat", config.queue_name,
           "the room: the fanout exchange (RabbitMQ) or the topic (Pub/Sub)", "NAME"),
    config.Option("--history", "RABBITIPC_CHAT_HISTORY", 20, config.non_negative_int,
           "messages a listener sees from before it started (RabbitMQ; Pub/Sub keeps none)", "N"),
    _COMMON["--url"],
    _COMMON["--ca-file"],
    config.Option("--project", "PUBSUB_PROJECT_ID", None, config.text,
           "Google Cloud project of the Pub/Sub topic", "ID", shown_default="$GOOGLE_CLOUD_PROJECT"),
    _COMMON["--retry-timeout"],
    _COMMON["--max-retry-delay"],
    config.Option("--log-level", "RABBITIPC_LOG_LEVEL", "INFO", config.choice(config.LOG_LEVELS, upper=True),
           "DEBUG, INFO, WARNING or ERROR (send and listen log on stderr; the room logs nothing)", "LEVEL"),
]
USER = config.Option("--username", "RABBITIPC_CHAT_USERNAME", None, _username,
                     "your name in the chat (1-32 characters)", "NAME", shown_default="$USER")
SEND = [
    USER,
    config.Option("--message", "RABBITIPC_CHAT_MESSAGE", None, config.text,
           "what to say; '-' sends each line of stdin as a message", "TEXT", shown_default="required"),
]
LISTEN = [
    config.Option("--mode", "RABBITIPC_CHAT_MODE", "print", config.choice(("print", "rich")),
           "print (a line per message) or rich (a live table keeping the latest rows)", "MODE"),
    config.Option("--count", "RABBITIPC_CHAT_COUNT", None, config.positive_int,
           "stop after N messages", "N", shown_default="forever"),
]
ROOM = [USER]
SUBCOMMANDS = {
    "send": (SEND, "send one message, or one per line of stdin"),
    "listen": (LISTEN, "print what is said in the room, as lines or as a live table"),
    "room": (ROOM, "the full-screen chat room: messages above, your input line below"),
}


def parse(argv: Sequence[str] | None, environ: Mapping[str, str] | None = None) -> argparse.Namespace:
    """Flags over environment over defaults, for the global and the subcommand's options."""
    environ = os.environ if environ is None else environ
    parser = config.build_parser(PROG, DESCRIPTION, GLOBAL)
    commands = parser.add_subparsers(dest="command", metavar="{send,listen,room}", required=True)
    for name, (options, help_text) in SUBCOMMANDS.items():
        # The subcommand's flags come from the same declarations, through build_parser.
        commands.add_parser(name, help=help_text, description=help_text, conflict_handler="resolve",
                            parents=[config.build_parser(None, help_text, options)],
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    args = parser.parse_args(argv)
    config.apply_environment(parser, args, GLOBAL + SUBCOMMANDS[args.command][0], environ)
    if args.command in ("send", "room") and args.username is None:
        try:
            args.username = username(environ.get("USER") or getpass.getuser())
        except (ValueError, KeyError, OSError):
            parser.error("--username is required (no $USER to default to)")
    if args.command == "send" and args.message is None:
        parser.error("send needs --message TEXT (or --message - to read lines from stdin)")
    if args.backend == "pubsub":
        args.project = args.project or environ.get("GOOGLE_CLOUD_PROJECT")
        if not args.project:
            parser.error("--backend pubsub needs --project, PUBSUB_PROJECT_ID or GOOGLE_CLOUD_PROJECT")
    return args


def open_backend(args: argparse.Namespace) -> ChatBackend:
    """The backend the options ask for; the rest of the program never knows which."""
    name = f"rabbitipc-chat-{getattr(args, 'username', None) or 'listener'}"
    if args.backend == "pubsub":
        from ..chat.pubsub import PubSubBackend

        safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)
        return PubSubBackend(args.project, args.room, name=safe)
    from ..chat.rabbitmq import RabbitBackend

    return RabbitBackend(config.broker(args), args.room, name=name)


def _send(args: argparse.Namespace, backend: ChatBackend) -> None:
    lines = (line.rstrip("\n") for line in sys.stdin) if args.message == "-" else [args.message]
    for text in lines:
        if not text:
            continue
        message = ChatMessage.new(args.username, text)
        backend.send(message)
        LOGGER.info("sent id=%s as %s: %d characters", message.id, args.username, len(text))


def _listen(args: argparse.Namespace, backend: ChatBackend) -> None:
    from ..chat.printer import LiveTable, print_events

    stop = StopFlag()
    stop.install_signal_handlers()
    if args.mode == "rich":
        with LiveTable(stop, args.count) as table:
            backend.listen(stop, args.history, table.on_event)
    else:
        backend.listen(stop, args.history, print_events(stop, args.count))


def _room(args: argparse.Namespace, backend: ChatBackend) -> int:
    from ..chat.room import ChatRoom

    room = ChatRoom(backend, args.username, args.history)
    room.run()
    if room.error is not None:
        raise room.error
    if room.unsent:
        raise UnreachableError(f"{room.unsent} typed line(s) not sent: the server was still away when you left")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.command == "room":
        logging.disable(logging.CRITICAL)  # the screen is the room's: no log lines over it
    else:
        config.setup_logging(args.log_level)
        if getattr(args, "mode", None) == "rich" and args.log_level in ("DEBUG", "INFO"):
            logging.getLogger().setLevel(logging.WARNING)  # the table shows the link; only problems on stderr
        elif args.command == "listen" and args.log_level == "INFO":
            # The printer says "connected to ..." once subscribed: the connection's own line would repeat it.
            logging.getLogger("rabbitipc.connection").setLevel(logging.WARNING)
    backend = None
    try:
        backend = open_backend(args)
        if args.command == "send":
            _send(args, backend)
        elif args.command == "listen":
            _listen(args, backend)
        else:
            return _room(args, backend)
    except FatalError as exc:
        print(f"chat: error: {printable(str(exc), None)}", file=sys.stderr, flush=True)  # may quote the server
        return exc.exit_code
    except ImportError as exc:
        print(f"chat: error: {exc.name or exc} is missing: pip install 'rabbitipc[chat]'", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if backend is not None:
            backend.close()
    return EXIT_OK
