#!/usr/bin/env bash
# Install podman for the end-to-end tests (Debian/Ubuntu): podman, runc, and debootstrap for the
# local stand-ins of the base images when no registry is reachable. Idempotent.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
# catatonit: the init of the pause image podman builds for every Pod (a Recommends, so not pulled in
# by --no-install-recommends).
apt_install podman runc catatonit debootstrap uidmap slirp4netns
log "podman $(podman --version | awk '{print $3}') ready; use: export CONTAINERS_CONF=$ROOT/scripts/podman/containers.conf"
