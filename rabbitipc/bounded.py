"""A map that keeps only its newest entries: what a long-running process remembers per message
(reasons of messages decided dead, Idempotency-Keys) must not grow with the traffic."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")


class BoundedMap(Generic[V]):
    """The last `size` keys added, oldest forgotten first; each call is one dict operation, so a
    reader on another thread sees a value or None, never a broken map."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> V | None:
        return self._items.get(key)

    def add(self, key: str, value: V) -> None:
        self._items[key] = value
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def discard(self, key: str) -> None:
        self._items.pop(key, None)
