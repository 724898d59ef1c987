"""Access control: sender, receiver and admin users from a definitions file; no guest."""

import base64
import re
import secrets
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pika
import pika.exceptions as px
import pytest

from devtools.localbroker import LocalBroker
from rabbitipc import definitions
from rabbitipc.topology import QueueSettings
from support import RECEIVED, ROOT, SENT, admin_channel_call, program_env, wait_until

QUEUE = "hello"
QUORUM = QueueSettings().arguments()  # the work and dead-letter queues as the definitions declare them


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """A node that loaded definitions at start: one user per role, random passwords, no guest."""
    users = {role: (f"rabbitipc-{role}", secrets.token_urlsafe(12)) for role in definitions.ROLES}
    conf = definitions.write(tmp_path_factory.mktemp("definitions"), users, QUEUE, private=True)
    node = LocalBroker(tmp_path_factory.mktemp("secured-node"), extra_config=conf.read_text())
    node.start()

    def url(role):
        name, password = users[role]
        return f"amqp://{name}:{password}@127.0.0.1:{node.amqp_port}/%2F"

    yield node, url, users
    node.stop()


def error_line(program):
    return next(line for line in program.lines if ": error: " in line)


def test_sender_and_receiver_do_their_own_jobs(run, secured):
    """With its own user each program works: messages flow, dead letters still get parked."""
    _, url, _ = secured
    receiver = run("receiver", "--queue", QUEUE, "--max-size", "200", url=url("receiver"), own_queue=False)
    sender = run("sender", "--queue", QUEUE, "--count", "5", "--rate", "0", url=url("sender"), own_queue=False)
    assert sender.wait() == 0, sender.output
    receiver.wait_count(RECEIVED, 5)
    assert sorted(receiver.ids(RECEIVED)) == sorted(sender.ids(SENT))
    big = run("sender", "--queue", QUEUE, "--count", "1", "--size", "500", url=url("sender"), own_queue=False)
    assert big.wait() == 0
    receiver.wait_for_line("dead-lettered")
    assert "not allowed" not in receiver.output


def test_the_receiver_user_retries_a_failing_handler_then_parks(run, secured):
    """With its own user a receiver declares its delay queues and retries: a handler failing twice
    handles each message at its third attempt; an always failing one parks after 3 attempts."""
    _, url, _ = secured
    fast = ("--max-attempts", "3", "--min-backoff", "0.2", "--max-backoff", "1")
    receiver = run("receiver", "--queue", QUEUE, "--handler", "flaky:fail_until_attempt_3", *fast,
                   url=url("receiver"), own_queue=False)
    sender = run("sender", "--queue", QUEUE, "--count", "3", "--rate", "0", url=url("sender"), own_queue=False)
    assert sender.wait() == 0, sender.output
    receiver.wait_count(RECEIVED, 3)
    assert sorted(receiver.ids(RECEIVED)) == sorted(sender.ids(SENT))
    assert receiver.output.count("retrying id=") == 6 and "not allowed" not in receiver.output
    receiver.signal(signal.SIGTERM)
    assert receiver.wait() == 0, receiver.output
    failing = run("receiver", "--queue", QUEUE, "--handler", "flaky:always_fails", *fast, url=url("receiver"),
                  own_queue=False)
    sender = run("sender", "--queue", QUEUE, "--count", "1", "--rate", "0", url=url("sender"), own_queue=False)
    assert sender.wait() == 0, sender.output
    [parked] = sender.ids(SENT)
    failing.wait_for_line(f"dead-lettered id={parked}", 30)
    assert failing.output.count(f"retrying id={parked} ") == 2 and "not allowed" not in failing.output


def test_receiver_user_keeps_its_dedupe_store(run, secured):
    """With its own user a receiver declares, writes and reads back its --dedupe-store stream <queue>.handled."""
    _, url, _ = secured
    first = run("receiver", "--queue", QUEUE, "--dedupe-store", url=url("receiver"), own_queue=False)
    first.wait_for_line("consuming from queue")
    sender = run("sender", "--queue", QUEUE, "--count", "3", "--rate", "0", url=url("sender"), own_queue=False)
    assert sender.wait() == 0, sender.output
    wait_until(lambda: set(sender.ids(SENT)) <= set(first.ids(RECEIVED)), 30, "3 received", lambda: first.output)
    first.signal(signal.SIGTERM)
    assert first.wait() == 0, first.output
    second = run("receiver", "--queue", QUEUE, "--dedupe-store", url=url("receiver"), own_queue=False)
    second.wait_for_line("consuming from queue")
    [(read,)] = second.matches(re.compile(rf"read (\d+) handled ids from {QUEUE}\.handled"))
    assert int(read) >= 3, second.output


def test_receiver_user_cannot_publish(run, secured):
    """The receiver's credentials in a sender: access refused, exit 3, one clear line."""
    _, url, _ = secured
    sender = run("sender", "--queue", QUEUE, "--count", "1", url=url("receiver"), own_queue=False)
    assert sender.wait(30) == 3, sender.output
    assert "not allowed to publish" in error_line(sender)


def test_sender_user_cannot_consume(run, secured):
    """The sender's credentials in a receiver: access refused, exit 3, one clear line."""
    _, url, _ = secured
    receiver = run("receiver", "--queue", QUEUE, url=url("sender"), own_queue=False)
    assert receiver.wait(30) == 3, receiver.output
    assert "not allowed" in error_line(receiver)


def test_guest_is_disabled(run, secured):
    """guest/guest is refused outright."""
    node, _, _ = secured
    sender = run("sender", "--count", "1", url=f"amqp://guest:guest@127.0.0.1:{node.amqp_port}/%2F")
    assert sender.wait(30) == 3
    assert "refused user 'guest'" in error_line(sender)


@pytest.mark.parametrize("role,allowed", [("admin", True), ("sender", False), ("receiver", False)])
def test_only_the_admin_opens_the_management_api(secured, role, allowed):
    """The management API answers the admin user and refuses the programs' users."""
    node, _, users = secured
    name, password = users[role]
    request = urllib.request.Request(f"{node.management_url}api/whoami")
    request.add_header("Authorization", "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    assert (status == 200) is allowed, status


def test_passwords_are_not_on_the_command_line(run, secured):
    """Credentials travel in the environment: a running program's command line holds no password."""
    _, url, users = secured
    receiver = run("receiver", "--queue", QUEUE, url=url("receiver"), own_queue=False)
    receiver.wait_for_line("consuming from queue")
    with open(f"/proc/{receiver.proc.pid}/cmdline", "rb") as handle:
        cmdline = handle.read().decode()
    assert users["receiver"][1] not in cmdline
    assert users["receiver"][1] not in receiver.output


# -- issue 13 item 7: every right each user must NOT have ---------------------------------------
CONTROL, PARKING, WORK, OTHER = "rabbitipc.control", "rabbitipc.dead", "rabbitipc.work", "someone-elses-queue"
RETRY = "rabbitipc.retry"


def attempt(url, operation):
    """Run operation(channel) as a user on a confirming channel: None when the broker let it, else its reply code."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        try:
            operation(channel)
        except px.ChannelClosedByBroker as exc:
            return exc.reply_code
        return None
    finally:
        if connection.is_open:
            connection.close()


@pytest.fixture
def topology(secured):
    """The queues and exchanges the users must not touch exist before each check and are back after it."""
    node, url, _ = secured

    def build(channel):
        channel.queue_declare(QUEUE, durable=True, arguments=QUORUM)
        channel.queue_declare(QUEUE + ".dead", durable=True, arguments=QUORUM)
        channel.queue_declare(OTHER, durable=True)
        channel.exchange_declare(CONTROL, "direct", durable=True)
        channel.exchange_declare(PARKING, "direct", durable=True)
        channel.exchange_declare(WORK, "direct", durable=True)
        channel.exchange_declare(RETRY, "direct", durable=True)
        channel.queue_bind(QUEUE + ".dead", PARKING, routing_key=QUEUE + ".dead")
        channel.queue_bind(QUEUE, WORK, routing_key=QUEUE)

    admin_channel_call(url("admin"), build)
    yield
    admin_channel_call(url("admin"), build)


FORBIDDEN = [
    pytest.param("sender", lambda ch: ch.queue_delete(QUEUE), id="sender-deletes-the-work-queue"),
    pytest.param("sender", lambda ch: ch.queue_delete(QUEUE + ".dead"), id="sender-deletes-the-dead-letter-queue"),
    pytest.param("sender", lambda ch: ch.basic_publish("", QUEUE + ".dead", b"forged", mandatory=True),
                 id="sender-publishes-into-the-dead-letter-queue"),
    pytest.param("sender", lambda ch: ch.basic_publish("", OTHER, b"forged", mandatory=True),
                 id="sender-publishes-into-another-queue"),
    pytest.param("sender", lambda ch: ch.queue_declare("sender-made-queue", durable=True),
                 id="sender-declares-another-queue"),
    pytest.param("sender", lambda ch: ch.exchange_declare("sender-made-exchange", "fanout"),
                 id="sender-declares-an-exchange"),
    pytest.param("sender", lambda ch: ch.queue_purge(QUEUE), id="sender-purges-the-work-queue"),
    pytest.param("sender", lambda ch: ch.basic_get(QUEUE), id="sender-reads-the-work-queue"),
    pytest.param("sender", lambda ch: ch.basic_publish(CONTROL, QUEUE, b'{"command": "stop"}'),
                 id="sender-sends-a-control-command"),
    pytest.param("sender", lambda ch: ch.basic_publish(PARKING, QUEUE + ".dead", b"forged"),
                 id="sender-publishes-through-the-parking-exchange"),
    pytest.param("sender", lambda ch: ch.queue_bind(OTHER, WORK, routing_key=OTHER),
                 id="sender-binds-another-queue-to-the-work-exchange"),
    pytest.param("sender", lambda ch: ch.exchange_delete(WORK), id="sender-deletes-the-work-exchange"),
    pytest.param("sender", lambda ch: ch.queue_declare(QUEUE, durable=True, arguments=QUORUM),
                 id="sender-declares-even-its-own-queue"),
    pytest.param("receiver", lambda ch: ch.basic_publish("", QUEUE, b"work"), id="receiver-publishes-work"),
    pytest.param("receiver", lambda ch: ch.basic_publish(WORK, QUEUE, b"work"),
                 id="receiver-publishes-through-the-work-exchange"),
    pytest.param("receiver", lambda ch: ch.exchange_delete(WORK), id="receiver-deletes-the-work-exchange"),
    pytest.param("receiver", lambda ch: ch.queue_bind(QUEUE + ".dead", WORK, routing_key="x"),
                 id="receiver-binds-to-the-work-exchange"),
    pytest.param("receiver", lambda ch: ch.basic_publish("", QUEUE + ".dead", b"forged"),
                 id="receiver-publishes-through-the-default-exchange"),
    pytest.param("receiver", lambda ch: ch.basic_publish(CONTROL, QUEUE, b'{"command": "stop"}'),
                 id="receiver-sends-a-control-command"),
    pytest.param("receiver", lambda ch: ch.exchange_delete(CONTROL), id="receiver-deletes-the-control-exchange"),
    pytest.param("receiver", lambda ch: ch.exchange_delete(PARKING), id="receiver-deletes-the-parking-exchange"),
    pytest.param("receiver", lambda ch: ch.queue_declare("receiver-made-queue", durable=True),
                 id="receiver-declares-another-queue"),
    pytest.param("receiver", lambda ch: ch.basic_get(OTHER), id="receiver-reads-another-queue"),
    pytest.param("receiver", lambda ch: ch.queue_bind(OTHER, RETRY, routing_key=OTHER),
                 id="receiver-binds-another-queue-to-the-retry-exchange"),
    pytest.param("receiver", lambda ch: ch.queue_declare(OTHER + ".retry.1000ms", durable=True),
                 id="receiver-declares-another-queues-delay-queue"),
    pytest.param("receiver", lambda ch: ch.exchange_delete(RETRY), id="receiver-deletes-the-retry-exchange"),
    pytest.param("sender", lambda ch: ch.basic_publish(RETRY, QUEUE, b"forged"),
                 id="sender-publishes-through-the-retry-exchange"),
]


@pytest.mark.parametrize("role,operation", FORBIDDEN)
def test_each_user_is_refused_what_its_role_does_not_need(secured, topology, role, operation):
    """Least privilege: the broker refuses (403) each operation outside the role's job."""
    _, url, _ = secured
    assert attempt(url(role), operation) == 403


def ctl_as(url, *args):
    return subprocess.run([sys.executable, "-m", "rabbitipc.programs.ctl", *args], cwd=ROOT, env=program_env(url),
                          capture_output=True, text=True, timeout=30)


def test_ctl_without_the_right_exits_3_with_one_line(secured):
    """rabbitipc-ctl with a user that may not send control commands: exit 3, one line, no traceback."""
    _, url, _ = secured
    result = ctl_as(url("sender"), "stop", "--queue", QUEUE)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_sender_without_configure_right_publishes_into_the_definitions_topology(run, secured):
    """No receiver ever ran: the sender, who may declare nothing, publishes into the queue the definitions made."""
    _, url, _ = secured
    admin_channel_call(url("admin"), lambda ch: ch.queue_purge(QUEUE))
    sender = run("sender", "--queue", QUEUE, "--count", "3", "--rate", "0", url=url("sender"), own_queue=False)
    assert sender.wait() == 0, sender.output
    assert len(sender.ids(SENT)) == 3
    assert "not allowed" not in sender.output and "WARNING" not in sender.output
    admin_channel_call(url("admin"), lambda ch: ch.queue_purge(QUEUE))
