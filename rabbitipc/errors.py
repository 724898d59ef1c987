"""Exit codes and the errors that map to them.

Each failure a user can cause has its own exit code, so scripts and Kubernetes restart
policies can tell "fix your config" from "the broker is down".
"""

EXIT_OK = 0
EXIT_FAILURE = 1  # an unexpected error: a bug, reported with its traceback
EXIT_USAGE = 2  # bad flag, environment variable or value (argparse's own code)
EXIT_AUTH = 3  # the broker refused the credentials or the permissions
EXIT_UNREACHABLE = 4  # the broker stayed unreachable for the whole retry budget
EXIT_TOPOLOGY = 5  # a queue or exchange exists that ours cannot use (other type, exclusive elsewhere)
EXIT_UNDELIVERABLE = 6  # the broker kept refusing (nack/return) a message
EXIT_TLS = 7  # the broker's TLS certificate could not be verified

EXIT_CODES = {
    EXIT_OK: "success, including a clean stop on SIGTERM/SIGINT",
    EXIT_FAILURE: "unexpected error",
    EXIT_USAGE: "invalid flag, environment variable or value",
    EXIT_AUTH: "the broker refused the credentials or permissions",
    EXIT_UNREACHABLE: "the broker stayed unreachable for the retry budget",
    EXIT_TOPOLOGY: "a queue or exchange exists that cannot be used (another type, exclusive elsewhere)",
    EXIT_UNDELIVERABLE: "the broker kept refusing a message",
    EXIT_TLS: "the broker's TLS certificate could not be verified",
}


def exit_codes_help() -> str:
    """The exit-code table for --help epilogs."""
    return "exit codes:\n" + "\n".join(f"  {code}  {text}" for code, text in EXIT_CODES.items())


class FatalError(Exception):
    """An error that retrying cannot fix; the program prints one line and exits with exit_code."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class AuthError(FatalError):
    exit_code = EXIT_AUTH


class UnreachableError(FatalError):
    exit_code = EXIT_UNREACHABLE


class TopologyError(FatalError):
    exit_code = EXIT_TOPOLOGY


class UndeliverableError(FatalError):
    exit_code = EXIT_UNDELIVERABLE


class TlsError(FatalError):
    exit_code = EXIT_TLS


class Stopped(Exception):
    """A stop was requested (SIGTERM/SIGINT) while waiting; unwinds to a clean exit."""
