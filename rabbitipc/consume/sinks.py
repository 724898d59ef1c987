"""Where handled messages go besides the log: a JSON Lines file that survives crashes.

The receiver acks a message only after its line is written, flushed and fsynced, so a
crash loses nothing; the ids already in the file are read at start, so a message redelivered
after a crash is not written twice.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time

from ..errors import EXIT_USAGE, FatalError
from .handlers import Delivery

LOGGER = logging.getLogger(__name__)


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
        self.ids: set[str] = set()
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
                    self.ids.add(record["id"])  # ours only: see write()
        LOGGER.info("%s holds %d messages already", self.path, len(self.ids))

    def write(self, delivery: Delivery) -> bool:
        """Persist the delivery; False when it is one of ours whose id is already in the file (a redelivery).

        Another client's message_id is not unique by our rules, so its messages are always written.
        """
        ours = delivery.message
        if ours is not None and ours.id in self.ids:
            return False
        record = ours.as_dict() if ours is not None else {"id": delivery.id, **body_record(delivery.body)}
        record["received_at"] = time.time()
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        if ours is not None:
            self.ids.add(ours.id)
        return True

    def close(self) -> None:
        self._file.close()
