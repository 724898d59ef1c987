"""The chat program: the seed's sender, subscriber and a full-screen room. Run `python chat/chat.py --help`."""

import sys
from pathlib import Path

try:
    from rabbitipc.chat.cli import main
except ImportError:  # run from a checkout without installing: use the package beside us
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from rabbitipc.chat.cli import main

if __name__ == "__main__":
    sys.exit(main())
