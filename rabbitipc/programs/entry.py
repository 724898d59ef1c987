"""Start a program from a checkout's script (sender/send.py, ...) with a clear line when a
dependency is missing, instead of a traceback. Imports nothing but the standard library itself,
so it runs under any Python 3."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from ..errors import EXIT_MISSING_DEPENDENCY

CHECKOUT = Path(__file__).resolve().parent.parent.parent


def _script(argv0: str) -> str:
    """The script as the user would type it from the checkout (sender/send.py)."""
    try:
        return str(Path(argv0).resolve().relative_to(CHECKOUT))
    except ValueError:
        return argv0


def missing_dependency(name: str, argv0: str, python: str = sys.executable) -> str:
    """The one line for a dependency this Python cannot import."""
    venv_python = CHECKOUT / ".venv" / "bin" / "python"
    use = f"use .venv/bin/python {_script(argv0)}"
    if venv_python.exists():
        return f"{name} is not installed for {python}: {use}"
    return f"{name} is not installed for {python}: run ./run-local.sh once (it makes .venv/), then {use}"


def run(module: str, function: str) -> int:
    """Import `module` and return what its `function` returns; a missing dependency is one line on
    stderr and exit code EXIT_MISSING_DEPENDENCY."""
    try:
        main = getattr(importlib.import_module(module), function)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").partition(".")[0]
        if not top or top == "rabbitipc":
            raise
        print(f"{Path(sys.argv[0]).name}: error: {missing_dependency(top, sys.argv[0])}", file=sys.stderr)
        return EXIT_MISSING_DEPENDENCY
    return main()
