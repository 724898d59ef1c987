"""The table of defaults, written once: the programs' options, the library's constructors and the
dev tools read them from here. Standard library only (definitions.py runs before a venv exists)."""

#: The broker of a local run: RabbitMQ's own default user on localhost.
URL = "amqp://guest:guest@localhost:5672/%2F"
#: The work queue, and the routing key and binding of the direct pattern.
QUEUE = "hello"
#: The type of the queues ours creates: the current tutorials' (durable quorum queues), so either side
#: may start first. A queue that exists is used as it is, whatever its type.
QUEUE_TYPE = "quorum"
#: The request queue of request/reply (the tutorials' sixth pattern).
RPC_QUEUE = "rpc_queue"
#: Unacked messages the broker may hand one receiver at once (sized by `make bench-sweep`).
PREFETCH = 250
#: Messages the sender publishes ahead of their confirms (sized by `make bench-sweep`).
WINDOW = 1000
#: Bodies larger than this many bytes are dead-lettered unread.
MAX_SIZE = 1024 * 1024
#: Message ids a receiver remembers, to skip redelivered duplicates.
DEDUPE_WINDOW = 10000
#: Per-message log lines a second; the rest are counted in one summary line a second.
LOG_RATE = 100.0
#: A message the broker nacks or returns this many times is given up (UndeliverableError).
MAX_REFUSALS = 5
#: Seconds to keep retrying an unreachable broker (0: forever), and the cap of the delay between tries.
RETRY_TIMEOUT = 300.0
MAX_RETRY_DELAY = 30.0
