#!/usr/bin/env bash
# Run the test suite on a fresh Debian/Ubuntu machine: installs rabbitmq-server (apt-get) and the
# project virtualenv if missing, then pytest. Extra arguments go to pytest (e.g. -k restart).
# The podman end-to-end tests run when podman is installed (./scripts/install-podman.sh).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/scripts/lib.sh"
cd "$ROOT"

[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || apt_install rabbitmq-server
ensure_venv
export PATH="$VENV/bin:$PATH"
exec "$VENV/bin/python" -m pytest "$@"
