#!/usr/bin/env bash
# User-space instructions nines spends per delivered message, counted with
# callgrind: deterministic where wall-clock figures on these machines swing
# ±20% between identical runs. Compares builds, or one build's settings.
#
#   bench/instructions.sh [--archive true|false] [--clients N] [--window W] [--rate R] [--sm N] BIN [BIN...]
#
# For each binary: the message scenario (N clients in pairs, default 100,
# window W, default 4) against the server under valgrind --tool=callgrind,
# once for 3 s and once for 9 s of sending, each against a fresh data
# directory. Instructions per message = (Ir of the long run − Ir of the short
# run) / (messages delivered in the long run − in the short run), so login,
# start-up and shutdown cancel out. Prints one markdown row per binary.
# CG_KEEP=PREFIX keeps each run's callgrind output as PREFIX-SECONDS.out.
# --sm N: every client enables XEP-0198 and asks for an ack every N
# messages, and the server asks as often (stream_management.request_every).
# --rate R paces the clients at R messages/s in all (window 0) instead: each
# message then arrives in a read of its own, as in the paced latency runs.
# Kernel time (syscalls, loopback TCP) is not counted; see setting_cost.sh for
# CPU seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=${BENCH:-build/release/nines-bench}
clients=100 window=4 rate=0 sm=0 archive=true bins=()
while (($#)); do
  case "$1" in
    --archive) archive=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --window) window=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --sm) sm=$2; shift 2 ;;
    -*) echo "usage: $0 [--archive B] [--clients N] [--window W] [--rate R] [--sm N] BIN [BIN...]" >&2; exit 2 ;;
    *) bins+=("$1"); shift ;;
  esac
done
((${#bins[@]})) || { echo "usage: $0 [--archive B] [--clients N] [--window W] [--rate R] [--sm N] BIN [BIN...]" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "$0: valgrind is not installed" >&2; exit 1; }
[ -x "$BENCH" ] || { echo "$0: build nines-bench first (cmake --build build/release --target nines-bench)" >&2; exit 1; }
work=$(mktemp -d /tmp/nines-instructions.XXXXXX)
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# measure BIN SECONDS -> "IR DELIVERED"
measure() {
  local bin=$1 seconds=$2 dir="$work/run-$RANDOM"
  mkdir -p "$dir"
  cat > "$dir/nines.toml" <<TOML
[server]
data_dir = "$dir/data"
threads = 1
[listen]
c2s_port = 0
c2s_tls_port = -1
[tls]
require = false
[auth]
allow_plain_without_tls = true
[log]
level = "warn"
[archive]
enabled = $archive
[limits]
stanzas_per_second = 1000000
stanza_burst = 1000000
connections_per_ip = 1000000
TOML
  ((sm > 0)) && printf '[stream_management]\nrequest_every = %d\n' "$sm" >> "$dir/nines.toml"
  echo bench | "$bin" user add -c "$dir/nines.toml" --bulk 'user{}' --count "$clients" --password-stdin >/dev/null
  valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" "$bin" serve -c "$dir/nines.toml" \
    > "$dir/ready" 2> "$dir/valgrind.log" &
  server_pid=$!
  for _ in $(seq 600); do grep -q '^ready' "$dir/ready" 2>/dev/null && break; sleep 0.1; done
  local port
  port=$(sed -n 's/.*c2s=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$dir/ready")
  local json pace=(--window "$window")
  ((rate > 0)) && pace=(--rate "$rate" --window 0)
  ((sm > 0)) && pace+=(--sm --sm-every "$sm")
  json=$("$BENCH" --port "$port" -n "$clients" --mech plain --no-progress --json message --duration "$seconds" \
         "${pace[@]}" --grace 20)
  kill -TERM "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
  [ -n "${CG_KEEP:-}" ] && cp "$dir/cg.out" "$CG_KEEP-$seconds.out"
  local ir
  ir=$(sed -n 's/^summary: *//p; s/^totals: *//p' "$dir/cg.out" | head -1 | awk '{print $1}')
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(sys.argv[2], d["delivered"])' "$json" "$ir"
}

echo "| binary | delivered (3 s, 9 s) | instructions per delivered message |"
echo "|---|---|---|"
for bin in "${bins[@]}"; do
  read -r ir_short n_short < <(measure "$bin" 3)
  read -r ir_long n_long < <(measure "$bin" 9)
  per=$(python3 -c "print(f'{($ir_long - $ir_short) / max(1, $n_long - $n_short):,.0f}')")
  echo "| \`$bin\` | $n_short, $n_long | $per |"
done
