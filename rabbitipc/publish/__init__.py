"""Publishing with confirms: one engine (`engine.StreamPublisher`, many messages in flight) and the
one-at-a-time API on top of it (`blocking.Publisher`: publish() returns once the broker has the message)."""
