"""Exit codes and the errors that map to them.

Each failure a user can cause has its own exit code, so scripts and Kubernetes restart
policies can tell "fix your config" from "the broker is down".
"""

import enum
from collections.abc import Iterable, Mapping

EXIT_OK = 0
EXIT_FAILURE = 1  # an unexpected error: a bug, reported with its traceback
EXIT_USAGE = 2  # bad flag, environment variable or value (argparse's own code)
EXIT_AUTH = 3  # the broker refused the credentials or the permissions
EXIT_UNREACHABLE = 4  # the broker stayed unreachable for the whole retry budget
EXIT_TOPOLOGY = 5  # a queue or exchange exists that ours cannot use (other type, exclusive elsewhere)
EXIT_UNDELIVERABLE = 6  # the broker kept refusing (nack/return) a message
EXIT_TLS = 7  # the broker's TLS certificate could not be verified
EXIT_MISSING_DEPENDENCY = 8  # a program started with a Python that lacks pika (or another dependency)
EXIT_UNFINISHED = 9  # a receiver stopped with work the broker delivers again (unacked handled messages, a hung handler)
EXIT_NOT_FOUND = 10  # a queue the command names does not exist (rabbitipc-ctl dead)

EXIT_CODES = {
    EXIT_OK: "success, including a clean stop on SIGTERM/SIGINT",
    EXIT_FAILURE: "unexpected error",
    EXIT_USAGE: "invalid flag, environment variable or value",
    EXIT_AUTH: "the broker refused the credentials or permissions",
    EXIT_UNREACHABLE: "the broker stayed unreachable for the retry budget",
    EXIT_TOPOLOGY: "a queue or exchange exists that cannot be used (another type, exclusive elsewhere)",
    EXIT_UNDELIVERABLE: "the broker kept refusing a message",
    EXIT_TLS: "the broker's TLS certificate could not be verified",
    EXIT_MISSING_DEPENDENCY: "a dependency (pika) is not installed for this Python: use .venv/bin/python",
    EXIT_UNFINISHED: "stopped with messages the broker delivers again: handled ones left unacked (broker "
                     "unreachable), or the one in hand when the handler overran --grace-period",
    EXIT_NOT_FOUND: "a queue the command names does not exist",
}


def exit_codes_help(codes: Iterable[int] | None = None, meanings: Mapping[int, str] | None = None) -> str:
    """The exit-code table for --help epilogs: only `codes` (default all), `meanings` overriding a code's text."""
    meanings = {**EXIT_CODES, **(meanings or {})}
    return "exit codes:\n" + "\n".join(f"  {code}  {meanings[code]}" for code in sorted(codes or EXIT_CODES))


class ReplyCode(enum.IntEnum):
    """The AMQP reply codes the broker closes a channel or connection with, by name.

    pika.spec's constants (test_errors checks each against it), written out here because this
    module needs nothing but the standard library: programs/entry.py imports it before it knows
    pika is installed. Compare `exc.reply_code == ReplyCode.ACCESS_REFUSED`, never a bare 403.
    """

    CONTENT_TOO_LARGE = 311
    NO_ROUTE = 312
    NO_CONSUMERS = 313
    CONNECTION_FORCED = 320  # the broker (or an operator) closed the connection: a restart, a node going
    INVALID_PATH = 402
    ACCESS_REFUSED = 403  # credentials or permissions
    NOT_FOUND = 404  # no such queue or exchange (or a stream whose node is still starting)
    RESOURCE_LOCKED = 405  # an exclusive queue of another connection
    PRECONDITION_FAILED = 406  # declared with other arguments, a message over max_message_size, ...
    FRAME_ERROR = 501
    SYNTAX_ERROR = 502
    COMMAND_INVALID = 503
    CHANNEL_ERROR = 504
    UNEXPECTED_FRAME = 505
    RESOURCE_ERROR = 506
    NOT_ALLOWED = 530
    NOT_IMPLEMENTED = 540  # e.g. a stream answering a reject
    INTERNAL_ERROR = 541


class FatalError(Exception):
    """An error that retrying cannot fix; the program prints one line and exits with exit_code."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class AuthError(FatalError):
    exit_code = EXIT_AUTH


class CreateRefused(AuthError):
    """Something does not exist and this user may not create it: someone who may can, later."""


class UnreachableError(FatalError):
    exit_code = EXIT_UNREACHABLE


class TopologyError(FatalError):
    exit_code = EXIT_TOPOLOGY


class UndeliverableError(FatalError):
    exit_code = EXIT_UNDELIVERABLE


class TlsError(FatalError):
    exit_code = EXIT_TLS


class NotFoundError(FatalError):
    """A queue an operator named does not exist (a 404 on the passive declare)."""

    exit_code = EXIT_NOT_FOUND


class UnfinishedStop(FatalError):
    """A stop that leaves messages this receiver started on to be delivered again (and handled again)."""

    exit_code = EXIT_UNFINISHED


class Stopped(Exception):
    """A stop was requested (SIGTERM/SIGINT) while waiting; unwinds to a clean exit."""
