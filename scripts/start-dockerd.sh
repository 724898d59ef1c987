#!/usr/bin/env bash
# Start a Docker engine of this checkout's own for the tests and the compose stacks, and print the
# DOCKER_HOST to use:   export DOCKER_HOST=$(./scripts/start-dockerd.sh)
# It never touches the default socket (/var/run/docker.sock may be someone else's engine): its
# own socket, data, bridge and bridge address, its own containerd namespace, all named after this
# checkout (a second clone, or CI, gets an engine of its own). Idempotent: an engine of ours that
# answers is reused. Needs root; installs docker.io when dockerd is missing.
#   ./scripts/start-dockerd.sh          start (or reuse); prints unix://.../docker.sock
#   ./scripts/start-dockerd.sh --stop   stop it, remove its bridges and their iptables rules
#                                       (images and volumes stay in the data dir)
# Settings (environment; ID is a hash of this checkout's path, `--help` prints the values):
# RABBITIPC_DOCKER_DATA (/var/lib/rabbitipc-docker-ID), RABBITIPC_DOCKER_RUN (/run/rabbitipc-docker-ID),
# RABBITIPC_DOCKER_BRIDGE (rbipc-ID), RABBITIPC_DOCKER_BIP (10.213.N.1/24, the first N from the ID
# whose subnet no interface uses), RABBITIPC_DOCKER_POOL (10.214.0.0/16: each engine skips the
# subnets in use), RABBITIPC_DOCKER_WAIT (60 seconds).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

ID=$(printf '%s' "$ROOT" | sha1sum | cut -c1-8)
DATA=${RABBITIPC_DOCKER_DATA:-/var/lib/rabbitipc-docker-$ID}
RUN=${RABBITIPC_DOCKER_RUN:-/run/rabbitipc-docker-$ID}
BRIDGE=${RABBITIPC_DOCKER_BRIDGE:-rbipc-$ID}
POOL=${RABBITIPC_DOCKER_POOL:-10.214.0.0/16}
WAIT=${RABBITIPC_DOCKER_WAIT:-60}
SOCKET=$RUN/docker.sock
HOST=unix://$SOCKET
PIDFILE=$RUN/dockerd.pid
OWNER=$RUN/checkout        # the checkout that started the engine: only it stops it
LOG=$DATA/dockerd.log

# bridge_address: RABBITIPC_DOCKER_BIP, else 10.213.N.1/24 for the first N (from the ID on) whose subnet
# no interface but our bridge has.
bridge_address() {
  if [ -n "${RABBITIPC_DOCKER_BIP:-}" ]; then echo "$RABBITIPC_DOCKER_BIP"; return; fi
  local start=$((16#${ID:0:2})) i n
  for i in $(seq 0 255); do
    n=$(((start + i) % 256))
    if ! ip -4 -o addr show 2>/dev/null | grep -v " $BRIDGE " | grep -q " 10\.213\.$n\."; then
      echo "10.213.$n.1/24"
      return
    fi
  done
  die "no free 10.213.N.0/24 subnet for the bridge: set RABBITIPC_DOCKER_BIP"
}

# engine_bridges: the bridges of the engine's own networks (compose stacks), while it answers.
engine_bridges() {
  local id name
  for id in $(DOCKER_HOST=$HOST docker network ls -q --filter driver=bridge 2>/dev/null); do
    name=$(DOCKER_HOST=$HOST docker network inspect -f '{{index .Options "com.docker.network.bridge.name"}}' "$id" \
      2>/dev/null || true)
    echo "${name:-br-${id:0:12}}"
  done
}

# remove_bridges BRIDGE...: delete the bridges and every iptables rule that names one of them or
# their subnets (dockerd leaves both behind when it stops); the chains are shared with any other
# engine of the machine and stay.
remove_bridges() {
  local bridge subnets=() table="" line pattern
  for bridge in "$@"; do
    ip link show "$bridge" >/dev/null 2>&1 || continue
    while read -r subnet; do subnets+=("$subnet"); done < <(ip -4 -o route show dev "$bridge" 2>/dev/null \
      | awk '$1 ~ /\// { print $1 }')
    ip link delete "$bridge" 2>/dev/null || true
  done
  command -v iptables-save >/dev/null 2>&1 || return 0
  pattern=$(printf '%s\n' "$@" "${subnets[@]}" | sed 's/[.]/\\./g' | paste -sd'|')
  [ -n "$pattern" ] || return 0
  iptables-save | while IFS= read -r line; do
    case $line in
      \*) ;;
      \**) table=${line#\*} ;;
      -A\ *) if printf '%s\n' "$line" | grep -Eq -- "(^| )($pattern)( |/|$)"; then
               # shellcheck disable=SC2086 # the rule's own words, as iptables-save printed them
               eval "iptables -t $table -D ${line#-A }" || true
             fi ;;
    esac
  done
}

case "${1:-start}" in
  start) ;;
  --stop | stop)
    if [ -s "$OWNER" ] && [ "$(cat "$OWNER")" != "$ROOT" ]; then
      die "the engine in $RUN was started by $(cat "$OWNER"), which may still use it: stop it from there"
    fi
    bridges=("$BRIDGE")
    if [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      while read -r bridge; do bridges+=("$bridge"); done < <(engine_bridges)
      pid=$(cat "$PIDFILE")
      kill -TERM "$pid"
      wait_for "dockerd (pid $pid) to stop" "$WAIT" bash -c "! kill -0 $pid" || kill -KILL "$pid"
      log "stopped dockerd (pid $pid)"
    else
      log "no dockerd of ours is running"
    fi
    remove_bridges "${bridges[@]}"
    rm -f "$OWNER"
    exit 0 ;;
  -h | --help)
    awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"
    printf '%s\n' "# This checkout ($ROOT): ID $ID, socket $SOCKET, data $DATA, bridge $BRIDGE"
    exit 0 ;;
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

# Our own bridge, so a default engine's docker0 (or another clone's engine) is never disturbed.
if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
  ip link add name "$BRIDGE" type bridge
  ip addr add "$(bridge_address)" dev "$BRIDGE"
fi
ip link set "$BRIDGE" up
printf '%s\n' "$ROOT" >"$OWNER"

log "starting dockerd: socket $SOCKET, data $DATA, bridge $BRIDGE, log $LOG"
# setsid: the engine outlives this script and the test session that started it.
setsid dockerd \
  --host "$HOST" \
  --data-root "$DATA/data" \
  --exec-root "$RUN/exec" \
  --pidfile "$PIDFILE" \
  --bridge "$BRIDGE" \
  --default-address-pool "base=$POOL,size=24" \
  --containerd-namespace "rabbitipc-$ID" \
  --containerd-plugins-namespace "rabbitipc-$ID-plugins" \
  >>"$LOG" 2>&1 </dev/null &

if ! wait_for "docker info on $SOCKET" "$WAIT" answers; then
  printf '%s\n' "---- last lines of $LOG ----" >&2
  tail -n 40 "$LOG" >&2
  exit 1
fi
log "dockerd ready: export DOCKER_HOST=$HOST"
echo "$HOST"
