"""RabbitHandler: log records travel through RabbitMQ without blocking the application."""

import json
import logging
import time

from devtools.localbroker import free_port
from rabbitipc.log_handler import RabbitHandler
from support import get_all, queue_depth, wait_until


def make_logger(handler, name):
    logger = logging.getLogger(f"test.{name}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def test_records_arrive_in_order_and_close_loses_nothing(broker, queue):
    """1000 records logged then close(): all 1000 are in the queue, in order, as rabbitipc messages."""
    handler = RabbitHandler(broker.url, queue)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = make_logger(handler, "order")
    for n in range(1000):
        logger.info("record %d", n)
    handler.close()
    assert handler.dropped == 0 and handler.sent == 1000
    payloads = [json.loads(body)["payload"] for _, body in get_all(broker.url, queue)]
    assert payloads == [f"INFO record {n}" for n in range(1000)]


def test_unreachable_broker_never_blocks_logging_and_counts_drops(capsys):
    """With the broker down, logging returns at once; past the buffer, records are counted as dropped."""
    handler = RabbitHandler(f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F", "logs", capacity=10,
                            close_timeout=1)
    logger = make_logger(handler, "down")
    started = time.monotonic()
    for n in range(100):
        logger.info("record %d", n)
    assert time.monotonic() - started < 1.0, "logging blocked"
    assert handler.dropped >= 89
    handler.close()
    assert handler.dropped == 100
    assert "100 log records dropped" in capsys.readouterr().err


def test_records_buffered_during_an_outage_are_sent_when_the_broker_returns(broker, queue):
    """Records logged while the broker restarts wait in the buffer and arrive afterwards."""
    handler = RabbitHandler(broker.url, queue)
    logger = make_logger(handler, "outage")
    logger.info("before")
    wait_until(lambda: handler.sent == 1, 10, "first record sent")
    broker.stop()
    try:
        for n in range(5):
            logger.info("during %d", n)
    finally:
        broker.start()
    wait_until(lambda: handler.sent == 6, 60, "buffered records sent after the restart")
    handler.close()
    assert handler.dropped == 0
    assert queue_depth(broker.url, queue) == 6


def test_broker_url_comes_from_amqp_url_when_not_given(broker, queue, monkeypatch):
    """RabbitHandler(queue=...) without a URL ships to the broker of AMQP_URL, as MessageQueue does."""
    monkeypatch.setenv("AMQP_URL", broker.url)
    handler = RabbitHandler(queue=queue)
    make_logger(handler, "env").info("from the environment")
    handler.close()
    assert handler.sent == 1
    assert [json.loads(body)["payload"] for _, body in get_all(broker.url, queue)] == ["from the environment"]
