"""Connecting to the broker: retry what is transient, fail fast on what is not.

Transient: refused or reset connections, DNS not yet resolvable (a Pod's broker starting
beside us, a Service not yet created), a broker restarting. Not transient: wrong
credentials, a vhost we may not use. The retry budget is a time limit per outage.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import pika
import pika.exceptions as px

from .backoff import Backoff
from .errors import AuthError, Stopped, UnreachableError
from .health import Health
from .shutdown import StopFlag

LOGGER = logging.getLogger(__name__)

#: Errors that mean "try again later".
TRANSIENT = (px.AMQPConnectionError, socket.gaierror, ConnectionError)
#: Subclasses of AMQPConnectionError that retrying cannot fix.
AUTH_ERRORS = (px.ProbableAuthenticationError, px.AuthenticationError, px.ProbableAccessDeniedError)


def redact(url: str) -> str:
    """The URL with its password replaced by ***, safe to log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def parameters(url: str, connection_name: str) -> pika.URLParameters:
    """pika parameters from a validated URL, named so the management UI shows who is who."""
    params = pika.URLParameters(url)
    params.client_properties = {"connection_name": connection_name}
    params.connection_attempts = 1  # we retry ourselves, with logging and a stop check
    if "blocked_connection_timeout" not in url:
        # A broker alarm blocks publishers; after this long the sender says so and reconnects.
        params.blocked_connection_timeout = 30
    return params


@dataclass
class Retry:
    """How long to keep trying during one outage, and the delays between tries."""

    timeout: float = 300.0  # seconds; 0 means forever
    backoff: Backoff = field(default_factory=Backoff)

    def next_delay(self, outage_started: float) -> float | None:
        """The delay before the next try, or None when it would overrun the budget."""
        delay = self.backoff.next_delay()
        if self.timeout > 0 and time.monotonic() + delay > outage_started + self.timeout:
            return None
        return delay


def describe(exc: BaseException) -> str:
    """A short reason for a connection error, without the nested reprs pika produces."""
    while exc.args and isinstance(exc.args[0], BaseException):
        exc = exc.args[0]
    text = str(exc) or exc.__class__.__name__
    return text if len(text) < 200 else text[:200] + "..."


def connect(
    url: str, connection_name: str, retry: Retry, stop: StopFlag, health: Health | None = None
) -> pika.BlockingConnection:
    """Open a connection, retrying transient failures within the retry budget.

    Raises AuthError at once for refused credentials, UnreachableError when the budget is
    spent, Stopped when a stop is requested while waiting.
    """
    params = parameters(url, connection_name)
    safe_url = redact(url)
    started = time.monotonic()
    while True:
        if stop.is_set():
            raise Stopped()
        try:
            connection = pika.BlockingConnection(params)
        except AUTH_ERRORS as exc:
            raise AuthError(
                f"the broker at {safe_url} refused user {params.credentials.username!r}: {describe(exc)}"
            ) from None
        except TRANSIENT as exc:
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
