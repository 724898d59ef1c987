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
# Exit codes: 0 done, 2 usage, 3 a tool missing, 4 a run failed, 5 the node did not start.
set -euo pipefail

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
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
[ -x "$bin/rabbitmq-server" ] || { echo "crosscheck: rabbitmq-server missing (apt-get install rabbitmq-server)" >&2; exit 3; }
c_client="$root/bench/c/amqp_bench"
if [ ! -x "$c_client" ] || [ "$root/bench/c/amqp_bench.c" -nt "$c_client" ] \
  || [ "$root/bench/c/amqp_common.h" -nt "$c_client" ]; then
  cc -O2 -o "$c_client" "$root/bench/c/amqp_bench.c" -lrabbitmq \
    || { echo "crosscheck: cannot build the C client (apt-get install gcc librabbitmq-dev)" >&2; exit 3; }
fi

work="$(mktemp -d /tmp/rabbitipc-crosscheck.XXXXXX)"
node_pid="" consumer="" publisher="" reader=""
cleanup() {
  trap - EXIT INT TERM
  # the programs of a run cut short (the waits below are interruptible: the traps run at once)
  for pid in $publisher $consumer $reader; do pkill -P "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true; done
  if [ -n "$node_pid" ]; then
    timeout 60 "$bin/rabbitmqctl" stop >/dev/null 2>&1 || true
    if [ -s "$work/node.pid" ]; then kill "$(cat "$work/node.pid")" 2>/dev/null || true; fi
    pkill -f -- "crosscheck$$@localhost" 2>/dev/null || true   # its Erlang VM, had it not written its pid yet
    wait "$node_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { PYTHONPATH="$root" "$python" -c 'from devtools.localbroker import free_port; print(free_port())'; }  # below the ephemeral range
port="$(free_port)" dist="$(free_port)"
[ "$dist" != "$port" ] || dist="$(free_port)"
mkdir -p "$work/home" "$work/log" "$work/mnesia"
echo "listeners.tcp.default = 127.0.0.1:$port" >"$work/rabbitmq.conf"
echo "[]." >"$work/enabled_plugins"
export HOME="$work/home" RABBITMQ_NODENAME="crosscheck$$@localhost" RABBITMQ_MNESIA_BASE="$work/mnesia" \
  RABBITMQ_LOG_BASE="$work/log" RABBITMQ_CONFIG_FILE="$work/rabbitmq.conf" \
  RABBITMQ_ENABLED_PLUGINS_FILE="$work/enabled_plugins" RABBITMQ_DIST_PORT="$dist" \
  RABBITMQ_PID_FILE="$work/node.pid" ERL_EPMD_ADDRESS=127.0.0.1 \
  RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" ERL_CRASH_DUMP="$work/log/erl_crash.dump"
"$bin/rabbitmq-server" >"$work/log/console" 2>&1 &
node_pid=$!
if ! "$bin/rabbitmqctl" wait --timeout 120 "$work/node.pid" >/dev/null 2>&1; then
  echo "crosscheck: the node did not start in 120 s; its log:" >&2
  tail -20 "$work/log/console" >&2
  exit 5
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

fail() { echo "crosscheck: $1" >&2; exit "$2"; }

# One timed run, in this shell (not in $(...), where set -e is off): sets $rate, msgs/s. A program that
# fails, or a consumer that never says it is ready, ends the cross-check (exit 4), never a wrong rate.
run() {
  local client="$1" queue line="" last="" ready="" t0 t1 status=0
  queue="crosscheck-$client-$RANDOM"
  commands "$client" "$queue"
  rm -f "$work/out"; mkfifo "$work/out"
  (cd "$root" && exec timeout 900 "${consume[@]}") >"$work/out" 2>&1 &
  consumer=$!
  exec 3<"$work/out"
  while IFS= read -r -t 60 line <&3; do   # the consumer is ready once it says so (bounded: 60 s a line)
    if [[ "$line" == ready || "$line" == *"consuming from queue"* ]]; then ready=1; break; fi
    last="$line"
  done
  [ -n "$ready" ] || fail "$client's consumer did not get ready: ${last:-no output}" 4
  cat <&3 >"$work/consumer.log" &         # its output read as it comes: a full pipe would stall it
  reader=$!
  t0="$(date +%s.%N)"
  (cd "$root" && exec timeout 900 "${publish[@]}") >/dev/null 2>"$work/publisher.err" &
  publisher=$!
  wait "$publisher" || fail "$client's publisher failed: $(tail -c 300 "$work/publisher.err")" 4
  wait "$consumer" || status=$?
  t1="$(date +%s.%N)"
  wait "$reader" || true
  [ "$status" -eq 0 ] || fail "$client's consumer exited $status: $(tail -c 300 "$work/consumer.log")" 4
  consumer="" publisher="" reader=""
  exec 3<&-
  "$bin/rabbitmqctl" delete_queue "$queue" >/dev/null
  rate="$("$python" -c "print(round($count / ($t1 - $t0)))")"
}

clients=(c-librabbitmq pika-select rabbitipc)
declare -A rates
for round in $(seq "$rounds"); do          # interleaved: A B C, A B C, ...
  for client in "${clients[@]}"; do
    run "$client"
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
