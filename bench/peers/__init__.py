"""The Python clients the bench compares rabbitipc with: one module per client, each its fastest
reliable strategy written the way that client's documentation shows (durable queue, persistent
messages, publisher confirms, manual acks after handling), all on one contract (contract.py)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class Peer:
    """A client in the bench: its row name, its module here, the package it needs, what it does."""

    name: str
    module: str
    needs: str       # the import name that must be installed
    package: str     # the pip name to install it with
    strategy: str
    share: float = 1.0   # of the bench's message counts (a client that waits per publish gets fewer)
    paced: bool = True   # whether it can keep the paced rate at all


PEERS = (
    Peer("pika-select", "pika_select", "pika", "pika",
         "pika SelectConnection, streamed confirms (window 1000), prefetch 1000, multiple acks per 100"),
    Peer("py-amqp", "pyamqp", "amqp", "amqp",
         "py-amqp, confirm.select with Basic.Ack events read between publishes (window 1000), "
         "prefetch 1000, multiple acks per 100"),
    Peer("aio-pika", "aiopika", "aio_pika", "aio-pika",
         "aio-pika, publisher_confirms channel, 1000 publishes awaited concurrently, prefetch 1000, "
         "multiple acks per 100", share=0.5),
    Peer("aiormq", "aiormq_peer", "aiormq", "aiormq",
         "aiormq, the same strategy on the low-level client under aio-pika", share=0.5),
    Peer("amqpstorm", "amqpstorm_peer", "amqpstorm", "amqpstorm",
         "amqpstorm, transactions of 1000 publishes (its maintainer's way to publish in bulk: its confirm "
         "mode waits for each confirm, polling every 10 ms), prefetch 1000, multiple acks per 100",
         share=0.2, paced=False),
    Peer("kombu", "kombu_peer", "kombu", "kombu",
         "kombu over py-amqp, confirm_publish (each publish waits: kombu's only mode), prefetch 1000, "
         "multiple acks per 100", share=0.2),
    Peer("tutorial-pika", "tutorial", "pika", "pika",
         "pika as the RabbitMQ tutorials write it: BlockingConnection, a confirm per publish, prefetch 1, "
         "an ack per message", share=0.2),
)


def installed(peer: Peer) -> bool:
    return importlib.util.find_spec(peer.needs) is not None


def by_name() -> dict[str, Peer]:
    return {peer.name: peer for peer in PEERS}
