#!/usr/bin/env bash
# Local stand-ins for the base images, for machines that reach no image registry.
# Builds, from Debian bookworm (debootstrap --variant=minbase), images tagged with the official
# names, so the real Dockerfiles and manifests run unmodified:
#   docker.io/library/python:3.11-slim      Debian's Python 3.11 with venv and pip at /usr/local/bin/python, and its headers
#   docker.io/library/rabbitmq:3-management Debian's rabbitmq-server, behaving like the official image:
#                                           user 999, management plugin on, guest allowed remotely,
#                                           RABBITMQ_DEFAULT_USER/PASS honoured, logs on stdout.
# An image that already exists is kept (podman's storage is the cache); --force rebuilds.
# Never push these anywhere: they only imitate the official images.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/scripts/podman/containers.conf}

PY_IMAGE=docker.io/library/python:3.11-slim
MQ_IMAGE=docker.io/library/rabbitmq:3-management
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
FORCE=0
[ "${1:-}" = --force ] && FORCE=1

command -v debootstrap >/dev/null 2>&1 || die "debootstrap missing: ./scripts/install-podman.sh"
[ "$(id -u)" -eq 0 ] || die "debootstrap needs root"

# One builder at a time (the Docker and podman tests may both ask, from parallel test workers): a
# second run waits, then finds the images the first one made.
exec 9>/var/lock/rabbitipc-standins.lock
flock -w 900 9 || die "another stand-in build held the lock for 15 minutes"

WORK=$(mktemp -d /var/tmp/rabbitipc-standin.XXXXXX)
cleanup() {
  for mnt in "$WORK"/*/proc; do if mountpoint -q "$mnt" 2>/dev/null; then umount -l "$mnt"; fi; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# base_tree: one minbase bookworm tree, made once per run and copied for each image.
base_tree() {
  [ -d "$WORK/base" ] && return
  log "debootstrap bookworm (minbase) into $WORK/base"
  debootstrap --variant=minbase bookworm "$WORK/base" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -30 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
}

# rootfs NAME PACKAGES...: a copy of the base tree with the packages installed, services not started.
rootfs() {
  local root="$WORK/$1"
  shift
  base_tree
  cp -a "$WORK/base" "$root"
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod +x "$root/usr/sbin/policy-rc.d"
  cp /etc/ssl/certs/ca-certificates.crt "$WORK/host-ca.crt"
  if [ $# -gt 0 ]; then
    mount -t proc proc "$root/proc"
    chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
      >"$WORK/apt.log" 2>&1 || { umount -l "$root/proc"; tail -30 "$WORK/apt.log" >&2; die "apt-get in $root failed"; }
    umount -l "$root/proc"
  fi
  # pip in image builds must trust what this machine trusts (a proxy's CA, say).
  mkdir -p "$root/etc/ssl/certs"
  cp "$WORK/host-ca.crt" "$root/etc/ssl/certs/ca-certificates.crt"
  rm -f "$root/usr/sbin/policy-rc.d"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
}

build_python() {
  if [ "$FORCE" = 0 ] && podman image exists "$PY_IMAGE"; then log "$PY_IMAGE exists"; return; fi
  # python3-dev: the headers the official image ships, which the images need to compile rabbitipc.wire
  rootfs python python3 python3-venv python3-pip python3-dev ca-certificates
  local root="$WORK/python"
  ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
  ln -sf /usr/bin/python3 "$root/usr/local/bin/python3"
  ln -sf /usr/bin/pip3 "$root/usr/local/bin/pip"
  tar -C "$root" -c . | podman import \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' - "$PY_IMAGE" >/dev/null
  log "built stand-in $PY_IMAGE"
}

build_rabbitmq() {
  if [ "$FORCE" = 0 ] && podman image exists "$MQ_IMAGE"; then log "$MQ_IMAGE exists"; return; fi
  rootfs rabbitmq rabbitmq-server passwd
  local root="$WORK/rabbitmq"
  # The official image runs as rabbitmq, uid and gid 999.
  chroot "$root" groupmod -g 999 rabbitmq
  chroot "$root" usermod -u 999 -g 999 -d /var/lib/rabbitmq rabbitmq
  # As in the official image, the defaults live in conf.d (RABBITMQ_CONFIG_FILE stays free for users).
  mkdir -p "$root/etc/rabbitmq/conf.d"
  rm -f "$root/etc/rabbitmq/rabbitmq.conf"
  cat >"$root/etc/rabbitmq/conf.d/10-defaults.conf" <<'CONF'
# As in the official image: listen on every interface, guest allowed from anywhere
# (the bundle never has guest: it loads definitions), logs on stdout.
loopback_users.guest = false
listeners.tcp.default = 5672
management.tcp.port = 15672
log.console = true
log.file = false
CONF
  printf '[rabbitmq_management,rabbitmq_prometheus].\n' >"$root/etc/rabbitmq/enabled_plugins"
  printf '#!/bin/sh\nset -e\nexec "$@"\n' >"$root/usr/local/bin/docker-entrypoint.sh"
  chmod +x "$root/usr/local/bin/docker-entrypoint.sh"
  chown -R 999:999 "$root/var/lib/rabbitmq" "$root/var/log/rabbitmq" "$root/etc/rabbitmq"
  tar -C "$root" -c . | podman import \
    --change 'ENV PATH=/usr/lib/rabbitmq/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV HOME=/var/lib/rabbitmq' \
    --change 'ENV RABBITMQ_CONFIG_FILES=/etc/rabbitmq/conf.d' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'USER 999:999' \
    --change 'EXPOSE 5672' --change 'EXPOSE 15672' \
    --change 'ENTRYPOINT ["docker-entrypoint.sh"]' \
    --change 'CMD ["rabbitmq-server"]' - "$MQ_IMAGE" >/dev/null
  log "built stand-in $MQ_IMAGE"
}

build_python
build_rabbitmq
