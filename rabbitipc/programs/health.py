"""The probe: `python -m rabbitipc.health FILE [--connected] [--max-age S]` (see rabbitipc.health)."""

from __future__ import annotations

import argparse
import sys

from .. import health
from ..health import check


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rabbitipc.health", description=health.__doc__.split("\n")[0])
    parser.add_argument("path", help="the program's --health-file")
    parser.add_argument("--connected", action="store_true", help="also require a broker connection (readiness)")
    parser.add_argument("--max-age", type=float, default=60.0, help="seconds since the last beat (default 60)")
    args = parser.parse_args(argv)
    problem = check(args.path, args.max_age, args.connected)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
