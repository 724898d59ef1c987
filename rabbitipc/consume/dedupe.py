"""A bounded memory of message ids already handled, to skip redelivered duplicates."""

from __future__ import annotations

from collections import OrderedDict


class RecentIds:
    """The last `size` ids seen, oldest forgotten first; size 0 remembers nothing."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, message_id: str) -> None:
        if self.size <= 0:
            return
        ids = self._ids
        if message_id in ids:
            ids.move_to_end(message_id)
            return
        ids[message_id] = None
        if len(ids) > self.size:
            ids.popitem(last=False)
