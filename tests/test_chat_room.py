"""The full-screen room, driven by Textual's headless pilot: two users talk through a real broker."""

import asyncio

from textual.widgets import Input

from chat_support import rabbit_room, room_name, sees, type_line, until
from rabbitipc.chat.events import ChatMessage
from rabbitipc.chat.rabbitmq import RabbitBackend


def test_two_users_talk_and_see_each_other_come_and_go(broker, request):
    """alice and bob type in their rooms: each sees both lines, bob's arrival and his leaving."""
    room = room_name(request)
    alice_app, bob_app = rabbit_room(broker.url, room, "alice"), rabbit_room(broker.url, room, "bob")

    async def scenario():
        async with alice_app.run_test() as alice:
            await until(alice, lambda: sees(alice_app, "* guest (as alice?) joined"), what="alice's own arrival")
            async with bob_app.run_test() as bob:
                await until(alice, lambda: sees(alice_app, "* guest (as bob?) joined"), what="bob joined")
                await type_line(alice, "hi bob!")
                await until(bob, lambda: sees(bob_app, "guest (as alice?): hi bob!"), what="alice's line at bob's")
                await type_line(bob, "hello alice")
                await until(alice, lambda: sees(alice_app, "guest (as bob?): hello alice"), what="bob's line")
                assert bob_app.query_one(Input).value == "", "the input line is cleared after Enter"
                assert "connected to" in bob_app.status_line and not bob_app.away
            await until(alice, lambda: sees(alice_app, "* guest (as bob?) left"), what="bob left")
            said = [line.split(" ", 1)[1] for line in alice_app.shown]
            assert said == ["* guest (as alice?) joined", "* guest (as bob?) joined", "guest (as alice?): hi bob!",
                            "guest (as bob?): hello alice", "* guest (as bob?) left"]
            # bob came after alice: history gave him alice's arrival, then he saw the rest live.
            assert [line.split(" ", 1)[1] for line in bob_app.shown][:3] == [
                "* guest (as alice?) joined", "* guest (as bob?) joined", "guest (as alice?): hi bob!"]

    asyncio.run(scenario())


def test_a_late_joiner_sees_the_last_messages(broker, request):
    """Someone entering after 30 messages sees the last --history of them, then the conversation goes on."""
    room = room_name(request)
    earlier = RabbitBackend(broker.url, room)
    for n in range(1, 31):
        earlier.send(ChatMessage.new("carol", f"line {n}"))
    earlier.close()
    late = rabbit_room(broker.url, room, "dave", history=5)

    async def scenario():
        async with late.run_test() as pilot:
            await until(pilot, lambda: sees(late, "* guest (as dave?) joined"), what="dave's own arrival")
            said = [line.split(" ", 1)[1] for line in late.shown]
            assert said[-1] == "* guest (as dave?) joined"
            # The last 5 messages of the room: carol's last ones, and dave's own arrival when it was
            # published before his listener looked back (the two race; both are the room's last 5).
            assert said[:-1] in ([f"guest (as carol?): line {n}" for n in range(26, 31)],
                                 [f"guest (as carol?): line {n}" for n in range(27, 31)]), said

    asyncio.run(scenario())


def test_text_is_shown_as_typed(broker, request):
    """Brackets and markup-like text reach the other side unchanged, and /quit leaves the room."""
    room = room_name(request)
    app = rabbit_room(broker.url, room, "erin")

    async def scenario():
        async with app.run_test() as pilot:
            await type_line(pilot, "[bold]not bold[/bold] ünïcode")
            await until(pilot, lambda: sees(app, "guest (as erin?): [bold]not bold[/bold] ünïcode"), what="the line")
            await type_line(pilot, "/quit")
            await until(pilot, lambda: not app.is_running, what="the room to close")
        assert app.return_code == 0

    asyncio.run(scenario())
