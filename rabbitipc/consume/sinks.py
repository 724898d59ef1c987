"""Where handled messages go besides the log: a JSON Lines file that survives crashes.

The receiver acks a message only after its line is written, flushed and fsynced, so a
crash loses nothing; the ids already in the file are read at start, so a message redelivered
after a crash is not written twice.
"""

from __future__ import annotations

import json
import logging
import os
import time

from ..errors import EXIT_USAGE, FatalError
from .handlers import Delivery

LOGGER = logging.getLogger(__name__)


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
                if isinstance(record, dict) and record.get("id"):
                    self.ids.add(record["id"])
        LOGGER.info("%s holds %d messages already", self.path, len(self.ids))

    def write(self, delivery: Delivery) -> bool:
        """Persist the delivery; False when its id is already in the file (a redelivery)."""
        if delivery.id is not None and delivery.id in self.ids:
            return False
        if delivery.message is not None:
            record = delivery.message.as_dict()
        else:
            record = {"id": delivery.id, "text": delivery.body.decode("utf-8", errors="replace")}
        record["received_at"] = time.time()
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        if delivery.id is not None:
            self.ids.add(delivery.id)
        return True

    def close(self) -> None:
        self._file.close()
