"""The chat on Google Cloud Pub/Sub (the seed's "V2"): topic `chat`, one subscription per listener.

Each listener creates a subscription of its own on the topic when it starts and deletes it
when it stops, so, as with the fanout exchange, every listener gets every message. Messages
carry an ordering key (the room), so a room shows them in the order they were published.
Pub/Sub delivers at least once: ids already shown are skipped.

A subscription only gets what is published after it exists, so a late joiner sees no
history here (keeps_history is False; the room says so). A subscriber learns nothing about
who published a message, so every name is shown unverified (`? (as alice?)`).

Needs `pip install 'rabbitipc[chat-pubsub]'`. The project comes from --project,
PUBSUB_PROJECT_ID or GOOGLE_CLOUD_PROJECT; with PUBSUB_EMULATOR_HOST set the client talks
to the emulator and needs no credentials.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from rabbitipc import StopFlag
from rabbitipc.errors import EXIT_USAGE, AuthError, FatalError, UnreachableError

from .backend import OnEvent
from .events import ChatMessage, Link, Status

LOGGER = logging.getLogger(__name__)
PUBLISH_TIMEOUT = 60.0  # seconds a send may wait for the server before the program gives up
RECENT_IDS = 1000


def _client_library():
    try:
        from google.api_core import exceptions
        from google.cloud import pubsub_v1
    except ImportError:
        raise FatalError("the Pub/Sub backend needs google-cloud-pubsub: pip install 'rabbitipc[chat-pubsub]'",
                         EXIT_USAGE) from None
    return pubsub_v1, exceptions


class PubSubBackend:
    """The ChatBackend on a Pub/Sub topic."""

    keeps_history = False
    user = ""  # Pub/Sub tells subscribers nothing about the publisher: every name is unverified

    def __init__(self, project: str, topic: str = "chat", name: str = "rabbitipc-chat") -> None:
        self.pubsub, self.errors = _client_library()
        self.project = project
        self.room = topic
        self.name = name
        self._publisher = None
        self._topic_ready = False
        self._lock = threading.Lock()
        self.topic_path = f"projects/{project}/topics/{topic}"
        emulator = os.environ.get("PUBSUB_EMULATOR_HOST")
        self.where = f"{self.topic_path}" + (f" (emulator {emulator})" if emulator else "")

    def _fatal(self, exc: Exception, what: str) -> FatalError:
        """A Google API error as one of our fatal errors, with one line saying what failed."""
        text = f"{what}: {exc.__class__.__name__}: {getattr(exc, 'message', exc)}"
        if isinstance(exc, self.errors.PermissionDenied | self.errors.Unauthenticated):
            return AuthError(f"not allowed to {text}")
        if isinstance(exc, self.errors.ServiceUnavailable | self.errors.DeadlineExceeded | self.errors.RetryError):
            return UnreachableError(f"Pub/Sub unreachable, could not {text}")
        if exc.__class__.__name__ == "DefaultCredentialsError":
            return AuthError(f"no Google credentials to {what} (gcloud auth application-default login, "
                             "or PUBSUB_EMULATOR_HOST for the emulator)")
        return FatalError(f"could not {text}")

    def _ensure_topic(self) -> None:
        with self._lock:
            if self._topic_ready:
                return
            try:
                if self._publisher is None:
                    options = self.pubsub.types.PublisherOptions(enable_message_ordering=True)
                    self._publisher = self.pubsub.PublisherClient(publisher_options=options)
                self._publisher.create_topic(name=self.topic_path, timeout=PUBLISH_TIMEOUT)
                LOGGER.info("created topic %s", self.topic_path)
            except self.errors.AlreadyExists:
                pass
            except Exception as exc:  # noqa: BLE001 - every Google API error becomes one line
                raise self._fatal(exc, f"create topic {self.topic_path}") from None
            self._topic_ready = True

    # -- sending ------------------------------------------------------------------------
    def send(self, message: ChatMessage) -> None:
        self._ensure_topic()
        try:
            future = self._publisher.publish(self.topic_path, message.body(), ordering_key=self.topic_path,
                                             id=message.id)
            future.result(timeout=PUBLISH_TIMEOUT)
        except Exception as exc:  # noqa: BLE001
            self._publisher.resume_publish(self.topic_path, self.topic_path)  # ordering stops after an error
            raise self._fatal(exc, f"send to {self.topic_path}") from None

    # -- listening ----------------------------------------------------------------------
    def listen(self, stop: StopFlag, history: int, on_event: OnEvent) -> None:
        """Create this listener's subscription, pass on every message, delete it at the end."""
        self._ensure_topic()
        subscriber = self.pubsub.SubscriberClient()
        subscription = subscriber.subscription_path(self.project, f"{self.name}-{uuid.uuid4().hex[:12]}")
        try:
            subscriber.create_subscription(request={"name": subscription, "topic": self.topic_path,
                                                    "ack_deadline_seconds": 30, "enable_message_ordering": True},
                                           timeout=PUBLISH_TIMEOUT)
        except Exception as exc:  # noqa: BLE001
            subscriber.close()
            raise self._fatal(exc, f"create subscription {subscription}") from None
        LOGGER.info("created subscription %s", subscription)
        recent: deque[str] = deque(maxlen=RECENT_IDS)

        def received(pulled) -> None:
            message = ChatMessage.parse(pulled.data, pulled.publish_time.timestamp())
            if not message.id or message.id not in recent:
                recent.append(message.id)
                on_event(message)
            pulled.ack()

        # One callback thread: messages reach on_event one at a time, in order.
        scheduler = self.pubsub.subscriber.scheduler.ThreadScheduler(ThreadPoolExecutor(max_workers=1))
        try:
            future = subscriber.subscribe(subscription, received, scheduler=scheduler)
            on_event(Status(Link.CONNECTED, self.where))
            while not stop.wait(0.2):
                if future.done():  # the client retries transient errors itself; this one it gave up on
                    raise self._fatal(future.exception() or RuntimeError("stream ended"), f"pull {subscription}")
            future.cancel()
            future.result(timeout=10)
        finally:
            try:
                subscriber.delete_subscription(subscription=subscription, timeout=PUBLISH_TIMEOUT)
                LOGGER.info("deleted subscription %s", subscription)
            except Exception as exc:  # noqa: BLE001 - reported, the program still ends cleanly
                LOGGER.warning("could not delete subscription %s: %s", subscription, exc)
            subscriber.close()

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.stop()
            self._publisher = None
