"""Receiver: consumes messages from RabbitMQ and logs one line each. Run `python receiver/receive.py --help`."""

import sys
from pathlib import Path

try:
    from rabbitipc.programs import entry
except ImportError:  # run from a checkout without installing: use the package beside us
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from rabbitipc.programs import entry

if __name__ == "__main__":
    sys.exit(entry.run("rabbitipc.programs.cli", "receive_main"))  # a missing pika: one line, exit 8
