#!/usr/bin/env bash
# Start RabbitMQ (rabbitmq:3-management) for manual experiments: AMQP on 5672, UI on 15672.
# Docker when an engine answers; otherwise a private node of the system's rabbitmq-server in
# .rabbitmq/ (installed with apt-get when root or sudo can). Idempotent: a running broker is reused.
#   ./start-local-docker-rabbitmq.sh          start (or reuse) and print AMQP_URL=...
#   ./start-local-docker-rabbitmq.sh --stop   stop it
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/scripts/lib.sh"

NAME=${RABBITIPC_CONTAINER:-rabbitipc-rabbitmq}
IMAGE=${RABBITIPC_RABBITMQ_IMAGE:-rabbitmq:3-management}
AMQP_PORT=${RABBITIPC_AMQP_PORT:-5672}
UI_PORT=${RABBITIPC_UI_PORT:-15672}
WAIT=${RABBITIPC_BROKER_WAIT:-120}
NODE_DIR=${RABBITIPC_NODE_DIR:-$ROOT/.rabbitmq}
ACTION=${1:-start}

case "$ACTION" in
  start | --stop | stop) ;;
  -h | --help) sed -n '2,7p' "$0"; exit 0 ;;
  *) die "unknown argument '$ACTION' (use --stop or --help)" ;;
esac

docker_ready() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

docker_broker() {
  if [ "$ACTION" != start ]; then
    docker rm -f "$NAME" >/dev/null 2>&1 || true
    log "stopped container $NAME"
    return
  fi
  if [ "$(docker inspect -f '{{.State.Running}}' "$NAME" 2>/dev/null || true)" = true ]; then
    log "container $NAME already running"
  elif docker inspect "$NAME" >/dev/null 2>&1; then
    docker start "$NAME" >/dev/null
  else
    log "starting $IMAGE as container $NAME"
    docker run -d --name "$NAME" --hostname rabbitipc \
      -p "127.0.0.1:$AMQP_PORT:5672" -p "127.0.0.1:$UI_PORT:15672" "$IMAGE" >/dev/null
  fi
  if ! wait_for "RabbitMQ in container $NAME" "$WAIT" \
      docker exec "$NAME" rabbitmq-diagnostics -q check_port_connectivity; then
    docker logs --tail 50 "$NAME" >&2 || true
    exit 1
  fi
  echo "AMQP_URL=amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2F"
  echo "Management UI: http://127.0.0.1:$UI_PORT/ (user guest, password guest)"
}

local_broker() {
  if [ "$ACTION" != start ]; then
    [ -d "$NODE_DIR" ] && python3 -m rabbitipc.localbroker stop --dir "$NODE_DIR"
    log "stopped the local node in $NODE_DIR"
    return
  fi
  log "Docker is not available; using the system's rabbitmq-server (a private node in $NODE_DIR)"
  [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || apt_install rabbitmq-server
  local url
  # Ports: 5672/15672 when free, else free ones the node keeps from then on.
  url=$(cd "$ROOT" && python3 -m rabbitipc.localbroker start --dir "$NODE_DIR" \
        ${RABBITIPC_AMQP_PORT:+--amqp-port "$RABBITIPC_AMQP_PORT"} \
        ${RABBITIPC_UI_PORT:+--management-port "$RABBITIPC_UI_PORT"})
  echo "AMQP_URL=$url"
  echo "Management UI: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["management_url"])' \
    "$NODE_DIR/broker.json") (user guest, password guest)"
}

if docker_ready; then docker_broker; else local_broker; fi
