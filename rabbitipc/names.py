"""Names every part agrees on (standard library only, for the tools that run before a venv exists)."""

#: Suffix of the dead-letter queue beside each durable queue.
DEAD_SUFFIX = ".dead"
#: Suffix of the stream of handled ids beside a queue whose receivers run with --dedupe-store.
HANDLED_SUFFIX = ".handled"
#: Direct exchange of the stop-all control commands, routing key = the receivers' group.
CONTROL_EXCHANGE = "rabbitipc.control"
#: Receivers park messages they cannot handle through this exchange, bound to each <queue>.dead,
#: so they need no right to publish through the default exchange (that is, to any queue).
DEAD_EXCHANGE = "rabbitipc.dead"
#: The work pattern's direct exchange, bound to each work queue with the queue's name as the key:
#: a sender may write to it alone, which reaches only the queues bound to it (not every queue, as
#: the default exchange would, dead-letter queues included).
WORK_EXCHANGE = "rabbitipc.work"
#: Header of a message whose id is a client's Idempotency-Key (the HTTP front): the SHA-256 of its
#: payload, in hex. A receiver that sees the id again tells a true retry (the same digest: dropped
#: as a duplicate) from another body under the same key (dead-lettered as a key conflict).
BODY_DIGEST_HEADER = "x-body-sha256"
#: Headers of a message parked in <queue>.dead: why the handler refused it, and the queue it came from.
REASON_HEADER = "x-rabbitipc-reason"
QUEUE_HEADER = "x-rabbitipc-queue"
#: Header of a parked message: how many times a handler tried it (absent: once). A replay removes it.
#: A copy waiting in a delay queue for its next attempt carries the attempts made so far.
ATTEMPTS_HEADER = "x-rabbitipc-attempts"
#: Header of a retried or parked message: one short line per failed attempt, "<UTC time> <reason>".
FAILURES_HEADER = "x-rabbitipc-failures"
#: Receivers send a failed message's copy through this direct exchange to a delay queue
#: `<queue>.retry.<ms>ms` (key: its name); the delay queue's TTL dead-letters it back through the
#: same exchange to the work queue (key: the queue's name). No right on the default exchange needed.
RETRY_EXCHANGE = "rabbitipc.retry"
#: A delay queue's name: `<queue>.retry.<ms>ms`.
RETRY_INFIX = ".retry."

# -- the chat (rabbitipc-chat; the definitions generator creates its room too) --
#: The default room: a durable fanout exchange of that name, with its history stream bound to it.
CHAT_ROOM = "chat"
#: The virtual host the definitions give the chat's users: their queues, limits and policy stay
#: apart from the work programs' (vhost "/").
CHAT_VHOST = "chat"
#: Retention of a room's history stream: 10 MB in 1 MB segments (RabbitMQ drops whole segments).
CHAT_STREAM_ARGUMENTS = {
    "x-queue-type": "stream",
    "x-max-length-bytes": 10_000_000,
    "x-stream-max-segment-size-bytes": 1_000_000,
}


def history_stream(room: str) -> str:
    """The stream bound to a room's fanout exchange, which keeps what was said."""
    return f"{room}.history"
