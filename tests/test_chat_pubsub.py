"""The same chat on Google Cloud Pub/Sub, against the emulator the tests start: CLI and full-screen room."""

import asyncio
import uuid

import pytest

from chat_support import (
    HOSTILE_NAME,
    HOSTILE_NAME_SHOWN,
    HOSTILE_TEXT,
    HOSTILE_TEXT_SHOWN,
    chat,
    sees,
    type_line,
    until,
)


@pytest.fixture
def project():
    """A project of the test's own: topics and subscriptions of other tests stay apart."""
    return f"test-{uuid.uuid4().hex[:10]}"


def subscriptions(emulator, project) -> list[str]:
    from google.cloud import pubsub_v1

    client = pubsub_v1.SubscriberClient()
    try:
        return [s.name for s in client.list_subscriptions(request={"project": f"projects/{project}"})]
    finally:
        client.close()


def test_two_users_two_listeners_through_the_emulator(pubsub_emulator, project, monkeypatch):
    """Each listener gets a subscription of its own, hears both users in order, and deletes it when done."""
    env = pubsub_emulator.env(project)
    ears = [chat("--backend", "pubsub", "listen", "--count", "3", env=env) for _ in range(2)]
    for ear in ears:
        ear.wait_for_line("connected to projects/")
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host)
    assert len(subscriptions(pubsub_emulator, project)) == 2
    for user, text in [("alice", "hi from pubsub"), ("bob", "hello alice"), ("alice", "bye")]:
        sender = chat("--backend", "pubsub", "send", "--username", user, "--message", text, env=env)
        assert sender.wait(60) == 0, sender.output
    for ear in ears:
        assert ear.wait(60) == 0, ear.output
        said = [line.split(" ", 1)[1] for line in ear.lines if line[:2].isdigit() and line[2] == ":"]
        assert said == ["? (as alice?): hi from pubsub", "? (as bob?): hello alice", "? (as alice?): bye"], ear.output
        assert "deleted subscription" in ear.output
    assert subscriptions(pubsub_emulator, project) == []


def test_two_rooms_talk_through_the_emulator(pubsub_emulator, project, monkeypatch):
    """The full-screen room on Pub/Sub: same screen, same notices, and it says there is no history."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host)
    from rabbitipc.chat.pubsub import PubSubBackend
    from rabbitipc.chat.room import ChatRoom

    alice_app = ChatRoom(PubSubBackend(project, name="alice"), "alice")
    bob_app = ChatRoom(PubSubBackend(project, name="bob"), "bob")

    async def scenario():
        async with alice_app.run_test() as alice:
            await until(alice, lambda: "connected to projects/" in alice_app.status_line, 60, "alice connected")
            async with bob_app.run_test() as bob:
                await until(alice, lambda: sees(alice_app, "* ? (as bob?) joined"), 60, "bob joined")
                await type_line(alice, "hi bob, on pubsub")
                await until(bob, lambda: sees(bob_app, "? (as alice?): hi bob, on pubsub"), 60, "alice's line at bob's")
                await type_line(bob, "hi alice")
                await until(alice, lambda: sees(alice_app, "? (as bob?): hi alice"), 60, "bob's line at alice's")
            await until(alice, lambda: sees(alice_app, "* ? (as bob?) left"), 60, "bob left")
        assert alice_app.shown[0] == "* this server keeps no history: you see what is said from now on"

    asyncio.run(scenario())
    assert subscriptions(pubsub_emulator, project) == [], "each room deleted its subscription"


def test_a_stopped_listener_deletes_its_subscription(pubsub_emulator, project, monkeypatch):
    """SIGTERM (or Ctrl-C) stops a Pub/Sub listener cleanly: exit 0, and its subscription is gone."""
    import signal

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host)
    ear = chat("--backend", "pubsub", "listen", env=pubsub_emulator.env(project))
    ear.wait_for_line("connected to projects/")
    assert len(subscriptions(pubsub_emulator, project)) == 1
    ear.signal(signal.SIGTERM)
    assert ear.wait(60) == 0, ear.output
    assert subscriptions(pubsub_emulator, project) == []


def test_received_control_characters_are_printed_as_escapes_on_pubsub(pubsub_emulator, project, monkeypatch):
    """A body published to the topic by any client, with terminal escapes in its name and text: `listen` prints
    them as visible escapes, and the name as unverified (Pub/Sub vouches for no one)."""
    import json

    from google.cloud import pubsub_v1

    env = pubsub_emulator.env(project)
    ear = chat("--backend", "pubsub", "listen", "--count", "1", env=env)
    ear.wait_for_line("connected to projects/")
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host)
    client = pubsub_v1.PublisherClient()
    body = json.dumps({"username": HOSTILE_NAME, "message": HOSTILE_TEXT}).encode()
    client.publish(f"projects/{project}/topics/chat", body).result(timeout=60)
    assert ear.wait(60) == 0, ear.output
    assert "\x1b" not in ear.output, repr(ear.output)
    assert f"{HOSTILE_NAME_SHOWN}: {HOSTILE_TEXT_SHOWN}" in ear.output, ear.output
