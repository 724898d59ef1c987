"""Where handled messages go besides the log: a JSON Lines file that survives crashes.

The receiver acks a message only after its line is written, flushed and fsynced, so a
crash loses nothing; the ids already in the file are read at start, so a message redelivered
after a crash is not written twice. A message sent with a client's Idempotency-Key keeps its
body digest (names.BODY_DIGEST_HEADER) in its record, so the same id with another body is told
apart from a redelivery even after a restart: another message under a reused key.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from enum import Enum

from ..errors import EXIT_USAGE, FatalError
from .dedupe import body_digest, key_conflict
from .handlers import Delivery

LOGGER = logging.getLogger(__name__)

DIGEST_FIELD = "body_sha256"  # a record's BODY_DIGEST_HEADER, when its message had one (older records: none)


class Stored(Enum):
    """What JsonlSink.write() did with a delivery."""

    WRITTEN = "written"
    COPY = "copy"  # its id is in the file with the same body (or no digest to compare): a redelivery
    CONFLICT = "conflict"  # its id is in the file with another body digest: a reused key, not written


def body_record(body: bytes) -> dict:
    """A foreign body as a record field: {"text": ...} when it is UTF-8, else {"base64": ...}, byte for byte."""
    try:
        return {"text": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(body).decode("ascii")}


class JsonlSink:
    """Appends one JSON object per message to a file, durably, skipping ids already there."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.ids: dict[str, object] = {}  # id -> its body digest (None when it came without one)
        try:
            if os.path.exists(path):
                self._load()
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the sink
        except OSError as exc:
            raise FatalError(f"--jsonl {path}: {exc.strerror or exc}", EXIT_USAGE) from None

    def _load(self) -> None:
        with open(self.path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    record = json.loads(line)
                except ValueError:
                    LOGGER.warning("%s line %d is not JSON (a torn write?); ignored", self.path, number)
                    continue
                if isinstance(record, dict) and isinstance(record.get("id"), str) and "payload" in record:
                    self.ids.setdefault(record["id"], record.get(DIGEST_FIELD))  # ours only: see write()
        LOGGER.info("%s holds %d messages already", self.path, len(self.ids))

    def conflict(self, message_id: str, digest: object) -> str | None:
        """Why a message of ours is not a copy of the one in the file under its id (dedupe.key_conflict), or None."""
        return key_conflict(message_id, self.ids.get(message_id), digest)

    def write(self, delivery: Delivery) -> Stored:
        """Persist the delivery, unless it is one of ours whose id is already in the file (COPY or CONFLICT).

        Another client's message_id is not unique by our rules, so its messages are always written.
        """
        ours = delivery.message
        digest = body_digest(delivery.properties) if ours is not None else None
        if ours is not None and ours.id in self.ids:
            return Stored.CONFLICT if self.conflict(ours.id, digest) is not None else Stored.COPY
        record = ours.as_dict() if ours is not None else {"id": delivery.id, **body_record(delivery.body)}
        if isinstance(digest, str):
            record[DIGEST_FIELD] = digest
        record["received_at"] = time.time()
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        if ours is not None:
            self.ids[ours.id] = digest
        return Stored.WRITTEN

    def close(self) -> None:
        self._file.close()
