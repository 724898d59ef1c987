"""Access control: a RabbitMQ definitions file with one user per role and the topology, loaded at broker start.

The broker creates the topology from this file, so no program needs the right to change it:

    topology  the work queue (durable quorum) and <queue>.dead; the direct exchange `rabbitipc.work`
              bound to the work queue; `rabbitipc.dead` bound to <queue>.dead; `rabbitipc.retry`
              bound to the work queue (where delayed retries come back); `rabbitipc.control`
    sender    may publish through `rabbitipc.work` only (which reaches only the work queue, not
              <queue>.dead nor any other queue, as the default exchange would); no configure
              right, so it can neither delete nor purge nor declare anything; cannot consume
    receiver  may declare and consume its queue, park messages in <queue>.dead through the
              `rabbitipc.dead` exchange, declare its delay queues <queue>.retry.<ms>ms and send
              retries to them through `rabbitipc.retry` (and bind its queue there), and listen
              on the control exchange; with --dedupe-store, declare, read and write the stream
              <queue>.handled (bound to `rabbitipc.dead`); cannot publish work (a retry can only
              reach its own queue), send control commands, nor delete the control, parking or
              retry exchanges (the admin's)
    admin     the management UI and `rabbitipc-ctl` (administrator tag, every permission)

and, when their passwords are set, the chat's users (rabbitipc-chat, docs/chat.md), for sharing
the server with a group without the admin password:

    chat      may publish to the `chat` exchange only, and read the room's history stream and
              its own server-named queues
    listener  may read the room's history stream and its own queues; cannot publish anything

With them, the definitions also create the chat's own virtual host `chat` and the room in it
(the fanout exchange, its history stream and the binding), so neither chat user needs the right
to create, or delete, it, nor can reach the work programs' vhost. What they may hold there is
bounded (ChatLimits): connections and channels per user, queues in the vhost, and a policy on
their server-named queues (a length cap dropping the oldest, and deletion once unused).

There is no guest user: a broker that imports definitions at boot creates no default user.
Passwords come from the environment (a Kubernetes Secret, or the local run's generated file)
and are stored only as salted SHA-256 hashes, as RabbitMQ's own tools do.

    RABBITIPC_SENDER_PASSWORD=... RABBITIPC_RECEIVER_PASSWORD=... RABBITIPC_ADMIN_PASSWORD=... \\
        python -m rabbitipc.definitions --out DIR      # writes DIR/definitions.json, DIR/rabbitmq.conf

(RABBITIPC_CHAT_PASSWORD and RABBITIPC_LISTENER_PASSWORD add the chat's users.)
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from . import defaults
from .names import CHAT_ROOM as ROOM
from .names import CHAT_STREAM_ARGUMENTS as STREAM_ARGUMENTS
from .names import (
    CHAT_VHOST,
    CONTROL_EXCHANGE,
    DEAD_EXCHANGE,
    DEAD_SUFFIX,
    HANDLED_SUFFIX,
    RETRY_EXCHANGE,
    RETRY_INFIX,
    WORK_EXCHANGE,
    history_stream,
)
from .topology import QueueSettings

ROLES = ("sender", "receiver", "admin")
#: Written only when their password is set: the chat's users.
CHAT_ROLES = ("chat", "listener")
#: The work queue's settings unless told otherwise: the programs' default, a durable quorum queue.
WORK_QUEUE = QueueSettings()


@dataclass(frozen=True, slots=True)
class ChatLimits:
    """What the chat's users may hold on the server, so one of them cannot fill its memory or disk.

    RabbitMQ counts connections and channels per user, and queues per virtual host (hence the
    chat's own vhost). The chat itself needs no queue (it reads the history stream); the seed's
    subscriber declares one server-named queue per listener.
    """

    connections: int = 64  # per chat user: a person in the room holds 2, a listener 1
    channels: int = 512  # per chat user
    queues: int = 100  # in the chat vhost, the room's history stream included
    queue_length: int = 1000  # messages in a server-named queue: beyond it the oldest is dropped
    queue_bytes: int = 10_000_000  # and beyond this many bytes of bodies
    idle_queue_ms: int = 30 * 60 * 1000  # a server-named queue unused this long is deleted

    def user(self) -> dict[str, int]:
        return {"max-connections": self.connections, "max-channels": self.channels}

    def vhost(self, vhost: str) -> dict:
        return {"component": "vhost-limits", "name": "limits", "vhost": vhost, "value": {"max-queues": self.queues}}

    def policy(self, vhost: str) -> dict:
        """drop-head, not reject-publish: a full queue of one listener must not refuse everyone's messages."""
        return {"vhost": vhost, "name": "chat-server-named-queues", "pattern": r"^amq\.gen-", "apply-to": "queues",
                "priority": 0, "definition": {"max-length": self.queue_length, "max-length-bytes": self.queue_bytes,
                                              "overflow": "drop-head", "expires": self.idle_queue_ms}}


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password))."""
    salt = os.urandom(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def permissions(role: str, queue: str) -> dict[str, str]:
    """configure/write/read regular expressions for a role on its queue."""
    q, dead, handled = re.escape(queue), re.escape(queue + DEAD_SUFFIX), re.escape(queue + HANDLED_SUFFIX)
    server_named = r"amq\.gen-.*"
    if role == "sender":
        return {"configure": "^$", "write": f"^{re.escape(WORK_EXCHANGE)}$", "read": "^$"}
    if role == "receiver":
        control, parked, retry = re.escape(CONTROL_EXCHANGE), re.escape(DEAD_EXCHANGE), re.escape(RETRY_EXCHANGE)
        # The delay queues: declared (with a dead-letter exchange: read on them, write on it), bound
        # to rabbitipc.retry (write on them, read on it), published to through it (write on it); write on
        # the work queue binds it to rabbitipc.retry, where the delay queues send the retries back.
        delays = re.escape(queue + RETRY_INFIX) + r"\d+ms"
        return {
            "configure": f"^({q}|{dead}|{handled}|{delays}|{server_named})$",
            "write": f"^({q}|{dead}|{parked}|{handled}|{retry}|{delays}|{server_named})$",
            "read": f"^({q}|{control}|{parked}|{handled}|{retry}|{delays}|{server_named})$",
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


def definitions(users: dict[str, tuple[str, str]], queue: str = defaults.QUEUE, vhost: str = "/",
                limits: ChatLimits = ChatLimits(), queue_settings: QueueSettings = WORK_QUEUE) -> dict:
    """Definitions for users {role: (name, password)}; with a chat role, the chat's vhost and room too."""
    declared = topology(queue, vhost, queue_settings)
    chat = bool(set(users) & set(CHAT_ROLES))

    def vhosts_of(role: str) -> tuple[str, ...]:
        if role in CHAT_ROLES:
            return (CHAT_VHOST,)
        return (vhost, CHAT_VHOST) if chat and role == "admin" else (vhost,)

    def user(role: str, name: str, password: str) -> dict:
        entry = {"name": name, "password_hash": password_hash(password),
                 "hashing_algorithm": "rabbit_password_hashing_sha256",
                 "tags": ["administrator"] if role == "admin" else []}
        if role in CHAT_ROLES:
            entry["limits"] = limits.user()
        return entry

    result = {
        "vhosts": [{"name": vhost}] + ([{"name": CHAT_VHOST}] if chat else []),
        "users": [user(role, name, password) for role, (name, password) in users.items()],
        "permissions": [
            {"user": name, "vhost": where, **permissions(role, queue)}
            for role, (name, _) in users.items() for where in vhosts_of(role)
        ],
        **declared,
    }
    if chat:
        for key, items in chat_room(CHAT_VHOST).items():
            result[key] = result[key] + items
        result["parameters"] = [limits.vhost(CHAT_VHOST)]
        result["policies"] = [limits.policy(CHAT_VHOST)]
    return result


def topology(queue: str, vhost: str = "/", settings: QueueSettings = WORK_QUEUE) -> dict:
    """The queues, exchanges and bindings of the work pattern, created by the broker from the definitions.

    The work queue has `settings` (its type, single active consumer, priorities); <queue>.dead only its type,
    as a receiver declares it (topology.DeadLetterSpec)."""
    dead = queue + DEAD_SUFFIX

    def exchange(name: str) -> dict:
        return {"name": name, "vhost": vhost, "type": "direct", "durable": True, "auto_delete": False,
                "internal": False, "arguments": {}}

    def binding(source: str, destination: str) -> dict:
        return {"source": source, "vhost": vhost, "destination": destination, "destination_type": "queue",
                "routing_key": destination, "arguments": {}}

    return {
        "queues": [{"name": name, "vhost": vhost, "durable": True, "auto_delete": False,
                    "arguments": arguments.arguments()}
                   for name, arguments in ((queue, settings), (dead, QueueSettings(settings.queue_type)))],
        "exchanges": [exchange(name) for name in (WORK_EXCHANGE, DEAD_EXCHANGE, RETRY_EXCHANGE, CONTROL_EXCHANGE)],
        "bindings": [binding(WORK_EXCHANGE, queue), binding(DEAD_EXCHANGE, dead), binding(RETRY_EXCHANGE, queue)],
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
          seen_as: str | None = None, private: bool = False, memory_limit: int | None = None,
          queue_settings: QueueSettings = WORK_QUEUE) -> Path:
    """Write definitions.json and a rabbitmq.conf that loads it; return the conf's path.

    seen_as: the directory's path inside the broker's container, when it differs (Docker).
    private: the broker runs as the writer (a local node), so the file, which holds password
    hashes, is 0600. Otherwise it is 0644 for the broker's user (another uid: a container),
    and the caller keeps the directory above it private (the local scripts make their node
    directory 0700; in Kubernetes it is the Pod's own emptyDir).
    memory_limit: the broker container's memory limit in bytes, if it has one.
    queue_settings: the work queue's type, single active consumer and priorities.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    mode = 0o600 if private else 0o644
    target = out / "definitions.json"
    target.unlink(missing_ok=True)  # created anew with its mode: never readable by others, even briefly
    with os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "w") as handle:
        handle.write(json.dumps(definitions(users, queue, queue_settings=queue_settings), indent=2) + "\n")
    target.chmod(mode)  # what the umask took away
    conf = out / "rabbitmq.conf"
    loaded = f"{seen_as.rstrip('/')}/definitions.json" if seen_as else target
    conf.write_text(f"# Written by python -m rabbitipc.definitions\nload_definitions = {loaded}\n"
                    + memory_settings(memory_limit))
    conf.chmod(0o644)  # no secret in it
    return conf


if __name__ == "__main__":  # the documented command; its main is programs/definitions.py
    from .programs.definitions import main

    sys.exit(main())
