#!/usr/bin/env bash
# The main job, locally: a broker, a receiver and a sender, their log lines on screen.
# Sets everything up on a fresh Debian/Ubuntu machine (virtualenv, broker); Ctrl-C stops it all.
# Settings pass through the environment, e.g. RABBITIPC_RATE=5 ./run-local.sh (see --help of
# python sender/send.py and python receiver/receive.py). RABBITIPC_RUN_SECONDS=N stops after N s.
# ./run-local.sh --cluster: the same on a private 3-node RabbitMQ cluster (devtools/localcluster.py,
# in .rabbitmq-cluster or RABBITIPC_CLUSTER_DIR), both programs given the three node URLs; it prints
# the command that kills a node, so you can watch the traffic go on.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/scripts/lib.sh"
cd "$ROOT"

CLUSTER=0
if [ "${1:-}" = "--cluster" ]; then
  CLUSTER=1
  shift
fi
CLUSTER_DIR=${RABBITIPC_CLUSTER_DIR:-$ROOT/.rabbitmq-cluster}

ensure_venv runtime   # the run needs no test tools: ./run-tests.sh adds them

pids=()
# stop_all: from the broker's start on, Ctrl-C, SIGTERM, a hangup (the terminal closed) or any exit
# stops what this script started; a second Ctrl-C does not cut the stop short.
stop_all() {
  trap '' INT TERM HUP
  trap - EXIT
  if [ ${#pids[@]} -gt 0 ]; then
    log "stopping sender and receiver"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  if [ "${RABBITIPC_KEEP_BROKER:-0}" != 1 ]; then
    if [ "$CLUSTER" = 1 ]; then
      "$VENV/bin/python" -m devtools.localcluster stop --dir "$CLUSTER_DIR"
    else
      ./start-local-docker-rabbitmq.sh --stop
    fi
  fi
}
trap 'stop_all; exit 0' INT TERM HUP   # a stop asked for is a success, as for the programs
trap stop_all EXIT
if [ "$CLUSTER" = 1 ]; then
  log "starting a private 3-node RabbitMQ cluster in $CLUSTER_DIR (a minute or two the first time)"
  # The cluster's nodes listen on loopback only, where RabbitMQ lets guest in.
  SENDER_AMQP_URL=$("$VENV/bin/python" -m devtools.localcluster start --dir "$CLUSTER_DIR")
  RECEIVER_AMQP_URL=$SENDER_AMQP_URL
  log "kill a node under traffic: $VENV/bin/python -m devtools.localcluster kill 1 --dir $CLUSTER_DIR"
  log "(start-node 1 brings it back; status lists the nodes and their management UIs)"
else
  ./start-local-docker-rabbitmq.sh
  # The sender and the receiver each get their own user (see start-local-docker-rabbitmq.sh).
  # shellcheck source=/dev/null
  . "${RABBITIPC_NODE_DIR:-$ROOT/.rabbitmq}/urls.env"
fi
export PYTHONUNBUFFERED=1

# prefix LABEL: tag each line; ignores Ctrl-C so the programs' last lines still get through.
prefix() { trap '' INT TERM HUP; exec sed -u "s/^/$1 | /"; }
# run ROLE-URL SCRIPT: a program that ignores hangups: on one, stop_all stops it cleanly with SIGTERM.
run() { trap '' HUP; AMQP_URL=$1 exec "$VENV/bin/python" "$2"; }
run "$RECEIVER_AMQP_URL" receiver/receive.py > >(prefix "receiver") 2>&1 &
pids+=($!)
run "$SENDER_AMQP_URL" sender/send.py > >(prefix "sender  ") 2>&1 &
pids+=($!)
log "broker, receiver and sender running; Ctrl-C stops them (RABBITIPC_KEEP_BROKER=1 keeps the broker)"

if [ -n "${RABBITIPC_RUN_SECONDS:-}" ]; then
  sleep "$RABBITIPC_RUN_SECONDS" &
  wait $! || true
else
  # Ends when either program exits (e.g. a fatal error, printed above).
  wait -n "${pids[@]}" || true
fi
