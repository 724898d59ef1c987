"""Publishing with confirms: one engine (`engine.StreamPublisher`, many messages in flight) and the
one-at-a-time API on top of it (`blocking.Publisher`: publish() returns once the broker has the message).
The engine keeps its link (`link.PublishLink`: connection, confirm channel, loss) apart from its
unconfirmed window (`window.Window`: delivery tags, confirms, publishing again after a loss or refusal)."""
