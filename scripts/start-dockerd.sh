#!/usr/bin/env bash
# Start a Docker engine of our own for the tests and the compose stacks, and print the DOCKER_HOST
# to use:   export DOCKER_HOST=$(./scripts/start-dockerd.sh)
# It never touches the default socket (/var/run/docker.sock may be someone else's engine): its
# own socket, data, bridge and address pool, its own containerd namespace. Idempotent: an
# engine of ours that answers is reused. Needs root; installs docker.io when dockerd is missing.
#   ./scripts/start-dockerd.sh          start (or reuse); prints unix://.../docker.sock
#   ./scripts/start-dockerd.sh --stop   stop it (images and volumes stay in the data dir)
# Settings (environment): RABBITIPC_DOCKER_DATA (/var/lib/rabbitipc-docker),
# RABBITIPC_DOCKER_RUN (/run/rabbitipc-docker), RABBITIPC_DOCKER_BRIDGE (rabbitipc0),
# RABBITIPC_DOCKER_BIP (10.213.0.1/24), RABBITIPC_DOCKER_POOL (10.214.0.0/16),
# RABBITIPC_DOCKER_WAIT (60 seconds).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

DATA=${RABBITIPC_DOCKER_DATA:-/var/lib/rabbitipc-docker}
RUN=${RABBITIPC_DOCKER_RUN:-/run/rabbitipc-docker}
BRIDGE=${RABBITIPC_DOCKER_BRIDGE:-rabbitipc0}
BIP=${RABBITIPC_DOCKER_BIP:-10.213.0.1/24}
POOL=${RABBITIPC_DOCKER_POOL:-10.214.0.0/16}
WAIT=${RABBITIPC_DOCKER_WAIT:-60}
SOCKET=$RUN/docker.sock
HOST=unix://$SOCKET
PIDFILE=$RUN/dockerd.pid
LOG=$DATA/dockerd.log

case "${1:-start}" in
  start) ;;
  --stop | stop)
    if [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      pid=$(cat "$PIDFILE")
      kill -TERM "$pid"
      wait_for "dockerd (pid $pid) to stop" "$WAIT" bash -c "! kill -0 $pid" || kill -KILL "$pid"
      log "stopped dockerd (pid $pid)"
    else
      log "no dockerd of ours is running"
    fi
    exit 0 ;;
  -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
  *) die "unknown argument '$1' (use --stop or --help)" ;;
esac

answers() { DOCKER_HOST=$HOST docker info >/dev/null 2>&1; }

if answers; then
  log "dockerd of ours already answers on $SOCKET"
  echo "$HOST"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || die "dockerd needs root (run: sudo $0)"
if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then apt_install docker.io; fi
command -v iptables >/dev/null 2>&1 || apt_install iptables

mkdir -p "$DATA" "$RUN"
chmod 711 "$DATA" "$RUN"
# A dockerd of ours that is running but does not answer (yet, or any more): wait, then replace.
if [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  if wait_for "the running dockerd (pid $(cat "$PIDFILE")) to answer" "$WAIT" answers; then
    echo "$HOST"
    exit 0
  fi
  kill -KILL "$(cat "$PIDFILE")" 2>/dev/null || true
fi
rm -f "$PIDFILE" "$SOCKET"

# Our own bridge, so a default engine's docker0 (or a second engine) is never disturbed.
if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
  ip link add name "$BRIDGE" type bridge
  ip addr add "$BIP" dev "$BRIDGE"
fi
ip link set "$BRIDGE" up

log "starting dockerd: socket $SOCKET, data $DATA, log $LOG"
# setsid: the engine outlives this script and the test session that started it.
setsid dockerd \
  --host "$HOST" \
  --data-root "$DATA/data" \
  --exec-root "$RUN/exec" \
  --pidfile "$PIDFILE" \
  --bridge "$BRIDGE" \
  --default-address-pool "base=$POOL,size=24" \
  --containerd-namespace rabbitipc \
  --containerd-plugins-namespace rabbitipc-plugins \
  >>"$LOG" 2>&1 </dev/null &

if ! wait_for "docker info on $SOCKET" "$WAIT" answers; then
  printf '%s\n' "---- last lines of $LOG ----" >&2
  tail -n 40 "$LOG" >&2
  exit 1
fi
log "dockerd ready: export DOCKER_HOST=$HOST"
echo "$HOST"
