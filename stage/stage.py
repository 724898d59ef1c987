"""Pipeline stage: consume a queue, transform with --handler, forward to --forward-to. Run with --help."""

import sys
from pathlib import Path

try:
    from rabbitipc.programs.cli import stage_main
except ImportError:  # run from a checkout without installing: use the package beside us
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from rabbitipc.programs.cli import stage_main

if __name__ == "__main__":
    sys.exit(stage_main())
