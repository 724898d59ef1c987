"""The local broker's URLs: `.rabbitmq/urls.env`, written by start-local-docker-rabbitmq.sh.

That broker has no guest user: each program has its own user, and the script writes their AMQP
URLs (SENDER_AMQP_URL, RECEIVER_AMQP_URL, ADMIN_AMQP_URL, ...) to this file. A program given
neither --url nor AMQP_URL takes its URL from here, so the README's examples run as printed
after ./run-local.sh: flag beats AMQP_URL beats this file beats the localhost default.
Standard library only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: Where the script writes the file, relative to the checkout (or RABBITIPC_NODE_DIR).
RELATIVE = Path(".rabbitmq") / "urls.env"
#: The checkout this package runs from (in an installed package: site-packages, which has none).
CHECKOUT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class LocalUrl:
    """One program's URL and the file it came from (named in the connect line)."""

    url: str
    path: Path


def candidates(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> list[Path]:
    """The files looked at, in order: RABBITIPC_NODE_DIR's, the current directory's, the checkout's."""
    environ = os.environ if environ is None else environ
    node_dir = environ.get("RABBITIPC_NODE_DIR")
    paths = [Path(node_dir) / "urls.env"] if node_dir else []
    paths += [(cwd or Path.cwd()) / RELATIVE, CHECKOUT / RELATIVE]
    unique: list[Path] = []
    for path in paths:
        if path.absolute() not in [seen.absolute() for seen in unique]:
            unique.append(path)
    return unique


def find(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path | None:
    """The first of the candidate files that this user can read, or None."""
    for path in candidates(environ, cwd):
        if path.is_file() and os.access(path, os.R_OK):
            return path
    return None


def read(path: Path) -> dict[str, str]:
    """The VARIABLE=value lines of a urls.env file."""
    pairs = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and not name.startswith("#"):
            pairs[name.strip()] = value.strip()
    return pairs


def lookup(variable: str, environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> LocalUrl | None:
    """The URL `variable` (e.g. SENDER_AMQP_URL) of the local broker's file, when there is one."""
    path = find(environ, cwd)
    if path is None:
        return None
    url = read(path).get(variable)
    return LocalUrl(url, path) if url else None


def shell_hint(path: Path) -> str:
    """How to load the file in a shell, with a path as short as the current directory allows."""
    try:
        shown = str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        shown = str(path)
    return f"set -a; . {shown}; set +a"
