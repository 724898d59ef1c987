"""Sender: publishes messages to RabbitMQ. Run `python sender/send.py --help`."""

import sys
from pathlib import Path

try:
    from rabbitipc.programs.cli import send_main
except ImportError:  # run from a checkout without installing: use the package beside us
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from rabbitipc.programs.cli import send_main

if __name__ == "__main__":
    sys.exit(send_main())
