"""Static checks: shell scripts are shellcheck clean and strict, Python is ruff clean."""

import shutil
import subprocess

import pytest

from support import ROOT

SCRIPTS = sorted([*ROOT.glob("*.sh"), *(ROOT / "scripts").glob("*.sh"), ROOT / ".ci" / "run"])
#: scripts/lib.sh is only sourced, by scripts that set strict mode themselves.
EXECUTABLES = [script for script in SCRIPTS if script.name != "lib.sh"]


@pytest.mark.parametrize("script", EXECUTABLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_script_uses_strict_mode(script):
    """Every script that runs on its own sets -euo pipefail."""
    assert "set -euo pipefail" in script.read_text()


def test_shellcheck_is_clean():
    """shellcheck finds nothing in any script."""
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    result = subprocess.run(["shellcheck", "-x", *map(str, SCRIPTS)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_python_code_is_ruff_clean():
    """ruff (configured in pyproject.toml) finds nothing in the code or the tests."""
    if shutil.which("ruff") is None:
        pytest.skip("ruff not installed (it is in the test extra)")
    result = subprocess.run(["ruff", "check", "rabbitipc", "tests", "sender", "receiver", "bench",
                             "examples"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
