"""The system packages: one list (scripts/system-packages.txt) that installs and checks every program
outside the virtualenv that the scripts and tests use."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from support import ROOT

LIST = ROOT / "scripts" / "system-packages.txt"
CHECK = ROOT / "scripts" / "system-packages.sh"


def rows() -> list[tuple[str, str, str]]:
    """(group, program, package) of each line of the list."""
    out = []
    for line in LIST.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            group, program, package, *_why = line.split()
            out.append((group, program, package))
    return out


def test_podman_pause_binary_is_listed_explicitly():
    """catatonit, podman's pause binary, is installed on its own: --no-install-recommends drops it."""
    assert ("podman", "catatonit", "catatonit") in rows()


def test_check_names_the_package_of_a_missing_program(tmp_path):
    """A missing program fails the check with the package that provides it, before any long test."""
    fake_root = tmp_path / "repo"
    (fake_root / "scripts").mkdir(parents=True)
    for name in ("lib.sh", "system-packages.sh"):
        shutil.copy(ROOT / "scripts" / name, fake_root / "scripts" / name)
    (fake_root / "scripts" / "system-packages.txt").write_text(
        "# group program package why\n"
        "podman  sh                          dash          present everywhere\n"
        "podman  rabbitipc-no-such-pause     catatonit     the pause binary\n"
        "test    /no/such/dir/amqp.h         librabbitmq-dev  a header\n")
    result = subprocess.run(["bash", str(fake_root / "scripts" / "system-packages.sh"), "check", "podman"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "missing: rabbitipc-no-such-pause (apt-get install -y catatonit)" in result.stderr
    assert "amqp.h" not in result.stderr  # another group: not asked for
    ok = subprocess.run(["bash", str(fake_root / "scripts" / "system-packages.sh"), "check", "nosuchgroup"],
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 1 and "usage:" in ok.stderr


def test_every_program_the_scripts_and_tests_call_is_listed():
    """Each external program that a script or test runs by name has a line in the list."""
    listed = {Path(program).name for _group, program, _package in rows()}
    called = set()
    sources = [*ROOT.glob("*.sh"), *(ROOT / "scripts").glob("*.sh"), ROOT / ".ci" / "run",
               *(ROOT / "tests").glob("*.py"), *(ROOT / "bench").glob("*.py")]
    for source in sources:
        called |= set(re.findall(r'shutil\.which\("([\w.-]+)"\)', source.read_text()))
    # Tools that come from the virtualenv (pip), not from the system.
    from_venv = {"ruff", "checkov", "hadolint", "py-spy", "kubernetes-validate", "actionlint", "check-jsonschema"}
    missing = called - from_venv - {"gcc"} - listed  # gcc: the same compiler as the listed cc
    assert not missing, sorted(missing)


def test_all_listed_programs_are_present_in_ci():
    """In CI, every listed program is there (.ci/run installed them), so no test skips for a tool."""
    if os.environ.get("CI") != "true":
        pytest.skip("only CI promises every package (./scripts/system-packages.sh install all)")
    result = subprocess.run(["bash", str(CHECK), "check", "all"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
