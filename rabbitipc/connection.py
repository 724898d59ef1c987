"""Connecting to the broker: retry what is transient, fail fast on what is not.

Transient: refused or reset connections, DNS not yet resolvable (a Pod's broker starting
beside us, a Service not yet created), a broker restarting. Not transient: wrong
credentials, a vhost we may not use. The retry budget is a time limit per outage.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import pika
import pika.exceptions as px

from . import defaults
from .backoff import Backoff
from .errors import AuthError, Stopped, TlsError, UnreachableError
from .health import Health
from .shutdown import StopFlag

LOGGER = logging.getLogger(__name__)

#: Errors that mean "try again later".
TRANSIENT = (px.AMQPConnectionError, OSError)
#: Subclasses of AMQPConnectionError that retrying cannot fix.
AUTH_ERRORS = (px.ProbableAuthenticationError, px.AuthenticationError, px.ProbableAccessDeniedError)
#: Handshakes cut during authentication, one after another, retried before it counts as a refusal
#: (see connect()). A broker starting or stopping cuts handshakes too, between refused connects:
#: those reset the count.
HANDSHAKE_CUTS = 3
#: A lost connection or channel in the middle of work: reconnect and carry on.
RECONNECT = TRANSIENT + (px.ChannelWrongStateError,)
#: Seconds a broker alarm may block publishing before pika gives up the connection.
BLOCKED_TIMEOUT = 30.0


# -- the broker URL: read, checked and shown here, nowhere else ------------------------------
def check_url(text: str) -> str:
    """The URL if it is one pika can use (amqp:// or amqps://, a host, a valid port), else ValueError."""
    parts = urlsplit(text)
    if parts.scheme not in ("amqp", "amqps"):
        raise ValueError("must start with amqp:// or amqps://")
    if not parts.hostname:
        raise ValueError("has no host")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
        pika.URLParameters(text)
    except ValueError as exc:
        raise ValueError(str(exc).split("\n")[0]) from None
    except (SyntaxError, TypeError, MemoryError, RecursionError) as exc:  # ?ssl_options=( and the like
        raise ValueError(f"has an option pika cannot read ({exc.__class__.__name__})") from None
    return text


def has_password(url: str) -> bool:
    return bool(urlsplit(url).password)


def blocked_timeout(url: str) -> float:
    """The blocked-connection timeout a URL asks for (?blocked_connection_timeout=S), else ours."""
    values = parse_qs(urlsplit(url).query).get("blocked_connection_timeout")
    return float(values[0]) if values else BLOCKED_TIMEOUT


def watch_alarms(connection) -> None:
    """Log when the broker blocks and unblocks publishing (memory or disk alarm), on any pika connection."""

    def blocked(_connection, method) -> None:
        LOGGER.warning("broker blocked publishing (%s); waiting", getattr(method.method, "reason", "alarm"))

    def unblocked(_connection, _method) -> None:
        LOGGER.info("broker unblocked publishing; resuming")

    connection.add_on_connection_blocked_callback(blocked)
    connection.add_on_connection_unblocked_callback(unblocked)


def redact(url: str) -> str:
    """The URL with its password replaced by ***, safe to log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def parameters(url: str, connection_name: str, ca_file: str | None = None) -> pika.URLParameters:
    """pika parameters from a validated URL, named so the management UI shows who is who.

    amqps:// verifies the broker's certificate and host name, against ca_file when given,
    else against the system's trusted CAs.
    """
    params = pika.URLParameters(url)
    if params.ssl_options is not None:
        context = ssl.create_default_context(cafile=ca_file)
        params.ssl_options = pika.SSLOptions(context, server_hostname=params.host)
    params.client_properties = {"connection_name": connection_name}
    params.connection_attempts = 1  # we retry ourselves, with logging and a stop check
    # A broker alarm blocks publishers; after this long the sender says so and reconnects.
    params.blocked_connection_timeout = blocked_timeout(url)
    return params


@dataclass
class Retry:
    """How long to keep trying during one outage, and the delays between tries."""

    timeout: float = defaults.RETRY_TIMEOUT  # seconds; 0 means forever
    backoff: Backoff = field(default_factory=Backoff)

    def next_delay(self, outage_started: float) -> float | None:
        """The delay before the next try, or None when it would overrun the budget."""
        delay = self.backoff.next_delay()
        if self.timeout > 0 and time.monotonic() + delay > outage_started + self.timeout:
            return None
        return delay


@dataclass(frozen=True)
class Broker:
    """Where the broker is and how to reach it, built once: by the programs from their flags and
    environment, by the library from AMQP_URL. An explicit URL beats AMQP_URL, which beats
    the localhost default."""

    url: str = defaults.URL
    ca_file: str | None = None  # for amqps:// with a private CA; else the system's trusted CAs
    retry: Retry = field(default_factory=Retry)

    @classmethod
    def from_env(cls, url: str | None = None, ca_file: str | None = None, retry: Retry | None = None) -> Broker:
        return cls(url or os.environ.get("AMQP_URL") or defaults.URL, ca_file, retry or Retry())

    @property
    def redacted(self) -> str:
        """The URL without its password, safe to log."""
        return redact(self.url)


def describe(exc: BaseException) -> str:
    """A short reason for a connection error, without the nested reprs pika produces."""
    exc = root_cause(exc)
    text = str(exc) or exc.__class__.__name__
    return text if len(text) < 200 else text[:200] + "..."


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception pika wrapped (it nests them in args)."""
    while exc.args and isinstance(exc.args[0], BaseException):
        exc = exc.args[0]
    return exc


def connect(
    url: str, connection_name: str, retry: Retry, stop: StopFlag, health: Health | None = None,
    ca_file: str | None = None, opener: Callable[[pika.URLParameters], Any] = pika.BlockingConnection,
) -> Any:
    """Open a connection, retrying transient failures within the retry budget.

    `opener` makes one attempt: pika.BlockingConnection by default, or the streaming
    publisher's SelectConnection opener, which raises the same errors.
    Raises AuthError at once for refused credentials, UnreachableError when the budget is
    spent, Stopped when a stop is requested while waiting.
    """
    params = parameters(url, connection_name, ca_file)
    safe_url = redact(url)
    started = time.monotonic()
    handshake_cuts = 0
    while True:
        if stop.is_set():
            raise Stopped()
        try:
            connection = opener(params)
        except px.ProbableAuthenticationError as exc:
            # RabbitMQ refuses credentials with a Connection.Close 403 (ACCESS_REFUSED) that pika
            # wraps in this error; without that close, the socket merely closed during the
            # handshake, as a cut network path does: retried, and taken for a refusal only when it repeats.
            cause = root_cause(exc)
            refused = isinstance(cause, px.ConnectionClosedByBroker) and cause.reply_code == 403
            handshake_cuts += 1
            if refused:
                raise AuthError(
                    f"the broker at {safe_url} refused user {params.credentials.username!r}: {describe(exc)}"
                ) from None
            if handshake_cuts > HANDSHAKE_CUTS:
                raise AuthError(
                    f"the broker at {safe_url} refused user {params.credentials.username!r} (the connection closed "
                    f"during authentication {handshake_cuts} times): {describe(exc)}"
                ) from None
            delay = retry.next_delay(started)
            if delay is None:
                raise UnreachableError(f"broker at {safe_url}: connection cut during the handshake: "
                                       f"{describe(exc)}") from None
            LOGGER.warning("broker at %s closed the connection during the handshake (%s); retrying in %.1fs",
                           safe_url, describe(exc), delay)
            if stop.wait(delay):
                raise Stopped() from None
            continue
        except AUTH_ERRORS as exc:
            raise AuthError(
                f"the broker at {safe_url} refused user {params.credentials.username!r}: {describe(exc)}"
            ) from None
        except (ssl.SSLError, *TRANSIENT) as exc:
            cause = root_cause(exc)
            if isinstance(cause, ssl.SSLCertVerificationError):
                raise TlsError(f"the certificate of {safe_url} is not trusted: {cause.verify_message}"
                               f"{'' if ca_file else ' (give the CA with --ca-file)'}") from None
            if isinstance(cause, ssl.SSLError):
                raise TlsError(f"TLS with {safe_url} failed: {cause.reason or cause}") from None
            handshake_cuts = 0  # the broker is away or restarting: earlier cuts were that, not a refusal
            reason = describe(exc)
            delay = retry.next_delay(started)
            if delay is None:
                raise UnreachableError(
                    f"broker at {safe_url} unreachable for {time.monotonic() - started:.0f}s "
                    f"(retry budget {retry.timeout:.0f}s): {reason}"
                ) from None
            LOGGER.warning("broker at %s not reachable (%s); retrying in %.1fs", safe_url, reason, delay)
            if health is not None:
                health.beat(connected=False)
            if stop.wait(delay):
                raise Stopped() from None
            continue
        retry.backoff.reset()
        LOGGER.info("connected to %s as %s", safe_url, connection_name)
        return connection
