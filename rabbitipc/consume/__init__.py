"""Consuming with manual acks: the consumer (connection and consume lifecycle), handlers and the
Delivery they get, dispatch off pika's thread, duplicate ids, sinks and latency."""
