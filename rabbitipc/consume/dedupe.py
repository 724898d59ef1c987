"""A bounded memory of message ids already handled, to skip redelivered duplicates.

An id a client chose (the HTTP front's Idempotency-Key) comes with its payload's digest
(names.BODY_DIGEST_HEADER): the same id with another digest is not a copy but another message
under a reused key, which key_conflict() names so it is dead-lettered, not dropped (the
JSONL sink asks the same question of the ids in its file).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from ..names import BODY_DIGEST_HEADER


def body_digest(properties) -> object:
    """The BODY_DIGEST_HEADER a message carries, or None."""
    headers = getattr(properties, "headers", None)
    return headers.get(BODY_DIGEST_HEADER) if isinstance(headers, dict) else None


class RecentIds:
    """The last `size` ids seen (with their body digest, if any), oldest forgotten first; size 0 remembers nothing."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()  # --dedupe-store adds ids on the I/O thread, the pipeline on the worker

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def conflict(self, message_id: str, digest: object) -> str | None:
        """Why a message whose id was seen is not a copy of the one handled (another body digest), or None."""
        return key_conflict(message_id, self._ids.get(message_id), digest)

    def add(self, message_id: str, digest: object = None) -> None:
        if self.size <= 0:
            return
        with self._lock:
            ids = self._ids
            if message_id in ids:
                ids.move_to_end(message_id)
                return
            ids[message_id] = digest
            if len(ids) > self.size:
                ids.popitem(last=False)


def key_conflict(message_id: str, seen: object, digest: object) -> str | None:
    """Why a message is not a copy of the one handled under its id (digest `seen`, None if unknown), or None."""
    if seen is None or digest is None or seen == digest:
        return None
    return (f"Idempotency-Key conflict: id {message_id} was already handled with another body "
            f"({BODY_DIGEST_HEADER} {_short(seen)}, this one {_short(digest)}); not handled")


def _short(digest: object) -> str:
    return str(digest)[:16]
