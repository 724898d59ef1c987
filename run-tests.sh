#!/usr/bin/env bash
# Run the test suite on a fresh Debian/Ubuntu machine: installs rabbitmq-server (apt-get) and the
# project virtualenv with the test extra if missing, then pytest. Extra arguments go to pytest
# (e.g. -k restart). Tests that need another tool (podman, shellcheck, ...) skip with the package to
# install, except under CI=true, where a skip fails the run: .ci/run installs every package of
# scripts/system-packages.txt first (scripts/system-packages.sh install all).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/scripts/lib.sh"
cd "$ROOT"

# The cluster tier alone (--cluster -m cluster) talks to a cluster, not to a local node.
case " $* " in
  *" -m cluster "*) ;;
  *) "$ROOT/scripts/system-packages.sh" install run ;;
esac
ensure_venv test
export PATH="$VENV/bin:$PATH"
# Test files run in two parallel worker processes (pytest-xdist, a file per worker at a time, each with
# its own broker): most tests wait on brokers and containers, not on the CPU.
# RABBITIPC_TEST_WORKERS=0 runs them in this process, one after another.
exec "$VENV/bin/python" -m pytest -n "${RABBITIPC_TEST_WORKERS:-2}" --dist loadfile "$@"
