"""Access control: a RabbitMQ definitions file with one user per role, loaded at broker start.

    sender    may declare its queue and publish through the default exchange; cannot consume
    receiver  may declare and consume its queue, park messages in <queue>.dead through the
              `rabbitipc.dead` exchange and listen on the control exchange; cannot publish work
    admin     the management UI (administrator tag, every permission)

and, when their passwords are set, the chat's users (rabbitipc-chat, docs/chat.md), for sharing
the server with a group without the admin password:

    chat      may publish to the `chat` exchange only, and read the room's history stream and
              its own server-named queues
    listener  may read the room's history stream and its own queues; cannot publish anything

With them, the definitions also create the room (the fanout exchange, its history stream and
the binding), so neither chat user needs the right to create, or delete, it.

There is no guest user: a broker that imports definitions at boot creates no default user.
Passwords come from the environment (a Kubernetes Secret, or the local run's generated file)
and are stored only as salted SHA-256 hashes, as RabbitMQ's own tools do.

    RABBITIPC_SENDER_PASSWORD=... RABBITIPC_RECEIVER_PASSWORD=... RABBITIPC_ADMIN_PASSWORD=... \\
        python -m rabbitipc.definitions --out DIR      # writes DIR/definitions.json, DIR/rabbitmq.conf

(RABBITIPC_CHAT_PASSWORD and RABBITIPC_LISTENER_PASSWORD add the chat's users.)
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import sys
from pathlib import Path

from rabbitipc.chat.names import ROOM, STREAM_ARGUMENTS, history_stream

from .names import CONTROL_EXCHANGE, DEAD_EXCHANGE, DEAD_SUFFIX

ROLES = ("sender", "receiver", "admin")
#: Written only when their password is set: the chat's users.
CHAT_ROLES = ("chat", "listener")


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password))."""
    salt = os.urandom(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def permissions(role: str, queue: str) -> dict[str, str]:
    """configure/write/read regular expressions for a role on its queue."""
    q, dead = re.escape(queue), re.escape(queue + DEAD_SUFFIX)
    server_named = r"amq\.gen-.*"
    if role == "sender":
        return {"configure": f"^({q}|{dead})$", "write": r"^amq\.default$", "read": "^$"}
    if role == "receiver":
        control, parked = re.escape(CONTROL_EXCHANGE), re.escape(DEAD_EXCHANGE)
        return {
            "configure": f"^({q}|{dead}|{control}|{parked}|{server_named})$",
            "write": f"^({dead}|{parked}|{server_named})$",
            "read": f"^({q}|{control}|{parked}|{server_named})$",
        }
    if role in CHAT_ROLES:
        room, own = re.escape(ROOM), server_named
        reads = f"^({room}|{re.escape(history_stream(ROOM))}|{own})$"
        # write on an own queue is what binding it needs; publishing needs write on the exchange.
        writes = f"^({room}|{own})$" if role == "chat" else f"^{own}$"
        return {"configure": f"^{own}$", "write": writes, "read": reads}
    return {"configure": ".*", "write": ".*", "read": ".*"}


def chat_room(vhost: str = "/") -> dict:
    """The room the chat's users use, created by the definitions: exchange, history stream, binding."""
    return {
        "exchanges": [{"name": ROOM, "vhost": vhost, "type": "fanout", "durable": True, "auto_delete": False,
                       "internal": False, "arguments": {}}],
        "queues": [{"name": history_stream(ROOM), "vhost": vhost, "durable": True, "auto_delete": False,
                    "arguments": STREAM_ARGUMENTS}],
        "bindings": [{"source": ROOM, "vhost": vhost, "destination": history_stream(ROOM),
                      "destination_type": "queue", "routing_key": "", "arguments": {}}],
    }


def definitions(users: dict[str, tuple[str, str]], queue: str = "hello", vhost: str = "/") -> dict:
    """Definitions for users {role: (name, password)}; with a chat role, the chat room too."""
    room = chat_room(vhost) if set(users) & set(CHAT_ROLES) else {}
    return {
        "vhosts": [{"name": vhost}],
        "users": [
            {"name": name, "password_hash": password_hash(password),
             "hashing_algorithm": "rabbit_password_hashing_sha256",
             "tags": ["administrator"] if role == "admin" else []}
            for role, (name, password) in users.items()
        ],
        "permissions": [
            {"user": name, "vhost": vhost, **permissions(role, queue)} for role, (name, _) in users.items()
        ],
        **room,
    }


def write(directory: str | os.PathLike, users: dict[str, tuple[str, str]], queue: str = "hello",
          seen_as: str | None = None) -> Path:
    """Write definitions.json and a rabbitmq.conf that loads it; return the conf's path.

    seen_as: the directory's path inside the broker's container, when it differs (Docker).
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    target = out / "definitions.json"
    target.write_text(json.dumps(definitions(users, queue), indent=2) + "\n")
    target.chmod(0o644)  # read by the rabbitmq user, another uid than the writer
    conf = out / "rabbitmq.conf"
    loaded = f"{seen_as.rstrip('/')}/definitions.json" if seen_as else target
    conf.write_text(f"# Written by python -m rabbitipc.definitions\nload_definitions = {loaded}\n")
    conf.chmod(0o644)
    return conf


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rabbitipc.definitions", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="directory for definitions.json and rabbitmq.conf")
    parser.add_argument("--queue", default=os.environ.get("RABBITIPC_QUEUE", "hello"))
    parser.add_argument("--seen-as", help="the --out directory's path inside the broker's container")
    args = parser.parse_args(argv)
    users = {}
    for role in ROLES:
        name = os.environ.get(f"RABBITIPC_{role.upper()}_USER", f"rabbitipc-{role}")
        password = os.environ.get(f"RABBITIPC_{role.upper()}_PASSWORD")
        if not password:
            print(f"definitions: error: RABBITIPC_{role.upper()}_PASSWORD is not set", file=sys.stderr)
            return 2
        users[role] = (name, password)
    for role in CHAT_ROLES:
        password = os.environ.get(f"RABBITIPC_{role.upper()}_PASSWORD")
        if password:
            users[role] = (os.environ.get(f"RABBITIPC_{role.upper()}_USER", f"rabbitipc-{role}"), password)
    conf = write(args.out, users, args.queue, args.seen_as)
    print(f"wrote {conf.parent / 'definitions.json'} and {conf} for users "
          + ", ".join(name for name, _ in users.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
