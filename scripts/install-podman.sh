#!/usr/bin/env bash
# Install podman for the end-to-end tests (Debian/Ubuntu): podman with everything it needs to play a
# Pod (runc, conmon, the pause binary catatonit, CNI plugins) and debootstrap for the local stand-ins
# of the base images when no registry is reachable. The packages are listed in
# scripts/system-packages.txt (group podman). Idempotent.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
"$ROOT/scripts/system-packages.sh" install podman
log "podman $(podman --version | awk '{print $3}') ready; use: export CONTAINERS_CONF=$ROOT/scripts/podman/containers.conf"
