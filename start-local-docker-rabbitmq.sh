#!/usr/bin/env bash
# Start RabbitMQ (rabbitmq:3-management) for manual experiments: AMQP on 5672, UI on 15672.
# Docker when an engine answers; otherwise a private node of the system's rabbitmq-server in
# .rabbitmq/ (installed with apt-get when root or sudo can). Idempotent: a running broker is reused,
# the private node too when a Docker engine answers now (--stop stops either).
# The broker loads definitions at start: users rabbitipc-sender (publish only), rabbitipc-receiver
# (consume only), rabbitipc-admin (management UI), and the chat's rabbitipc-chat (talk only) and
# rabbitipc-listener (listen only) with their room in the vhost `chat`; random passwords kept in
# .rabbitmq/credentials.env, no guest. Their AMQP URLs go to .rabbitmq/urls.env (mode 600).
#   ./start-local-docker-rabbitmq.sh          start (or reuse)
#   ./start-local-docker-rabbitmq.sh --stop   stop it
# RABBITIPC_BROKER=docker or =local picks the kind instead (default auto); the Docker engine is
# the one DOCKER_HOST names. Host ports: RABBITIPC_AMQP_PORT, RABBITIPC_UI_PORT.
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
KIND=${RABBITIPC_BROKER:-auto}

case "$ACTION" in
  start | --stop | stop) ;;
  -h | --help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
  *) die "unknown argument '$ACTION' (use --stop or --help)" ;;
esac
case "$KIND" in
  auto | docker | local) ;;
  *) die "RABBITIPC_BROKER=$KIND: use auto, docker or local" ;;
esac

docker_ready() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

# py ARGS...: python3 with Ctrl-C ignored, so it never dies half-way with a traceback (the node's start
# takes Ctrl-C back itself, and stops what it started); the script's callers stop the rest.
py() { (trap '' INT; exec python3 "$@"); }
trap 'exit 130' INT   # after the step in hand (bash waits for it): no further step starts

# local_running: the private node of NODE_DIR (started earlier, without Docker or with
# RABBITIPC_BROKER=local) runs; it is the broker of this checkout, Docker engine or not.
local_running() {
  [ -f "$NODE_DIR/broker.json" ] && (cd "$ROOT" && py -m devtools.localbroker status --dir "$NODE_DIR" >/dev/null)
}

# port_taken PORT: something already listens on 127.0.0.1:PORT.
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# credentials: generate the users' passwords once (adding roles a previous version did not
# have), then the definitions from them.
credentials() {
  # Private: it holds the passwords, the definitions (password hashes) and the Erlang cookie.
  mkdir -p "$NODE_DIR"
  chmod 700 "$NODE_DIR"
  local file="$NODE_DIR/credentials.env"
  (umask 077 && touch "$file" && py - "$file" <<'PY'
import secrets, sys
path = sys.argv[1]
have = open(path).read()
with open(path, "a") as out:
    for role in ("SENDER", "RECEIVER", "ADMIN", "CHAT", "LISTENER"):
        if f"RABBITIPC_{role}_PASSWORD=" not in have:
            out.write(f"RABBITIPC_{role}_USER=rabbitipc-{role.lower()}\n")
            out.write(f"RABBITIPC_{role}_PASSWORD={secrets.token_urlsafe(18)}\n")
PY
  )
  set -a
  # shellcheck source=/dev/null
  . "$file"
  set +a
  (cd "$ROOT" && py -m rabbitipc.definitions --out "$NODE_DIR/definitions" "$@" >/dev/null)
}

# write_urls HOST:PORT: the programs' AMQP URLs, readable by this user only.
write_urls() {
  (umask 077 && cat >"$NODE_DIR/urls.env" <<URLS
SENDER_AMQP_URL=amqp://$RABBITIPC_SENDER_USER:$RABBITIPC_SENDER_PASSWORD@$1/%2F
RECEIVER_AMQP_URL=amqp://$RABBITIPC_RECEIVER_USER:$RABBITIPC_RECEIVER_PASSWORD@$1/%2F
ADMIN_AMQP_URL=amqp://$RABBITIPC_ADMIN_USER:$RABBITIPC_ADMIN_PASSWORD@$1/%2F
CHAT_AMQP_URL=amqp://$RABBITIPC_CHAT_USER:$RABBITIPC_CHAT_PASSWORD@$1/chat
LISTENER_AMQP_URL=amqp://$RABBITIPC_LISTENER_USER:$RABBITIPC_LISTENER_PASSWORD@$1/chat
URLS
  )
  log "AMQP: $1"
  log "AMQP URLs for the sender, the receiver, the admin and the chat's users: $NODE_DIR/urls.env"
  log "management UI user $RABBITIPC_ADMIN_USER, password in $NODE_DIR/credentials.env"
}

docker_broker() {
  if [ "$ACTION" != start ]; then
    docker rm -f "$NAME" >/dev/null 2>&1 || true
    log "stopped container $NAME"
    return
  fi
  credentials --seen-as /etc/rabbitmq/rabbitipc
  if [ "$(docker inspect -f '{{.State.Running}}' "$NAME" 2>/dev/null || true)" = true ]; then
    log "container $NAME already running"
  elif docker inspect "$NAME" >/dev/null 2>&1; then
    docker start "$NAME" >/dev/null
  else
    local port
    for port in "$AMQP_PORT" "$UI_PORT"; do
      if port_taken "$port"; then
        die "127.0.0.1:$port is already in use (another broker?); choose free ports with RABBITIPC_AMQP_PORT and RABBITIPC_UI_PORT"
      fi
    done
    log "starting $IMAGE as container $NAME"
    if ! docker run -d --name "$NAME" --hostname rabbitipc \
        -v "$NODE_DIR/definitions:/etc/rabbitmq/rabbitipc:ro" \
        -e RABBITMQ_CONFIG_FILE=/etc/rabbitmq/rabbitipc/rabbitmq.conf \
        -e RABBITMQ_ENABLED_PLUGINS=rabbitmq_management,rabbitmq_prometheus \
        -e "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-rabbitmq_prometheus return_per_object_metrics true" \
        -p "127.0.0.1:$AMQP_PORT:5672" -p "127.0.0.1:$UI_PORT:15672" "$IMAGE" >/dev/null; then
      docker rm -f "$NAME" >/dev/null 2>&1 || true   # a container that could not start is no use later
      die "could not start container $NAME from $IMAGE (see docker's message above)"
    fi
  fi
  if ! wait_for "RabbitMQ in container $NAME" "$WAIT" \
      docker exec "$NAME" rabbitmq-diagnostics -q check_port_connectivity; then
    docker logs --tail 50 "$NAME" >&2 || true
    exit 1
  fi
  write_urls "127.0.0.1:$AMQP_PORT"
  log "management UI: http://127.0.0.1:$UI_PORT/"
}

local_broker() {
  if [ "$ACTION" != start ]; then
    [ -d "$NODE_DIR" ] && (cd "$ROOT" && py -m devtools.localbroker stop --dir "$NODE_DIR")
    log "stopped the local node in $NODE_DIR"
    return
  fi
  if local_running; then
    log "the private node in $NODE_DIR already runs (rabbitmq-server, started earlier)"
  else
    log "using the system's rabbitmq-server: a private node in $NODE_DIR"
  fi
  [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || apt_install rabbitmq-server
  credentials --private
  # Ports: 5672/15672 when free, else free ones the node keeps from then on.
  (cd "$ROOT" && py -m devtools.localbroker start --dir "$NODE_DIR" \
    --config "$NODE_DIR/definitions/rabbitmq.conf" \
    ${RABBITIPC_AMQP_PORT:+--amqp-port "$RABBITIPC_AMQP_PORT"} \
    ${RABBITIPC_UI_PORT:+--management-port "$RABBITIPC_UI_PORT"} >/dev/null)
  local state="$NODE_DIR/broker.json"
  write_urls "127.0.0.1:$(py -c 'import json,sys; print(json.load(open(sys.argv[1]))["amqp_port"])' "$state")"
  log "management UI: $(py -c 'import json,sys; print(json.load(open(sys.argv[1]))["management_url"])' "$state")"
}

cd "$ROOT"
case "$KIND" in
  docker) docker_ready || die "RABBITIPC_BROKER=docker but no Docker engine answers (docker info failed; DOCKER_HOST=${DOCKER_HOST:-unset})"
          if [ "$ACTION" = start ] && local_running; then
            die "the private node in $NODE_DIR runs (its URLs are in $NODE_DIR/urls.env): stop it first with $0 --stop"
          fi
          docker_broker ;;
  local) local_broker ;;
  *) if [ "$ACTION" != start ]; then   # stop whichever runs (a node caught starting too), the container
       local_broker
       if docker_ready; then docker_broker; fi
     elif local_running || ! docker_ready; then local_broker
     else docker_broker
     fi ;;
esac
