"""The chat's users on a shared server: a chat user who may only talk, a listener who may only listen.

The seed asks to share the server with a group without the admin password. The definitions
create the room and two users; every refused action ends with one clear line and exit code 3.
"""

import asyncio
import json
import os
import secrets
import subprocess
import sys

import pika
import pika.exceptions as px
import pytest

from chat_support import CHAT, LISTENING, chat, publish_raw, until
from devtools.localbroker import LocalBroker, free_port
from rabbitipc import definitions
from support import ROOT, SENDER, Program, program_env

ROLES = definitions.ROLES + definitions.CHAT_ROLES


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A node that loaded definitions with every role, the chat room included; no guest."""
    users = {role: (f"rabbitipc-{role}", secrets.token_urlsafe(12)) for role in ROLES}
    conf = definitions.write(tmp_path_factory.mktemp("definitions"), users)
    node = LocalBroker(tmp_path_factory.mktemp("shared-node"), extra_config=conf.read_text())
    node.start()

    def url(role):
        name, password = users[role]
        vhost = definitions.CHAT_VHOST if role in definitions.CHAT_ROLES else "%2F"
        return f"amqp://{name}:{password}@127.0.0.1:{node.amqp_port}/{vhost}"

    url.node = node  # rabbitmqctl, for what the broker holds
    yield url
    node.stop()


def error_line(program) -> str:
    lines = [line for line in program.lines if ": error: " in line]
    assert len(lines) == 1, program.output
    assert "Traceback" not in program.output
    return lines[0]


def test_chat_user_talks_and_the_listener_hears(shared):
    """The room exists from the definitions: the chat user sends, the listener and the chat user both read."""
    ears = [chat("--history", "0", "listen", "--count", "1", url=shared(role)) for role in ("listener", "chat")]
    for ear in ears:
        ear.wait_for_line(LISTENING)
    sender = chat("send", "--username", "alice", "--message", "hello group", url=shared("chat"))
    assert sender.wait() == 0, sender.output
    for ear in ears:
        assert ear.wait() == 0, ear.output
        assert any(line.endswith("rabbitipc-chat (as alice?): hello group") for line in ear.lines), ear.output
    late = chat("--history", "1", "listen", "--count", "1", url=shared("listener"))
    assert late.wait() == 0, late.output
    assert "rabbitipc-chat (as alice?): hello group" in late.output


def test_a_name_is_verified_only_when_it_is_the_senders_broker_user(shared):
    """The chat user as itself is shown plain; as alice, `rabbitipc-chat (as alice?)`; a body without user_id
    (any client may send one) claiming a name, notices included, `? (as name?)`; a forged user_id is refused."""
    ear = chat("--history", "0", "listen", "--count", "3", url=shared("listener"))
    ear.wait_for_line(LISTENING)
    for name, text in (("rabbitipc-chat", "it is me"), ("alice", "hello")):
        assert chat("send", "--username", name, "--message", text, url=shared("chat")).wait() == 0
    publish_raw(shared("chat"), "chat", {"kind": "joined", "username": "rabbitipc-chat"})
    with pytest.raises(px.ChannelClosedByBroker) as refused:
        publish_raw(shared("chat"), "chat", {"username": "rabbitipc-listener", "message": "x"},
                    user_id="rabbitipc-listener")
    assert refused.value.reply_code == 406 and "user_id property set to" in refused.value.reply_text
    publish_raw(shared("chat"), "chat", {"username": "rabbitipc-listener", "message": "forged"})
    assert ear.wait() == 0, ear.output
    said = [line.split(" ", 1)[1] for line in ear.lines if line[:2].isdigit() and line[2] == ":"]
    assert said == ["rabbitipc-chat: it is me", "rabbitipc-chat (as alice?): hello", "* ? (as rabbitipc-chat?) joined",
                    "? (as rabbitipc-listener?): forged"], ear.output


def test_a_flood_into_a_chat_users_own_queue_stops_at_the_length_limit(shared):
    """A durable server-named queue a chat user binds to the room (allowed: the seed's subscriber) keeps at most
    ChatLimits.queue_length messages, the oldest dropped, under a policy that also deletes it once unused."""
    limits = definitions.ChatLimits()
    listener = pika.BlockingConnection(pika.URLParameters(shared("listener")))
    talker = pika.BlockingConnection(pika.URLParameters(shared("chat")))
    try:
        channel = listener.channel()
        queue = channel.queue_declare("", durable=True).method.queue
        channel.queue_bind(queue, "chat")
        flood = talker.channel()
        for n in range(limits.queue_length + 50):
            flood.basic_publish("chat", "", json.dumps({"username": "flood", "message": str(n)}).encode())
        flood.confirm_delivery()  # the channel keeps order: once the last is confirmed, all were routed
        flood.basic_publish("chat", "", json.dumps({"username": "flood", "message": "last"}).encode())
        assert channel.queue_declare(queue, passive=True).method.message_count == limits.queue_length
        _, _, oldest = channel.basic_get(queue, auto_ack=True)
        assert json.loads(oldest)["message"] == "51", "the oldest were dropped, the newest kept"
        queues = shared.node.ctl("list_queues", "-p", definitions.CHAT_VHOST, "name", "policy").stdout
        assert f"{queue}\t{limits.policy(definitions.CHAT_VHOST)['name']}" in queues, queues
        policies = shared.node.ctl("list_policies", "-p", definitions.CHAT_VHOST).stdout
        assert f'"expires":{limits.idle_queue_ms}' in policies and '"overflow":"drop-head"' in policies, policies
        channel.queue_delete(queue)
    finally:
        talker.close()
        listener.close()


def test_chat_users_are_capped_in_queues_and_connections(shared):
    """Declaring more queues than ChatLimits.queues in the chat vhost is refused (406), and so is a chat
    user's connection beyond ChatLimits.connections (530): one user cannot fill the server."""
    limits = definitions.ChatLimits()
    connection = pika.BlockingConnection(pika.URLParameters(shared("listener")))
    try:
        channel = connection.channel()
        with pytest.raises(px.ChannelClosedByBroker) as refused:
            for _ in range(limits.queues + 1):
                channel.queue_declare("", exclusive=True)
        assert refused.value.reply_code == 406, refused.value
        assert f"queue limit in vhost '{definitions.CHAT_VHOST}' ({limits.queues}) is reached" in str(refused.value)
    finally:
        connection.close()
    opened = []
    try:
        with pytest.raises(px.AMQPConnectionError) as refused:
            for _ in range(limits.connections + 1):
                opened.append(pika.BlockingConnection(pika.URLParameters(shared("listener"))))
        assert f"user connection limit ({limits.connections}) is reached" in str(refused.value)
        assert len(opened) == limits.connections
    finally:
        for each in opened:
            each.close()


def test_listener_cannot_send(shared):
    """The listen-only user's send: refused, exit 3, one line saying so."""
    sender = chat("send", "--username", "mallory", "--message", "spam", url=shared("listener"))
    assert sender.wait() == 3, sender.output
    line = error_line(sender)
    assert "may not send to the chat 'chat'" in line and "not allowed to publish" in line, line


def test_listener_in_the_room_is_told_it_cannot_talk(shared):
    """The listen-only user entering the room: it closes with exit 3 and the same clear reason."""
    from rabbitipc.chat.rabbitmq import RabbitBackend
    from rabbitipc.chat.room import ChatRoom

    app = ChatRoom(RabbitBackend(shared("listener")), "mallory")

    async def scenario():
        async with app.run_test() as pilot:
            await until(pilot, lambda: not app.is_running, what="the room to close")

    asyncio.run(scenario())
    assert app.return_code == 3
    assert "may not send to the chat 'chat'" in str(app.error)


@pytest.mark.parametrize("role", ["chat", "listener"])
def test_chat_users_cannot_open_another_room(shared, role):
    """Another room would need the right to create exchanges: refused, exit 3."""
    program = chat("--room", "elsewhere", "send", "--username", "x", "--message", "hi", url=shared(role))
    assert program.wait() == 3, program.output
    assert "not allowed to create exchange 'elsewhere'" in error_line(program)


def test_a_listener_waits_for_a_room_it_may_not_create_then_says_so(shared):
    """Listening to a room that does not exist, which this user may not create: it waits the retry budget for
    someone who may, then exits 3 saying the room does not exist (not the bare refusal to create it)."""
    program = chat("--room", "elsewhere", "--retry-timeout", "2", "listen", url=shared("listener"))
    assert program.wait(60) == 3, program.output
    assert "the chat 'elsewhere' does not exist and this user may not create it" in error_line(program)


@pytest.mark.parametrize("role", ["chat", "listener"])
def test_chat_users_cannot_touch_the_work_queue(shared, role):
    """The programs' work queue is out of reach: the sender with a chat user's credentials exits 3."""
    sender = Program([sys.executable, str(SENDER), "--count", "1"], program_env(shared(role)))
    assert sender.wait() == 3, sender.output
    assert "not allowed" in error_line(sender)


@pytest.mark.parametrize("role", ["chat", "listener"])
def test_chat_users_cannot_delete_the_room(shared, role):
    """Neither user may delete the room or its history: the broker refuses (403)."""
    connection = pika.BlockingConnection(pika.URLParameters(shared(role)))
    try:
        for delete in (lambda ch: ch.exchange_delete("chat"), lambda ch: ch.queue_delete("chat.history")):
            with pytest.raises(px.ChannelClosedByBroker) as refused:
                delete(connection.channel())
            assert refused.value.reply_code == 403
    finally:
        connection.close()


def test_the_seeds_subscriber_works_with_the_listener(shared):
    """The seed's subscriber (an exclusive queue bound to `chat`) runs with the listener's credentials."""
    connection = pika.BlockingConnection(pika.URLParameters(shared("listener")))
    try:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(queue, "chat")
        assert chat("send", "--username", "bob", "--message", "to the seed", url=shared("chat")).wait() == 0
        method, _, body = channel.basic_get(queue, auto_ack=True)
        assert method is not None and b"to the seed" in body
    finally:
        connection.close()


def test_the_local_broker_script_creates_the_chat_users(tmp_path):
    """./start-local-docker-rabbitmq.sh (local node) writes CHAT_ and LISTENER_AMQP_URL, and they work."""
    env = {k: v for k, v in os.environ.items() if k != "AMQP_URL"}
    # The script's local-node path: no Docker engine answers at this socket.
    env.update(RABBITIPC_NODE_DIR=str(tmp_path / "node"), RABBITIPC_AMQP_PORT=str(free_port()),
               RABBITIPC_UI_PORT=str(free_port()), DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock")
    script = ROOT / "start-local-docker-rabbitmq.sh"
    started = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=240)
    try:
        assert started.returncode == 0, started.stderr
        urls = dict(line.split("=", 1) for line in (tmp_path / "node" / "urls.env").read_text().split())
        ear = chat("--history", "0", "listen", "--count", "1", url=urls["LISTENER_AMQP_URL"])
        ear.wait_for_line(LISTENING)
        assert chat("send", "--username", "local", "--message", "hi", url=urls["CHAT_AMQP_URL"]).wait() == 0
        assert ear.wait() == 0 and "rabbitipc-chat (as local?): hi" in ear.output, ear.output
    finally:
        subprocess.run([str(script), "--stop"], env=env, capture_output=True, timeout=120)


def test_listener_room_program_prints_the_reason_and_exits_3(shared, terminal):
    """The real `room` program with the listener's credentials: the screen closes, one line, exit 3."""
    screen = terminal([sys.executable, str(CHAT), "room", "--username", "mallory"], program_env(shared("listener")))
    shown = screen.wait_for("[exit 3]")
    assert "chat: error: may not send to the chat 'chat'" in shown, shown
    assert "Traceback" not in shown
