"""Failures the user can cause or meet get one clear line and a distinct exit code."""

import pika
import pika.spec

from devtools.localbroker import free_port
from rabbitipc.errors import ReplyCode
from support import MAX_MESSAGE_SIZE


def _error_lines(program):
    return [line for line in program.lines if ": error: " in line]


def test_reply_codes_are_named_as_pika_names_them():
    """ReplyCode (stdlib only) names every AMQP reply code pika.spec defines, with pika's number."""
    spec = {name: getattr(pika.spec, name) for name in dir(pika.spec)
            if name.isupper() and isinstance(getattr(pika.spec, name), int) and 300 <= getattr(pika.spec, name) < 600}
    assert {code.name: code.value for code in ReplyCode} == spec


def test_wrong_password_exits_3_with_a_clear_line(run, broker):
    """Bad credentials: exit 3 at the first refusal (no retries), one error line naming the user,
    the password never shown."""
    url = broker.url.replace("guest:guest", "guest:s3cret-wrong")
    for role in ("sender", "receiver"):
        program = run(role, url=url)
        assert program.wait() == 3, program.output
        errors = _error_lines(program)
        assert len(errors) == 1 and "refused user 'guest'" in errors[0] and "ACCESS_REFUSED" in errors[0]
        assert "retrying" not in program.output, program.output
        assert "s3cret-wrong" not in program.output
        assert "Traceback" not in program.output


def test_a_vhost_that_does_not_exist_exits_3_naming_it(run, broker):
    """A URL naming a vhost the broker does not have: exit 3 at once, one line naming the vhost."""
    url = broker.url.replace("/%2F", "/no-such-vhost")
    program = run("sender", url=url)
    assert program.wait() == 3, program.output
    errors = _error_lines(program)
    assert len(errors) == 1 and "access to vhost 'no-such-vhost'" in errors[0], program.output
    assert "retrying" not in program.output and "Traceback" not in program.output


def test_unreachable_broker_exits_4_after_the_retry_budget(run):
    """Nothing listening: retries with backoff, then exit 4 with one line, password hidden."""
    url = f"amqp://guest:hidden-pw@127.0.0.1:{free_port()}/%2F"
    program = run("sender", "--retry-timeout", "2", url=url)
    assert program.wait(30) == 4, program.output
    errors = _error_lines(program)
    assert len(errors) == 1 and "unreachable" in errors[0] and "retry budget of 2s" in errors[0]
    assert "not reachable" in program.output and "retrying in" in program.output
    assert "hidden-pw" not in program.output and "Traceback" not in program.output


def test_existing_queue_with_other_settings_is_used_as_it_is_with_one_warning(run, broker, queue):
    """The previous tutorial's non-durable queue under our name: both programs use it, one warning names the cost."""
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    connection.channel().queue_declare(queue, durable=False)  # as the previous RabbitMQ tutorial did
    try:
        sender = run("sender", "--count", "2", "--rate", "0")
        assert sender.wait() == 0, sender.output
        receiver = run("receiver", "--count", "2")
        assert receiver.wait() == 0, receiver.output
        for program in (sender, receiver):
            warnings = [line for line in program.lines if f"queue {queue} already exists" in line]
            assert len(warnings) == 1, program.output
            assert "it is not durable: it and every message in it are lost when the broker restarts" in warnings[0]
            assert "Traceback" not in program.output
    finally:
        connection.channel().queue_delete(queue)
        connection.close()


def test_queue_of_another_type_is_used_and_the_flag_named(run, broker, queue):
    """A classic queue where ours would create a quorum one: used as it is, the warning names --queue-type."""
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    connection.channel().queue_declare(queue, durable=True)
    try:
        receiver = run("receiver", "--count", "1")
        receiver.wait_for_line("consuming from queue")
        sender = run("sender", "--count", "1", "--rate", "0")
        assert sender.wait() == 0, sender.output
        assert receiver.wait() == 0, receiver.output
        warning = next(line for line in receiver.lines if "already exists" in line)
        assert "it is a classic queue, not quorum" in warning and "--queue-type classic" in warning
        silenced = run("receiver", "--count", "1", "--queue-type", "classic")
        silenced.wait_for_line("consuming from queue")
        assert "already exists" not in silenced.output
        silenced.stop()
    finally:
        connection.channel().queue_delete(queue)
        connection.close()


def test_exchange_of_another_type_exits_5_naming_the_flag(run, broker):
    """An exchange that exists with another type cannot be adopted: exit 5, one line naming --exchange."""
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    connection.channel().exchange_declare("typed-elsewhere", "fanout")
    try:
        receiver = run("receiver", "--pattern", "direct", "--exchange", "typed-elsewhere", own_queue=False)
        assert receiver.wait() == 5, receiver.output
        errors = _error_lines(receiver)
        assert len(errors) == 1 and "--exchange" in errors[0], receiver.output
    finally:
        connection.channel().exchange_delete("typed-elsewhere")
        connection.channel().queue_delete("typed-elsewhere.dead")
        connection.close()


def test_message_over_the_brokers_max_message_size_exits_6_naming_both_sizes(run, limited_broker):
    """A message larger than the broker's max_message_size is a refusal: exit 6, the size and the limit in one line."""
    sender = run("sender", "--count", "1", "--size", str(MAX_MESSAGE_SIZE + 1000), url=limited_broker.url)
    assert sender.wait(20) == 6, sender.output[-2000:]
    errors = _error_lines(sender)
    assert len(errors) == 1 and str(MAX_MESSAGE_SIZE) in errors[0], errors
    assert "Traceback" not in sender.output



def test_http_sender_with_refused_credentials_exits_3(run, broker):
    """sender --http with a wrong password: exit 3 and one line, as without --http, not 503 for ever."""
    import urllib.request

    from support import wait_until

    port = free_port()
    sender = run("sender", "--http", f"127.0.0.1:{port}", url=broker.url.replace("guest:guest", "guest:wrong"))

    def poke():
        try:
            urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/messages", data=b"{}",
                                                          method="POST"), timeout=10).close()
        except OSError:
            pass

    wait_until(lambda: poke() or sender.proc.poll() is not None, 20, "the sender to exit",
               lambda: sender.output[-2000:])
    assert sender.wait() == 3, sender.output[-2000:]
    assert len(_error_lines(sender)) == 1
