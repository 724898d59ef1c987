"""The one place rabbitipc reaches into pika's private API: writing a turn's frames in one go.

pika hands each frame to the socket on its own, three per message (method, header, body):
those send() calls were a third of the publisher's time. `CoalescingConnection` holds the
frames pika emits and writes them as one buffer when `release()` is called, which the
publishing engine does just before its I/O loop waits. Nothing else in rabbitipc names a
private pika attribute; if a pika release renames the hook, tests/test_pika_frames.py fails.

Checked against pika 1.4.4 (installed here; pyproject allows pika>=1.3,<2), where
`pika.adapters.base_connection.BaseConnection._adapter_emit_data(data)` is the single point
through which every outgoing frame reaches the transport.
"""

from __future__ import annotations

from typing import Any

import pika

#: The private pika method we override; named once so the test can check it still exists.
HOOK = "_adapter_emit_data"


class CoalescingConnection(pika.SelectConnection):
    """A SelectConnection that sends what was written between two turns of the loop in one go."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._held: list[bytes] = []
        super().__init__(*args, **kwargs)

    @property
    def held_bytes(self) -> int:
        """Bytes written by pika and not yet handed to the socket."""
        return sum(map(len, self._held))

    def _adapter_emit_data(self, data: bytes) -> None:
        self._held.append(data)

    def release(self) -> None:
        """Hand everything held to the transport, as one write."""
        if self._held:
            data = b"".join(self._held)
            self._held.clear()
            super()._adapter_emit_data(data)
