"""A broker restart in the middle of a conversation: the rooms say the server is away, then carry on.

Nothing said is lost or shown twice: a line typed while the broker is down waits in the outbox,
and listeners resume reading the history stream right after the last message they showed.
"""

import asyncio
import re
from collections import Counter

from chat_support import LISTENING, chat, rabbit_room, room_name, sees, type_line, until

LINE = re.compile(r"^\d\d:\d\d:\d\d (.*)$")
#: What both rooms and the listener show (the tests' broker user, guest, sends as alice and as bob).
SAID = ["guest (as alice?): before the restart", "guest (as bob?): typed while the broker was down",
        "guest (as alice?): after the restart"]


def test_broker_restart_mid_conversation(broker, request):
    """Both rooms show the outage and the return; every line reaches both rooms and a listener exactly once."""
    room = room_name(request)
    observer = chat("--room", room, "--history", "0", "listen", url=broker.url)
    observer.wait_for_line(LISTENING)
    alice_app, bob_app = rabbit_room(broker.url, room, "alice"), rabbit_room(broker.url, room, "bob")

    async def scenario():
        async with alice_app.run_test() as alice, bob_app.run_test() as bob:
            await until(alice, lambda: sees(alice_app, "* guest (as bob?) joined"), what="bob joined")
            await type_line(alice, "before the restart")
            await until(bob, lambda: sees(bob_app, "guest (as alice?): before the restart"), what="the first line")

            stopping = asyncio.create_task(asyncio.to_thread(broker.stop))
            await until(alice, lambda: alice_app.away, 90, "alice's room to show the server away")
            await until(bob, lambda: bob_app.away, 90, "bob's room to show the server away")
            assert "reconnecting" in alice_app.status_line
            assert alice_app.query_one("#status").has_class("away")
            await stopping
            await type_line(bob, "typed while the broker was down")
            assert "(1 to send)" in str(bob_app.query_one("#status").render()), "bob sees his line waiting"
            await asyncio.to_thread(broker.start)

            await until(alice, lambda: not alice_app.away, 90, "alice's room to reconnect")
            await until(alice, lambda: sees(alice_app, "guest (as bob?): typed while the broker was down"), 90,
                        "the line typed during the outage")
            await type_line(alice, "after the restart")
            await until(bob, lambda: sees(bob_app, SAID[2]), 60, "the line after the restart")
            assert not bob_app.away and "connected to" in bob_app.status_line

        for app in (alice_app, bob_app):
            texts = [line.split(" ", 1)[1] for line in app.shown if ": " in line]
            assert texts == SAID, app.shown

    asyncio.run(scenario())
    observer.wait_for_line("* guest (as bob?) left")
    said = Counter(m[0] for m in observer.matches(LINE))
    for line in SAID:
        assert said[line] == 1, observer.output
    assert "reconnecting" in observer.output


def test_leaving_while_the_server_is_away_says_what_was_not_sent(terminal):
    """No server at all: the room says so, and leaving with a typed line unsent says so too, exit 4."""
    import sys

    from chat_support import CHAT
    from devtools.localbroker import free_port
    from support import program_env

    url = f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"
    screen = terminal([sys.executable, str(CHAT), "room", "--username", "alice"], program_env(url))
    screen.wait_for("server away, reconnecting")
    screen.type("is anyone there?")
    screen.wait_for("(2 to send)")  # her arrival notice and her line wait in the outbox
    screen.keys("C-c")
    shown = screen.wait_for("[exit 4]")
    assert "chat: error: 1 typed line(s) not sent" in shown, shown
