"""One way to configure both programs: flag beats environment variable beats default.

Every option is declared once (flag, environment variable, default, validator, help), so
--help, the environment and the checks cannot drift apart. Any invalid value, from a flag
or from the environment, ends the program with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .. import defaults, localurls
from ..backoff import RetryPolicy
from ..connection import Broker, check_url
from ..errors import EXIT_USAGE, exit_codes_help
from ..topology import PATTERNS, QUEUE_TYPES, Pattern

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


# -- validators: each takes the raw text and returns the value or raises ValueError ----------
def queue_name(text: str) -> str:
    if not text or len(text.encode()) > 250:
        raise ValueError("must be 1 to 250 bytes")
    if text.startswith("amq."):
        raise ValueError("names starting with 'amq.' are reserved by RabbitMQ")
    return text


def _number(kind: Callable[[str], Any], minimum: float, description: str,
            maximum: float = float("inf")) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"{text!r} is not {description}") from None
        if value != value or value < minimum or value > maximum or value in (float("inf"),):
            raise ValueError(f"{text!r} is not {description}")
        return value

    convert.__name__ = description
    return convert


positive_int = _number(int, 1, "a whole number of at least 1")
#: AMQP's prefetch count is a 16-bit field.
prefetch_count = _number(int, 1, "a whole number from 1 to 65535", 65535)
#: RabbitMQ's largest max_message_size (512 MiB); the default limit is 128 MiB.
message_size = _number(int, 1, "a whole number from 1 to 536870912 (RabbitMQ's largest message)", 536870912)
non_negative_int = _number(int, 0, "a whole number of at least 0")
#: x-max-priority and a message's priority (an AMQP octet).
priority_levels = _number(int, 1, "a whole number from 1 to 255", 255)
message_priority = _number(int, 0, "a whole number from 0 to 255", 255)
non_negative_float = _number(float, 0, "a number of at least 0")


def choice(options: Sequence[str], upper: bool = False) -> Callable[[str], str]:
    def convert(text: str) -> str:
        value = text.upper() if upper else text
        if value not in options:
            raise ValueError(f"{text!r} is not one of {', '.join(options)}")
        return value

    return convert


def pattern(text: str) -> Pattern:
    return Pattern(choice(PATTERNS)(text))


def boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{text!r} is not a boolean (true/false)")


def text(value: str) -> str:
    return value


def utf8_text(value: str) -> str:
    """Text that is valid UTF-8 (bytes that are not arrive as surrogates from argv and the environment)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("is not valid UTF-8") from None
    return value


def short_string(value: str) -> str:
    """An AMQP short string (exchange name, routing or binding key): at most 255 bytes of UTF-8."""
    if len(utf8_text(value).encode()) > 255:
        raise ValueError(f"is {len(value.encode())} bytes; AMQP allows at most 255")
    return value


def readable_file(value: str) -> str:
    if not os.path.isfile(value) or not os.access(value, os.R_OK):
        raise ValueError(f"{value!r} is not a readable file")
    return value


#: A TCP port to listen on.
tcp_port = _number(int, 1, "a TCP port from 1 to 65535", 65535)


def key_list(value: str) -> tuple[str, ...]:
    keys = tuple(short_string(key.strip()) for key in value.split(",") if key.strip())
    if not keys:
        raise ValueError("needs at least one key")
    return keys


def host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT")
    host = host or "127.0.0.1"
    try:
        socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ValueError(f"host {host!r} cannot be resolved ({exc})") from None
    return host, int(port)


# -- declarations ----------------------------------------------------------------------
@dataclass(frozen=True)
class Option:
    """One setting: its flag, its environment variable, its default and how to read it."""

    flag: str
    env: str
    default: Any
    convert: Callable[[str], Any]
    help: str
    metavar: str | None = None
    is_switch: bool = False
    shown_default: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


#: The shown default of --url in the programs, which read the local broker's URL file.
LOCAL_URL_DEFAULT = (f"this program's URL in {localurls.RELATIVE} (the local broker's users), when the current "
                     "directory or the checkout has that file; else " + defaults.URL.replace(":guest@", ":***@"))
# -- what connects: the options a Broker is built from (broker()) ----------------------------
URL = Option("--url", "AMQP_URL", defaults.URL, check_url,
             "broker URL, amqp:// or amqps://; a cluster's nodes as several URLs separated by ';', tried in "
             "turn (the passwords are never logged)", "URL", shown_default=LOCAL_URL_DEFAULT)
CA_FILE = Option("--ca-file", "RABBITIPC_CA_FILE", None, readable_file,
                 "CA certificate(s) to verify the broker with amqps:// (PEM)", "PATH",
                 shown_default="the system's trusted CAs")
RETRY_TIMEOUT = Option("--retry-timeout", "RABBITIPC_RETRY_TIMEOUT", defaults.RETRY_TIMEOUT, non_negative_float,
                       "seconds to keep retrying an unreachable broker before exiting 4 (0: forever)", "S")
MAX_RETRY_DELAY = Option("--max-retry-delay", "RABBITIPC_MAX_RETRY_DELAY", defaults.MAX_RETRY_DELAY,
                         non_negative_float, "cap of the reconnect delay, which grows 1 s per failed try", "S")


def broker(args: argparse.Namespace) -> Broker:
    """The Broker of the parsed options (--url, --ca-file, and the retry options where the program has them)."""
    retry = RetryPolicy(getattr(args, "retry_timeout", defaults.RETRY_TIMEOUT), 1.0,
                        getattr(args, "max_retry_delay", defaults.MAX_RETRY_DELAY))
    return Broker(args.url, args.ca_file, retry)


COMMON = [
    URL,
    Option("--pattern", "RABBITIPC_PATTERN", Pattern.WORK, pattern,
           "work (one queue, receivers share it), broadcast (fanout), direct or topic (routing keys); "
           "receiver only: rpc (answer each request with the handler's return value)",
           "PATTERN"),
    Option("--queue", "RABBITIPC_QUEUE", None, queue_name,
           "durable queue; in the exchange patterns a receiver without one gets an exclusive queue",
           "NAME", shown_default=f"{defaults.QUEUE} in the work pattern"),
    Option("--exchange", "RABBITIPC_EXCHANGE", None, short_string,
           "exchange of the broadcast/direct/topic patterns", "NAME", shown_default="rabbitipc.PATTERN"),
    Option("--queue-type", "RABBITIPC_QUEUE_TYPE", defaults.QUEUE_TYPE, choice(QUEUE_TYPES),
           "type of the queues ours creates: quorum (as the current tutorials) or classic (faster, not "
           "replicated); a queue that exists is used as it is, with a warning when it differs", "TYPE"),
    Option("--queue-durable", "RABBITIPC_QUEUE_DURABLE", True, boolean,
           "whether the queue ours creates survives a broker restart; false (a classic queue whose messages "
           "a restart loses): as the previous tutorials declared hello and rpc_queue", "BOOL"),
    Option("--single-active-consumer", "RABBITIPC_SINGLE_ACTIVE_CONSUMER", False, boolean,
           "the queue ours creates (x-single-active-consumer) delivers to one receiver at a time, in queue "
           "order; the others stand by and one takes over when it goes (an existing queue cannot gain it: "
           "exit 5)", is_switch=True),
    Option("--max-priority", "RABBITIPC_MAX_PRIORITY", None, priority_levels,
           "the queue ours creates is a priority queue (x-max-priority N, RabbitMQ advises at most 10): "
           "higher --priority messages are delivered first; needs --queue-type classic", "N",
           shown_default="none"),
    Option("--exchange-durable", "RABBITIPC_EXCHANGE_DURABLE", True, boolean,
           "whether the exchange ours creates survives a broker restart; false: as the tutorials 3-5 "
           "declare theirs, so they can declare it after ours (an existing one is used as it is)", "BOOL"),
    CA_FILE,
    RETRY_TIMEOUT,
    MAX_RETRY_DELAY,
    Option("--log-level", "RABBITIPC_LOG_LEVEL", "INFO", choice(LOG_LEVELS, upper=True),
           "DEBUG, INFO, WARNING or ERROR", "LEVEL"),
    Option("--health-file", "RABBITIPC_HEALTH_FILE", None, text,
           "keep this file fresh for liveness/readiness probes (python -m rabbitipc.health FILE)",
           "PATH", shown_default="none"),
    Option("--log-rate", "RABBITIPC_LOG_RATE", defaults.LOG_RATE, non_negative_float,
           "at most N per-message log lines a second; the rest are counted in one summary line a "
           "second (0: summaries only)", "N"),
    Option("--metrics-port", "RABBITIPC_METRICS_PORT", None, tcp_port,
           "serve Prometheus metrics on this port (http://HOST:PORT/metrics, all interfaces)", "PORT",
           shown_default="off"),
]

SENDER = [
    Option("--count", "RABBITIPC_COUNT", None, positive_int,
           "stop after N messages (accepted, or reported unrouted in the exchange patterns)", "N",
           shown_default="forever"),
    Option("--rate", "RABBITIPC_RATE", None, non_negative_float,
           "messages per second at a fixed pace; 0 sends as fast as the broker confirms",
           "R", shown_default="random intervals; each line as it comes with --message -"),
    Option("--min-interval", "RABBITIPC_MIN_INTERVAL", 0.5, non_negative_float,
           "shortest random sleep between messages", "S"),
    Option("--max-interval", "RABBITIPC_MAX_INTERVAL", 2.0, non_negative_float,
           "longest random sleep between messages", "S"),
    Option("--seed", "RABBITIPC_SEED", None, _number(int, -(2**63), "a whole number"),
           "seed of the random intervals, for repeatable runs", "N", shown_default="random"),
    Option("--message", "RABBITIPC_MESSAGE", None, utf8_text,
           "payload of every message; '-' reads one message per line of stdin, each sent as it comes "
           "(no random pause; --rate paces them)",
           "TEXT", shown_default="generated 'hello N'"),
    Option("--size", "RABBITIPC_SIZE", None, message_size,
           "pad or cut generated payloads to N characters", "N", shown_default="natural size"),
    Option("--routing-key", "RABBITIPC_ROUTING_KEY", defaults.QUEUE, short_string,
           "routing key in the direct and topic patterns", "KEY"),
    Option("--window", "RABBITIPC_WINDOW", defaults.WINDOW, positive_int,
           "messages published ahead of their confirms (and 16 MiB at most); each stays held until "
           "confirmed (1: wait for every confirm, as the tutorials do; --http confirms each request)", "N"),
    Option("--priority", "RABBITIPC_PRIORITY", None, message_priority,
           "each message's priority property, on a queue made with --max-priority (the broker caps it at "
           "the queue's maximum; ignored by other queues; refused with --http)", "N",
           shown_default="none: the lowest, 0"),
    Option("--transient", "RABBITIPC_TRANSIENT", False, boolean,
           "fast mode: messages are not written to disk (still confirmed and acked, but a broker "
           "restart loses those queued; refused with --http)", is_switch=True),
    Option("--http", "RABBITIPC_HTTP", None, host_port,
           "serve POST /messages on HOST:PORT and publish each JSON body, instead of sending on its own",
           "HOST:PORT", shown_default="off"),
]

RECEIVER = [
    Option("--count", "RABBITIPC_COUNT", None, positive_int,
           "stop after handling N messages", "N", shown_default="forever"),
    Option("--prefetch", "RABBITIPC_PREFETCH", defaults.PREFETCH, prefetch_count,
           "unacked messages the broker may hand this receiver at once (acked in batches of a quarter, "
           "at most 100); lower it to 1-10 when each message takes long and receivers share a queue", "N"),
    Option("--max-size", "RABBITIPC_MAX_SIZE", defaults.MAX_SIZE, positive_int,
           "bodies larger than N bytes go to the dead-letter queue", "N"),
    Option("--strict", "RABBITIPC_STRICT", False, boolean,
           "dead-letter bodies that are not rabbitipc JSON instead of showing them as text",
           is_switch=True),
    Option("--dedupe-window", "RABBITIPC_DEDUPE_WINDOW", defaults.DEDUPE_WINDOW, non_negative_int,
           "remember the last N message ids to skip redelivered duplicates (0: off)", "N"),
    Option("--dedupe-store", "RABBITIPC_DEDUPE_STORE", False, boolean,
           "keep the handled ids in the stream <queue>.handled too, shared by the queue's receivers and "
           "read back at start, so a receiver killed before its batched ack has at most the message in "
           "hand handled again; costs a confirmed publish per message (about 850 msgs/s per receiver "
           "against 4,500 with a trivial handler, measured on 2 cores); needs a named --queue",
           is_switch=True),
    Option("--handler", "RABBITIPC_HANDLER", None, text,
           "module:function called with each delivery; an exception retries it (--max-attempts), "
           "rabbitipc.Reject dead-letters it at once",
           "MOD:FUNC", shown_default="log only"),
    Option("--inline-handler", "RABBITIPC_INLINE_HANDLER", False, boolean,
           "run the handler on the connection's thread instead of a thread of its own: one thread hop less "
           "per message (an RPC round trip about 0.2 ms shorter on 2 cores), but heartbeats stand still while "
           "it runs and a stop waits for it however long (no --grace-period); only for handlers that return "
           "well within the heartbeat interval (60 s); not with --dedupe-store", is_switch=True),
    Option("--max-attempts", "RABBITIPC_MAX_ATTEMPTS", defaults.MAX_ATTEMPTS, positive_int,
           "handler attempts per message in all: a failed one waits in a delay queue on the broker "
           "(<queue>.retry.<ms>ms) and comes back; after the last it goes to the dead-letter queue "
           "(1: at once, no retry; an exclusive queue never retries)", "N"),
    Option("--min-backoff", "RABBITIPC_MIN_BACKOFF", defaults.MIN_BACKOFF, non_negative_float,
           "seconds before the second attempt; the wait doubles for each further one, up to --max-backoff, "
           "each shortened at random by up to 20%", "S"),
    Option("--max-backoff", "RABBITIPC_MAX_BACKOFF", defaults.MAX_BACKOFF, non_negative_float,
           "longest wait between two attempts, seconds", "S"),
    Option("--bind", "RABBITIPC_BIND", (), key_list,
           "binding keys, comma-separated, in the direct and topic patterns (topic: * one word, # any)",
           "KEYS", shown_default=f"{defaults.QUEUE} (direct), # (topic)"),
    Option("--forward-to", "RABBITIPC_FORWARD_TO", None, queue_name,
           "pipeline stage: publish the handler's result to this queue before acking the input",
           "QUEUE", shown_default="off"),
    Option("--max-hops", "RABBITIPC_MAX_HOPS", defaults.MAX_HOPS, positive_int,
           "pipeline stage: an input already forwarded N times by stages goes to the dead-letter queue, "
           "so a cycle of stages (A->B->A) stops; raise it for pipelines longer than N stages", "N"),
    Option("--jsonl", "RABBITIPC_JSONL", None, text,
           "also append each message to this JSON Lines file (fsynced before the ack, no duplicates)",
           "PATH", shown_default="off"),
    Option("--poison-pill", "RABBITIPC_POISON_PILL", None, text,
           "a payload that makes the receiver that gets it ack it and stop", "TEXT", shown_default="off"),
    Option("--grace-period", "RABBITIPC_GRACE_PERIOD", defaults.GRACE_PERIOD, non_negative_float,
           "on SIGTERM/SIGINT, seconds the handler may take to finish the message in hand; past it the "
           "receiver exits 9 without acking it (the broker delivers it again); keep it below the Pod's "
           "terminationGracePeriodSeconds", "S"),
]


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line on stderr and exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(prog: str | None, description: str, options: Sequence[Option]) -> OneLineParser:
    parser = OneLineParser(
        prog=prog, description=description, epilog=exit_codes_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(parser, options)
    return parser


def add_options(parser: argparse.ArgumentParser, options: Sequence[Option]) -> None:
    """Declare the options' flags on a parser (their values are filled in by apply_environment)."""
    for opt in options:
        shown = opt.shown_default if opt.shown_default is not None else _shown(opt.default)
        if opt.is_switch and not opt.default:
            shown = "off"
        help_text = f"{opt.help} (env {opt.env}; default: {shown})".replace("%", "%%")
        if opt.is_switch:
            parser.add_argument(opt.flag, action="store_true", default=None, help=help_text)
        else:
            parser.add_argument(opt.flag, metavar=opt.metavar, help=help_text, type=_argparse_type(opt))


def _shown(default: Any) -> str:
    """A default as a user types it: true/false, 300 rather than 300.0."""
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default)


def _argparse_type(opt: Option) -> Callable[[str], Any]:
    def convert(raw: str) -> Any:
        try:
            return opt.convert(raw)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = opt.dest
    return convert


def apply_environment(parser: argparse.ArgumentParser, args: argparse.Namespace, options: Sequence[Option],
                      environ: Mapping[str, str]) -> None:
    """Fill what no flag set: the environment variable if set, else the default (flag beats
    environment beats default). A bad value exits 2 with one line naming the variable.
    Records the options given as flags in args.from_flags, those from the environment in args.from_env."""
    args.from_flags = {opt.dest for opt in options if getattr(args, opt.dest) is not None}
    args.from_env = set()
    for opt in options:
        if opt.dest in args.from_flags:
            continue
        raw = environ.get(opt.env)
        if raw is None or (raw == "" and not opt.is_switch):
            setattr(args, opt.dest, opt.default)
            continue
        args.from_env.add(opt.dest)
        try:
            setattr(args, opt.dest, opt.convert(raw))
        except ValueError as exc:
            parser.error(f"environment variable {opt.env}: {exc}")


def parse(
    description: str,
    options: Sequence[Option],
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    prog: str | None = None,
) -> argparse.Namespace:
    """Parse flags over environment over defaults; exit 2 with one line on any bad value."""
    environ = os.environ if environ is None else environ
    parser = build_parser(prog, description, options)
    args = parser.parse_args(argv)
    apply_environment(parser, args, options, environ)
    if args.queue is None:
        args.queue = args.pattern.default_queue
    if getattr(args, "min_interval", 0) > getattr(args, "max_interval", float("inf")):
        parser.error(f"--min-interval {args.min_interval} is larger than --max-interval {args.max_interval}")
    if getattr(args, "min_backoff", 0) > getattr(args, "max_backoff", float("inf")):
        parser.error(f"--min-backoff {args.min_backoff:g} is larger than --max-backoff {args.max_backoff:g}")
    _check_ordering(parser, args)
    return args


def _check_ordering(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--max-priority, --single-active-consumer and --priority: what the queue and --http can take, said before
    connecting."""
    if args.max_priority is not None and args.queue_type != "classic":
        parser.error(f"--max-priority needs --queue-type classic: a {args.queue_type} queue has no priorities on "
                     "RabbitMQ 3.10 (and ours does not make another type instead)")
    if getattr(args, "http", None) and getattr(args, "priority", None) is not None:
        parser.error("--priority is not taken with --http: each POSTed message is published without one")
    if getattr(args, "http", None) and getattr(args, "transient", False):
        parser.error("--transient is not taken with --http: each POSTed message is published persistent")
    if args.queue is None and (args.single_active_consumer or args.max_priority is not None):
        flag = "--single-active-consumer" if args.single_active_consumer else "--max-priority"
        parser.error(f"{flag} needs --queue NAME: without one, each receiver has an exclusive queue of its own")


class _UTCFormatter(logging.Formatter):
    converter = time.gmtime

    def formatTime(self, record, datefmt=None):  # noqa: N802 - logging's name
        return time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(record.created)) + f".{int(record.msecs):03d}Z"


def setup_logging(level: str) -> None:
    """One line per event on stderr: time, level, module, message. pika's own chatter
    (it logs every failed connect as an error) is shown only at DEBUG."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_UTCFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pika").setLevel(logging.DEBUG if level == "DEBUG" else logging.CRITICAL)
