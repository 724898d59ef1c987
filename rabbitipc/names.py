"""Names every part agrees on (standard library only, for the tools that run before a venv exists)."""

#: Suffix of the dead-letter queue beside each durable queue.
DEAD_SUFFIX = ".dead"
#: Direct exchange of the stop-all control commands, routing key = the receivers' group.
CONTROL_EXCHANGE = "rabbitipc.control"
#: Receivers park messages they cannot handle through this exchange, bound to each <queue>.dead,
#: so they need no right to publish through the default exchange (that is, to any queue).
DEAD_EXCHANGE = "rabbitipc.dead"
#: The work pattern's direct exchange, bound to each work queue with the queue's name as the key:
#: a sender may write to it alone, which reaches only the queues bound to it (not every queue, as
#: the default exchange would, dead-letter queues included).
WORK_EXCHANGE = "rabbitipc.work"
