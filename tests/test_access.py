"""Access control: sender, receiver and admin users from a definitions file; no guest."""

import base64
import secrets
import urllib.error
import urllib.request

import pytest

from rabbitipc import definitions
from rabbitipc.localbroker import LocalBroker
from support import RECEIVED, SENT

QUEUE = "hello"


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
