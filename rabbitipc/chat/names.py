"""The chat's names on RabbitMQ, without dependencies: the definitions generator imports them too."""

ROOM = "chat"

#: Retention of a room's history stream: 10 MB in 1 MB segments (RabbitMQ drops whole segments).
STREAM_ARGUMENTS = {
    "x-queue-type": "stream",
    "x-max-length-bytes": 10_000_000,
    "x-stream-max-segment-size-bytes": 1_000_000,
}


def history_stream(room: str) -> str:
    """The stream bound to a room's fanout exchange, which keeps what was said."""
    return f"{room}.history"
