#!/usr/bin/env bash
# The main job, locally: a broker, a receiver and a sender, their log lines on screen.
# Sets everything up on a fresh Debian/Ubuntu machine (virtualenv, broker); Ctrl-C stops it all.
# Settings pass through the environment, e.g. RABBITIPC_RATE=5 ./run-local.sh (see --help of
# python sender/send.py and python receiver/receive.py). RABBITIPC_RUN_SECONDS=N stops after N s.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/scripts/lib.sh"
cd "$ROOT"

ensure_venv runtime   # the run needs no test tools: ./run-tests.sh adds them
./start-local-docker-rabbitmq.sh
# The sender and the receiver each get their own user (see start-local-docker-rabbitmq.sh).
# shellcheck source=/dev/null
. "${RABBITIPC_NODE_DIR:-$ROOT/.rabbitmq}/urls.env"
export PYTHONUNBUFFERED=1

pids=()
stop_all() {
  trap - INT TERM EXIT
  log "stopping sender and receiver"
  if [ ${#pids[@]} -gt 0 ]; then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  if [ "${RABBITIPC_KEEP_BROKER:-0}" != 1 ]; then
    ./start-local-docker-rabbitmq.sh --stop
  fi
}
trap stop_all INT TERM EXIT

# prefix LABEL: tag each line; ignores Ctrl-C so the programs' last lines still get through.
prefix() { trap '' INT TERM; exec sed -u "s/^/$1 | /"; }
AMQP_URL=$RECEIVER_AMQP_URL "$VENV/bin/python" receiver/receive.py > >(prefix "receiver") 2>&1 &
pids+=($!)
AMQP_URL=$SENDER_AMQP_URL "$VENV/bin/python" sender/send.py > >(prefix "sender  ") 2>&1 &
pids+=($!)
log "broker, receiver and sender running; Ctrl-C stops them (RABBITIPC_KEEP_BROKER=1 keeps the broker)"

if [ -n "${RABBITIPC_RUN_SECONDS:-}" ]; then
  sleep "$RABBITIPC_RUN_SECONDS" &
  wait $! || true
else
  # Ends when either program exits (e.g. a fatal error, printed above).
  wait -n "${pids[@]}" || true
fi
