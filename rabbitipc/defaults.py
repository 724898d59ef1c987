"""The table of defaults, written once: the programs' options, the library's constructors and the
dev tools read them from here. Standard library only (definitions.py runs before a venv exists)."""

#: The broker of a local run: RabbitMQ's own default user on localhost.
URL = "amqp://guest:guest@localhost:5672/%2F"
#: The work queue, and the routing key and binding of the direct pattern.
QUEUE = "hello"
#: The type of the queues ours creates: the current tutorials' (durable quorum queues), so either side
#: may start first. A queue that exists is used as it is, whatever its type.
QUEUE_TYPE = "quorum"
#: Replicas of the quorum queues ours creates (x-quorum-initial-group-size), None: the broker's
#: default (3, the cluster size when smaller). Not set by default: the tutorials declare their
#: queues without it, and a declare whose arguments differ is refused (406) for whichever side
#: comes second, so setting it would break "either side may start first".
QUORUM_REPLICAS = None
#: The request queue of request/reply (the tutorials' sixth pattern).
RPC_QUEUE = "rpc_queue"
#: Unacked messages the broker may hand one receiver at once (sized by `make bench-sweep`).
PREFETCH = 250
#: Messages the sender publishes ahead of their confirms (sized by `make bench-sweep`).
WINDOW = 1000
#: Bodies larger than this many bytes are dead-lettered unread.
MAX_SIZE = 1024 * 1024
#: Forwards a message may have behind it when a stage takes it: one more, and the stage dead-letters it
#: (a cycle of stages, A->B->A, would otherwise run forever). Pipelines longer than 16 stages raise it.
MAX_HOPS = 16
#: Handler attempts per message (1: a failure is dead-lettered at once), and the broker-side delay before
#: the next one: min_backoff doubling per failure up to max_backoff (seconds). Three attempts over about
#: 3 s ride out a restarting database or a redeploying service, without hiding a real bug for long.
MAX_ATTEMPTS = 3
MIN_BACKOFF = 1.0
MAX_BACKOFF = 30.0
#: Message ids a receiver remembers, to skip redelivered duplicates.
DEDUPE_WINDOW = 10000
#: Per-message log lines a second; the rest are counted in one summary line a second.
LOG_RATE = 100.0
#: A message the broker nacks or returns this many times is given up (UndeliverableError).
MAX_REFUSALS = 5
#: Seconds to keep retrying an unreachable broker (0: forever), and the cap of the delay between tries.
RETRY_TIMEOUT = 300.0
MAX_RETRY_DELAY = 30.0
#: Seconds a stopping receiver gives the message in hand: Kubernetes' default terminationGracePeriodSeconds
#: (30) less 5 s to close the connection and exit before the SIGKILL.
GRACE_PERIOD = 25.0
