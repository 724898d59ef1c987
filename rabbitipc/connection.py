"""Connecting to the broker: retry what is transient, fail fast on what is not.

Transient: refused or reset connections, DNS not yet resolvable (a Pod's broker starting
beside us, a Service not yet created), a broker restarting. Not transient: wrong
credentials, a vhost we may not use. The retry budget is a time limit per outage.

A cluster is given as its nodes' URLs separated by ';' (each a full amqp:// or amqps:// URL).
A process tries them in an order of its own (shuffled once, so processes spread over the nodes),
starting after the node it last connected to and leaving recently failed nodes for last; a lost
node is replaced by the next that answers at once, and the backoff and the retry budget apply
only when every node refuses.
"""

from __future__ import annotations

import logging
import os
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import pika
import pika.exceptions as px

from . import defaults
from .backoff import Backoff, RetryPolicy
from .errors import AuthError, ReplyCode, Stopped, TlsError, UnreachableError
from .health import Health
from .shutdown import StopFlag

LOGGER = logging.getLogger(__name__)

#: Errors that mean "try again later".
TRANSIENT = (px.AMQPConnectionError, OSError)
#: The broker's answers to a handshake that retrying cannot fix: refused credentials, a vhost refused.
REFUSALS = (ReplyCode.ACCESS_REFUSED, ReplyCode.NOT_ALLOWED)
#: Handshakes cut during authentication, one after another, retried before it counts as a refusal
#: (see connect()). A broker starting or stopping cuts handshakes too, between refused connects:
#: those reset the count.
HANDSHAKE_CUTS = 3
#: A lost connection or channel in the middle of work: reconnect and carry on.
RECONNECT = TRANSIENT + (px.ChannelWrongStateError,)
#: Seconds a broker alarm may block publishing before pika gives up the connection.
BLOCKED_TIMEOUT = 30.0


# -- the broker URL: read, checked and shown here, nowhere else ------------------------------
#: Separates the URLs of a cluster's nodes in --url / AMQP_URL (';' in a password is written %3B).
NODE_SEPARATOR = ";"


def node_urls(text: str) -> tuple[str, ...]:
    """The node URLs of a --url / AMQP_URL value: one, or several separated by ';'."""
    return tuple(part.strip() for part in text.split(NODE_SEPARATOR))


def _check_node(text: str) -> pika.URLParameters:
    parts = urlsplit(text)
    if parts.scheme not in ("amqp", "amqps"):
        raise ValueError("must start with amqp:// or amqps://")
    if not parts.hostname:
        raise ValueError("has no host")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
        return pika.URLParameters(text)
    except ValueError as exc:
        raise ValueError(str(exc).split("\n")[0]) from None
    except (SyntaxError, TypeError, MemoryError, RecursionError) as exc:  # ?ssl_options=( and the like
        raise ValueError(f"has an option pika cannot read ({exc.__class__.__name__})") from None


def check_url(text: str) -> str:
    """The URL (or ';'-separated node URLs) if pika can use each, else ValueError with a
    password-free reason: not amqp(s)://, no host, a bad port, an empty element, mixed vhosts."""
    nodes = node_urls(text)
    if len(nodes) == 1:
        _check_node(text)
        return text
    vhosts: dict[str, str] = {}
    for number, node in enumerate(nodes, 1):
        if not node:
            raise ValueError(f"node {number} of {len(nodes)} is empty (node URLs are separated by a single ';')")
        try:
            vhosts[node] = _check_node(node).virtual_host
        except ValueError as exc:
            raise ValueError(f"node {number} ({redact(node)}) {exc}") from None
    if len(set(vhosts.values())) > 1:
        named = ", ".join(f"{redact(node)} -> {vhost!r}" for node, vhost in vhosts.items())
        raise ValueError(f"the nodes name different vhosts ({named}); a cluster's nodes share one vhost")
    return text


def has_password(url: str) -> bool:
    """True when any node URL carries a password."""
    return any(urlsplit(node).password for node in node_urls(url))


def blocked_timeout(url: str) -> float:
    """The blocked-connection timeout a URL asks for (?blocked_connection_timeout=S), else ours
    (of a node list: the first node's)."""
    values = parse_qs(urlsplit(node_urls(url)[0]).query).get("blocked_connection_timeout")
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
    """The URL (or each node URL of a list) with its password replaced by ***, safe to log."""
    if NODE_SEPARATOR in url:
        return NODE_SEPARATOR.join(redact(node) for node in url.split(NODE_SEPARATOR))
    try:
        parts = urlsplit(url)
        parts.password  # noqa: B018 - a bad port or netloc raises here
    except ValueError:
        return "(a URL that cannot be read)"
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


def Retry(timeout: float = defaults.RETRY_TIMEOUT, backoff: Backoff | None = None) -> RetryPolicy:
    """The former Retry(timeout, Backoff(step, cap)), kept for callers: the same RetryPolicy."""
    backoff = backoff or Backoff()
    return RetryPolicy(timeout, backoff.step, backoff.cap, backoff.jitter)


@dataclass(frozen=True)
class Broker:
    """Where the broker is and how to reach it, built once: by the programs from their flags and
    environment, by the library from AMQP_URL. An explicit URL beats AMQP_URL, which beats
    the localhost default."""

    url: str = defaults.URL  # the node list: one URL, or a cluster's node URLs separated by ';'
    ca_file: str | None = None  # for amqps:// with a private CA; else the system's trusted CAs
    retry: RetryPolicy = RetryPolicy()  # frozen: each connect() counts its own outage

    def __post_init__(self) -> None:
        try:
            check_url(self.url)
        except ValueError as exc:
            raise ValueError(f"broker URL {redact(self.url)}: {exc}") from None

    @classmethod
    def from_env(cls, url: str | None = None, ca_file: str | None = None, retry: RetryPolicy | None = None) -> Broker:
        return cls(url or os.environ.get("AMQP_URL") or defaults.URL, ca_file, retry or RetryPolicy())

    @classmethod
    def of(cls, where: Broker | str | None = None, ca_file: str | None = None,
           retry: RetryPolicy | None = None) -> Broker:
        """A Broker given whole, or one built from a URL (else AMQP_URL, else localhost): what the
        public constructors take. ca_file and retry, when given, replace the Broker's."""
        if not isinstance(where, Broker):
            return cls.from_env(where, ca_file, retry)
        changes = {name: value for name, value in (("ca_file", ca_file), ("retry", retry)) if value is not None}
        return replace(where, **changes) if changes else where

    @property
    def nodes(self) -> tuple[str, ...]:
        """The node URLs, one per broker node."""
        return node_urls(self.url)

    @property
    def redacted(self) -> str:
        """The URL (every node's) without passwords, safe to log."""
        return redact(self.url)


class NodeRing:
    """The order in which one process tries a cluster's nodes: shuffled once per process (so
    processes spread), each connect starting after the node last connected to, with the nodes
    that failed recently moved to the end. Shared by every connection of the process."""

    #: Seconds a failed node stays at the end of the order.
    DOWN_FOR = 30.0
    _rings: dict[str, NodeRing] = {}
    _lock = threading.Lock()

    def __init__(self, nodes: tuple[str, ...]) -> None:
        self.nodes = list(nodes)
        random.shuffle(self.nodes)
        self._next = 0
        self._failed: dict[str, float] = {}

    @classmethod
    def of(cls, url: str) -> NodeRing:
        with cls._lock:
            ring = cls._rings.get(url)
            if ring is None:
                ring = cls._rings[url] = cls(node_urls(url))
            return ring

    def order(self) -> list[str]:
        """The nodes to try, best first."""
        with self._lock:
            rotated = self.nodes[self._next:] + self.nodes[:self._next]
            now = time.monotonic()
            return sorted(rotated, key=lambda node: node in self._failed and now - self._failed[node] < self.DOWN_FOR)

    def failed(self, node: str) -> None:
        with self._lock:
            self._failed[node] = time.monotonic()

    def connected(self, node: str) -> None:
        with self._lock:
            self._failed.pop(node, None)
            self._next = (self.nodes.index(node) + 1) % len(self.nodes)


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


def handshake_refusal(exc: BaseException) -> ReplyCode | None:
    """The refusal (403 credentials, 530 vhost) behind a handshake error, or None when the socket
    merely closed or the broker closed for another reason (a cut path, a broker stopping: 320).

    pika keeps only the text of the close it saw during the handshake
    ("ConnectionClosedByBroker: (403) 'ACCESS_REFUSED - ...'"), so the code is read from that text.
    """
    text = str(exc.args[0]) if exc.args else ""
    prefix = "ConnectionClosedByBroker: ("
    if not text.startswith(prefix):
        return None
    code = text[len(prefix):].split(")", 1)[0]
    return next((refusal for refusal in REFUSALS if code == str(int(refusal))), None)


def refusal_text(safe_url: str, params: pika.URLParameters, exc: BaseException) -> str:
    """One line for a refused handshake: the user's credentials, or the vhost it may not use."""
    if isinstance(exc, px.ProbableAccessDeniedError):
        return (f"the broker at {safe_url} refused user {params.credentials.username!r} "
                f"access to vhost {params.virtual_host!r}: {describe(exc)}")
    return f"the broker at {safe_url} refused user {params.credentials.username!r}: {describe(exc)}"


def connect(broker: Broker, connection_name: str, stop: StopFlag | None = None, health: Health | None = None, *,
            opener: Callable[[pika.URLParameters], Any] = pika.BlockingConnection) -> Any:
    """Open a connection to one node of the broker (one URL or a node list), retrying transient
    failures within its retry policy's budget; each call counts its own outage.

    Every node is tried in turn (NodeRing's order) before any delay: the backoff and the budget
    apply only to outages of every node. `opener` makes one attempt: pika.BlockingConnection by
    default, or the streaming publisher's SelectConnection opener, which raises the same errors.
    Raises AuthError at once for refused credentials, TlsError for a failed TLS handshake,
    UnreachableError when the budget is spent, Stopped when a stop is requested while waiting.
    """
    stop = stop or StopFlag()
    ca_file, retry = broker.ca_file, broker.retry
    outage = retry.outage()
    ring = NodeRing.of(broker.url)
    several = len(ring.nodes) > 1
    handshake_cuts = 0
    while True:
        cut = False
        reasons: list[str] = []
        for node in ring.order():
            if stop.is_set():
                raise Stopped()
            params = parameters(node, connection_name, ca_file)
            safe_url = redact(node)
            try:
                connection = opener(params)
            except (px.ProbableAuthenticationError, px.ProbableAccessDeniedError) as exc:
                # RabbitMQ refuses credentials (403) or a vhost (530) with a Connection.Close that pika
                # wraps, as text, in one of these; without that close, the socket merely closed during
                # the handshake, as a cut network path does: retried, and taken for a refusal only when
                # it repeats.
                handshake_cuts += 1
                if handshake_refusal(exc) is not None:
                    raise AuthError(refusal_text(safe_url, params, exc)) from None
                if handshake_cuts > HANDSHAKE_CUTS * len(ring.nodes):
                    raise AuthError(
                        f"{refusal_text(safe_url, params, exc)} (the connection closed during the handshake "
                        f"{handshake_cuts} times)"
                    ) from None
                ring.failed(node)
                cut = True
                reasons.append(f"{safe_url}: connection cut during the handshake: {describe(exc)}")
                if several:
                    LOGGER.warning("broker node %s closed the connection during the handshake (%s); "
                                   "trying the next node", safe_url, describe(exc))
                continue
            except px.AuthenticationError as exc:
                raise AuthError(refusal_text(safe_url, params, exc)) from None
            except (ssl.SSLError, *TRANSIENT) as exc:
                cause = root_cause(exc)
                if isinstance(cause, ssl.SSLCertVerificationError):
                    raise TlsError(f"the certificate of {safe_url} is not trusted: {cause.verify_message}"
                                   f"{'' if ca_file else ' (give the CA with --ca-file)'}") from None
                if isinstance(cause, ssl.SSLError):
                    raise TlsError(f"TLS with {safe_url} failed: {cause.reason or cause}") from None
                handshake_cuts = 0  # the broker is away or restarting: earlier cuts were that, not a refusal
                ring.failed(node)
                reasons.append(f"{safe_url}: {describe(exc)}")
                if several:
                    LOGGER.warning("broker node %s not reachable (%s); trying the next node", safe_url, describe(exc))
                continue
            ring.connected(node)
            LOGGER.info("connected to %s as %s", safe_url, connection_name)
            return connection
        # Every node refused: wait, within the budget.
        delay = outage.next_delay()
        if not several:
            reason = reasons[0].split(": ", 1)[1]
            if delay is None:
                if cut:
                    raise UnreachableError(f"broker at {safe_url}: {reason}") from None
                budget = (f" (tried for {outage.elapsed:.0f}s; waiting for another try would pass the retry budget "
                          f"of {retry.timeout:.0f}s)") if retry.timeout > 0 else ""
                raise UnreachableError(f"broker at {safe_url} unreachable: {reason}{budget}") from None
            if cut:
                LOGGER.warning("broker at %s closed the connection during the handshake (%s); retrying in %.1fs",
                               safe_url, reason.split(": ", 1)[1], delay)
            else:
                LOGGER.warning("broker at %s not reachable (%s); retrying in %.1fs", safe_url, reason, delay)
        else:
            if delay is None:
                budget = f" for {outage.elapsed:.0f}s (retry budget {retry.timeout:.0f}s)" if retry.timeout > 0 else ""
                raise UnreachableError(
                    f"no node of the {len(ring.nodes)} broker nodes reachable{budget}: {'; '.join(reasons)}"
                ) from None
            LOGGER.warning("none of the %d broker nodes reachable (%s); retrying in %.1fs",
                           len(ring.nodes), "; ".join(reasons), delay)
        if health is not None and not cut:
            health.beat(connected=False)
        if stop.wait(delay):
            raise Stopped() from None


#: One pass over the nodes and no wait: the policy of short-lived tools (rabbitipc-ctl status and stop).
ONE_PASS = RetryPolicy(timeout=-1)


def open_once(broker: Broker, connection_name: str) -> pika.BlockingConnection:
    """A connection to the first node that answers, each node tried once; connect()'s errors
    (AuthError, TlsError, UnreachableError) when none does."""
    return connect(replace(broker, retry=ONE_PASS), connection_name)
