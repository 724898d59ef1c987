"""`make bench`: rabbitipc's programs against tutorial-style pika and amqplib, in one run."""
