"""Access control: a RabbitMQ definitions file with one user per role and the topology, loaded at broker start.

The broker creates the topology from this file, so no program needs the right to change it:

    topology  the work queue (durable quorum) and <queue>.dead; the direct exchange `rabbitipc.work`
              bound to the work queue; `rabbitipc.dead` bound to <queue>.dead; `rabbitipc.control`
    sender    may publish through `rabbitipc.work` only (which reaches only the work queue, not
              <queue>.dead nor any other queue, as the default exchange would); no configure
              right, so it can neither delete nor purge nor declare anything; cannot consume
    receiver  may declare and consume its queue, park messages in <queue>.dead through the
              `rabbitipc.dead` exchange and listen on the control exchange; cannot publish work,
              send control commands, nor delete the control or parking exchanges (the admin's)
    admin     the management UI and `rabbitipc-ctl` (administrator tag, every permission)

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

from . import defaults
from .names import CONTROL_EXCHANGE, DEAD_EXCHANGE, DEAD_SUFFIX, WORK_EXCHANGE

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
        return {"configure": "^$", "write": f"^{re.escape(WORK_EXCHANGE)}$", "read": "^$"}
    if role == "receiver":
        control, parked = re.escape(CONTROL_EXCHANGE), re.escape(DEAD_EXCHANGE)
        return {
            "configure": f"^({q}|{dead}|{server_named})$",
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


def definitions(users: dict[str, tuple[str, str]], queue: str = defaults.QUEUE, vhost: str = "/") -> dict:
    """Definitions for users {role: (name, password)}; with a chat role, the chat room too."""
    declared = topology(queue, vhost)
    if set(users) & set(CHAT_ROLES):
        for key, items in chat_room(vhost).items():
            declared[key] = declared[key] + items
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
        **declared,
    }


def topology(queue: str, vhost: str = "/") -> dict:
    """The queues, exchanges and bindings of the work pattern, created by the broker from the definitions."""
    dead = queue + DEAD_SUFFIX

    def exchange(name: str) -> dict:
        return {"name": name, "vhost": vhost, "type": "direct", "durable": True, "auto_delete": False,
                "internal": False, "arguments": {}}

    def binding(source: str, destination: str) -> dict:
        return {"source": source, "vhost": vhost, "destination": destination, "destination_type": "queue",
                "routing_key": destination, "arguments": {}}

    return {
        "queues": [{"name": name, "vhost": vhost, "durable": True, "auto_delete": False,
                    "arguments": {"x-queue-type": defaults.QUEUE_TYPE}} for name in (queue, dead)],
        "exchanges": [exchange(name) for name in (WORK_EXCHANGE, DEAD_EXCHANGE, CONTROL_EXCHANGE)],
        "bindings": [binding(WORK_EXCHANGE, queue), binding(DEAD_EXCHANGE, dead)],
    }


#: Share of a container's memory limit RabbitMQ is told it has, as cluster-operator does: the rest
#: is headroom for what the Erlang VM allocates beyond its own accounting.
MEMORY_HEADROOM = 0.2


def memory_settings(limit: int | None) -> str:
    """rabbitmq.conf lines that make the memory alarm relative to a container limit (bytes).

    Without them RabbitMQ computes its high watermark from the node's memory and the container
    is OOM-killed before flow control starts.
    """
    if not limit:
        return ""
    available = int(limit * (1 - MEMORY_HEADROOM))
    return (f"# The container's memory limit is {limit} bytes; RabbitMQ sees {available} and keeps its\n"
            f"# default relative high watermark (0.4) of that.\n"
            f"total_memory_available_override_value = {available}\n")


def write(directory: str | os.PathLike, users: dict[str, tuple[str, str]], queue: str = defaults.QUEUE,
          seen_as: str | None = None, private: bool = False, memory_limit: int | None = None) -> Path:
    """Write definitions.json and a rabbitmq.conf that loads it; return the conf's path.

    seen_as: the directory's path inside the broker's container, when it differs (Docker).
    private: the broker runs as the writer (a local node), so the file, which holds password
    hashes, is 0600. Otherwise it is 0644 for the broker's user (another uid: a container),
    and the caller keeps the directory above it private (the local scripts make their node
    directory 0700; in Kubernetes it is the Pod's own emptyDir).
    memory_limit: the broker container's memory limit in bytes, if it has one.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    mode = 0o600 if private else 0o644
    target = out / "definitions.json"
    target.unlink(missing_ok=True)  # created anew with its mode: never readable by others, even briefly
    with os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "w") as handle:
        handle.write(json.dumps(definitions(users, queue), indent=2) + "\n")
    target.chmod(mode)  # what the umask took away
    conf = out / "rabbitmq.conf"
    loaded = f"{seen_as.rstrip('/')}/definitions.json" if seen_as else target
    conf.write_text(f"# Written by python -m rabbitipc.definitions\nload_definitions = {loaded}\n"
                    + memory_settings(memory_limit))
    conf.chmod(0o644)  # no secret in it
    return conf


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rabbitipc.definitions", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="directory for definitions.json and rabbitmq.conf")
    parser.add_argument("--queue", default=os.environ.get("RABBITIPC_QUEUE", defaults.QUEUE))
    parser.add_argument("--seen-as", help="the --out directory's path inside the broker's container")
    parser.add_argument("--private", action="store_true",
                        help="the broker runs as this user (a local node): definitions.json readable by it alone")
    parser.add_argument("--memory-limit", type=int, default=os.environ.get("RABBITIPC_BROKER_MEMORY_LIMIT") or None,
                        help="the broker container's memory limit in bytes (env RABBITIPC_BROKER_MEMORY_LIMIT): "
                             "the memory alarm is computed from it instead of the node's memory")
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
    conf = write(args.out, users, args.queue, args.seen_as, args.private, args.memory_limit)
    print(f"wrote {conf.parent / 'definitions.json'} and {conf} for users "
          + ", ".join(name for name, _ in users.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
