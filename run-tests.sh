#!/usr/bin/env bash
# Run the test suite on a fresh Debian/Ubuntu machine: installs rabbitmq-server (apt-get) and the
# project virtualenv if missing, then pytest. Extra arguments go to pytest (e.g. -k restart).
# The podman end-to-end tests run when podman is installed (./scripts/install-podman.sh); the
# cluster tier (`./run-tests.sh --cluster -m cluster`) needs no local RabbitMQ and installs none.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/scripts/lib.sh"
cd "$ROOT"

# The cluster tier alone (--cluster -m cluster) talks to a cluster, not to a local node.
case " $* " in
  *" -m cluster "*) ;;
  *) [ -x "${RABBITIPC_RABBITMQ_SERVER:-/usr/lib/rabbitmq/bin/rabbitmq-server}" ] || apt_install rabbitmq-server ;;
esac
ensure_venv
export PATH="$VENV/bin:$PATH"
exec "$VENV/bin/python" -m pytest "$@"
