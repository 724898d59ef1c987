"""`python -m rabbitipc.definitions --out DIR`: write the broker's definitions (see rabbitipc.definitions).

The broker's init container runs it (from the sender image, which has every dependency).
"""

from __future__ import annotations

import argparse
import os
import sys

from .. import defaults, definitions
from ..definitions import CHAT_ROLES, ROLES, write
from ..topology import QUEUE_TYPES, QueueSettings
from .options import boolean, choice


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rabbitipc.definitions",
                                     description=definitions.__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="directory for definitions.json and rabbitmq.conf")
    parser.add_argument("--queue", default=os.environ.get("RABBITIPC_QUEUE", defaults.QUEUE))
    environ = os.environ
    parser.add_argument("--queue-type", choices=QUEUE_TYPES,
                        help="the work queue's type, as the programs' --queue-type (env RABBITIPC_QUEUE_TYPE; "
                             "default quorum)")
    parser.add_argument("--single-active-consumer", action="store_true", default=None,
                        help="the work queue delivers to one receiver at a time (env RABBITIPC_SINGLE_ACTIVE_CONSUMER)")
    parser.add_argument("--max-priority", type=int, default=environ.get("RABBITIPC_MAX_PRIORITY") or None,
                        help="the work queue's priority levels, 1-255 (env RABBITIPC_MAX_PRIORITY; needs "
                             "--queue-type classic)")
    parser.add_argument("--seen-as", help="the --out directory's path inside the broker's container")
    parser.add_argument("--private", action="store_true",
                        help="the broker runs as this user (a local node): definitions.json readable by it alone")
    parser.add_argument("--memory-limit", type=int, default=os.environ.get("RABBITIPC_BROKER_MEMORY_LIMIT") or None,
                        help="the broker container's memory limit in bytes (env RABBITIPC_BROKER_MEMORY_LIMIT): "
                             "the memory alarm is computed from it instead of the node's memory")
    args = parser.parse_args(argv)
    for flag, variable, convert, default in (("queue_type", "RABBITIPC_QUEUE_TYPE", choice(QUEUE_TYPES), "quorum"),
                                             ("single_active_consumer", "RABBITIPC_SINGLE_ACTIVE_CONSUMER", boolean,
                                              False)):
        if getattr(args, flag) is None:  # no flag: the environment variable, else the default
            try:
                setattr(args, flag, convert(environ[variable]) if environ.get(variable) else default)
            except ValueError as exc:
                print(f"definitions: error: environment variable {variable}: {exc}", file=sys.stderr)
                return 2
    try:
        queue_settings = QueueSettings(args.queue_type, single_active_consumer=args.single_active_consumer,
                                       max_priority=None if args.max_priority is None else int(args.max_priority))
    except ValueError as exc:
        flags = "--max-priority needs --queue-type classic" if "classic" in str(exc) else "--max-priority"
        print(f"definitions: error: {flags}: {exc}", file=sys.stderr)
        return 2
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
    conf = write(args.out, users, args.queue, args.seen_as, args.private, args.memory_limit, queue_settings)
    print(f"wrote {conf.parent / 'definitions.json'} and {conf} for users "
          + ", ".join(name for name, _ in users.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
