#!/usr/bin/env bash
# A cross-check of `make bench`'s throughput figures with none of its code in the timing or the broker:
# a plain RabbitMQ node started here (no plugins, only a listener in its config), each pair timed by
# the shell's clock from the publisher's start to the consumer's exit, rounds interleaved, queues
# deleted with rabbitmqctl. The programs timed are the bench's own (the C client, the pika-select
# peer, rabbitipc's sender and receiver on a classic queue), so what differs is only how they are
# timed and the broker they meet.
#
#   bench/crosscheck.sh [--count N] [--rounds N] [--compare results.json]
#
# --compare: beside each median, the same row of a `python -m bench` run and the difference in %.
set -euo pipefail

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }
count=100000 rounds=3 compare=""
while [ $# -gt 0 ]; do
  case "$1" in
    --count) count="${2:?--count needs a number}"; shift 2 ;;
    --rounds) rounds="${2:?--rounds needs a number}"; shift 2 ;;
    --compare) compare="${2:?--compare needs a results.json}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "crosscheck: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$count" =~ ^[1-9][0-9]*$ && "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "crosscheck: --count and --rounds take positive integers" >&2; exit 2; }
[ -z "$compare" ] || [ -r "$compare" ] || { echo "crosscheck: cannot read $compare" >&2; exit 2; }

root="$(cd "$(dirname "$0")/.." && pwd)"
python="$root/.venv/bin/python"; [ -x "$python" ] || python=python3
bin=/usr/lib/rabbitmq/bin
[ -x "$bin/rabbitmq-server" ] || { echo "crosscheck: rabbitmq-server missing (apt-get install rabbitmq-server)" >&2; exit 1; }
c_client="$root/bench/c/amqp_bench"
if [ ! -x "$c_client" ] || [ "$root/bench/c/amqp_bench.c" -nt "$c_client" ]; then
  cc -O2 -o "$c_client" "$root/bench/c/amqp_bench.c" -lrabbitmq \
    || { echo "crosscheck: cannot build the C client (apt-get install gcc librabbitmq-dev)" >&2; exit 1; }
fi

work="$(mktemp -d /tmp/rabbitipc-crosscheck.XXXXXX)"
node_pid=""
cleanup() {
  trap - EXIT INT TERM
  jobs -p | xargs -r kill 2>/dev/null || true
  if [ -n "$node_pid" ]; then
    timeout 60 "$bin/rabbitmqctl" stop >/dev/null 2>&1 || true
    pkill -f -- "crosscheck$$@localhost" 2>/dev/null || true   # its Erlang VM, had it not started
    wait "$node_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port="$(free_port)" dist="$(free_port)"
mkdir -p "$work/home" "$work/log" "$work/mnesia"
echo "listeners.tcp.default = 127.0.0.1:$port" >"$work/rabbitmq.conf"
echo "[]." >"$work/enabled_plugins"
export HOME="$work/home" RABBITMQ_NODENAME="crosscheck$$@localhost" RABBITMQ_MNESIA_BASE="$work/mnesia" \
  RABBITMQ_LOG_BASE="$work/log" RABBITMQ_CONFIG_FILE="$work/rabbitmq.conf" \
  RABBITMQ_ENABLED_PLUGINS_FILE="$work/enabled_plugins" RABBITMQ_DIST_PORT="$dist" \
  RABBITMQ_PID_FILE="$work/node.pid" ERL_EPMD_ADDRESS=127.0.0.1 ERL_CRASH_DUMP="$work/log/erl_crash.dump"
"$bin/rabbitmq-server" >"$work/log/console" 2>&1 &
node_pid=$!
if ! "$bin/rabbitmqctl" wait --timeout 120 "$work/node.pid" >/dev/null 2>&1; then
  echo "crosscheck: the node did not start in 120 s; its log:" >&2
  tail -20 "$work/log/console" >&2
  exit 1
fi
url="amqp://guest:guest@127.0.0.1:$port/%2F"

# consume and publish command lines of one client, on QUEUE
commands() {
  local client="$1" queue="$2"
  case "$client" in
    c-librabbitmq)
      consume=("$c_client" consume "$url" "$queue" "$count")
      publish=("$c_client" publish "$url" "$queue" "$count" 100) ;;
    pika-select)
      consume=("$python" -m bench.peers.pika_select consume "$url" "$queue" "$count")
      publish=("$python" -m bench.peers.pika_select publish "$url" "$queue" "$count" 100 0) ;;
    rabbitipc)
      local common=(--url "$url" --queue "$queue" --queue-type classic)
      consume=("$python" receiver/receive.py "${common[@]}" --count "$count")
      publish=("$python" sender/send.py "${common[@]}" --count "$count" --size 100 --rate 0) ;;
  esac
}

# one timed run: prints msgs/s
run() {
  local client="$1" queue line t0 t1
  queue="crosscheck-$client-$RANDOM"
  commands "$client" "$queue"
  rm -f "$work/out"; mkfifo "$work/out"
  (cd "$root" && exec "${consume[@]}") >"$work/out" 2>&1 &
  local consumer=$!
  exec 3<"$work/out"
  while IFS= read -r -t 60 line <&3; do   # the consumer is ready once it says so (bounded: 60 s a line)
    [[ "$line" == ready || "$line" == *"consuming from queue"* ]] && break
  done
  cat <&3 >/dev/null &                    # its output read as it comes: a full pipe would stall it
  local reader=$!
  t0="$(date +%s.%N)"
  (cd "$root" && exec "${publish[@]}") >/dev/null 2>&1
  wait "$consumer"
  t1="$(date +%s.%N)"
  wait "$reader"
  exec 3<&-
  "$bin/rabbitmqctl" delete_queue "$queue" >/dev/null
  "$python" -c "print(round($count / ($t1 - $t0)))"
}

clients=(c-librabbitmq pika-select rabbitipc)
declare -A rates
for round in $(seq "$rounds"); do          # interleaved: A B C, A B C, ...
  for client in "${clients[@]}"; do
    rate="$(run "$client")"
    rates[$client]+="$rate "
    echo "  round $round: $client $rate msgs/s" >&2
  done
done
echo "crosscheck: $count x 100 B, durable classic queue, persistent, confirms, acks; plain node; median of $rounds"
for client in "${clients[@]}"; do
  "$python" - "$client" "${rates[$client]}" "$compare" <<'EOF'
import json, statistics, sys
client, rates, compare = sys.argv[1], [float(x) for x in sys.argv[2].split()], sys.argv[3]
median = statistics.median(rates)
line = f"{client:<14} {median:>8.0f} msgs/s"
if compare:
    rows = json.load(open(compare))["results"]
    bench = next((r for r in rows if r["scenario"] == "throughput" and r["client"] == client and r["size"] == 100), None)
    line += f"   bench {bench['msgs_per_s']:>8.0f}, {100 * (bench['msgs_per_s'] / median - 1):+.1f}%" if bench else \
        "   (not in the bench run)"
print(line)
EOF
done
