#!/usr/bin/env bash
# What archiving (XEP-0313, delivery after the durable write) costs the
# message scenario: nines with archive.enabled = true against the same build
# with it off, same machine, same run. Prints a markdown table.
#
#   bench/archive_cost.sh [--clients N] [--duration S] [--rounds R] [--rate MSGS_PER_S]
#
# Each round runs both settings (alternating which goes first) against a
# fresh data directory. The server is pinned to CPU 0 and nines-bench to
# CPU 1 where the machine has two cores. --rate adds a paced run at that
# total rate (latency at a fixed load); without it only the window-16 max.
set -euo pipefail
cd "$(dirname "$0")/.."
NINES=${NINES:-build/release/nines}
BENCH=${BENCH:-build/release/nines-bench}
clients=1000 duration=10 rounds=2 rate=0
while (($#)); do
  case "$1" in
    --clients) clients=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    *) echo "usage: $0 [--clients N] [--duration S] [--rounds R] [--rate R]" >&2; exit 2 ;;
  esac
done
[ -x "$NINES" ] && [ -x "$BENCH" ] || { echo "build the release preset first" >&2; exit 1; }
server_pin=() bench_pin=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  server_pin=(taskset -c 0) bench_pin=(taskset -c 1)
fi
work=$(mktemp -d /tmp/nines-archive-cost.XXXXXX)
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# run SETTING KIND -> one JSON line on stdout
run() {
  local archive=$1 kind=$2 dir="$work/$1-$RANDOM"
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
  echo bench | "$NINES" user add -c "$dir/nines.toml" --bulk 'user{}' --count "$clients" --password-stdin >/dev/null
  "${server_pin[@]}" "$NINES" serve -c "$dir/nines.toml" > "$dir/ready" 2>> "$dir/nines.log" &
  server_pid=$!
  for _ in $(seq 100); do grep -q '^ready' "$dir/ready" 2>/dev/null && break; sleep 0.1; done
  local port
  port=$(sed -n 's/.*c2s=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$dir/ready")
  local args=(message --duration "$duration")
  [ "$kind" = paced ] && args+=(--rate "$rate" --window 0)
  "${bench_pin[@]}" "$BENCH" --port "$port" -n "$clients" --mech plain --no-progress --json "${args[@]}"
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
}

kinds=(max); [ "$rate" != 0 ] && kinds+=(paced)
results="$work/results"
for r in $(seq "$rounds"); do
  order=(true false); ((r % 2 == 0)) && order=(false true)
  for kind in "${kinds[@]}"; do
    for a in "${order[@]}"; do
      echo "round $r: archive.enabled=$a, $kind" >&2
      printf '%s %s %s\n' "$a" "$kind" "$(run "$a" "$kind")" >> "$results"
    done
  done
done

python3 - "$results" "$clients" "$rate" <<'PY'
import json, sys, statistics
path, clients, rate = sys.argv[1], sys.argv[2], sys.argv[3]
rows = {}
for line in open(path):
    archive, kind, blob = line.split(" ", 2)
    rows.setdefault((kind, archive), []).append(json.loads(blob))
print(f"| run ({clients} clients in pairs) | archive | delivered msgs/s (each round) | p50 ms | p99 ms | lost / dup |")
print("|---|---|---|---|---|---|")
for kind in ("max", "paced"):
    for archive in ("false", "true"):
        rs = rows.get((kind, archive))
        if not rs: continue
        rates = [r["delivered_per_s"] for r in rs]
        p50 = [r["latency_p50_ms"] for r in rs]
        p99 = [r["latency_p99_ms"] for r in rs]
        lost = sum(r["lost"] for r in rs); dup = sum(r["duplicated"] for r in rs)
        label = "window 16 (max)" if kind == "max" else f"paced at {rate}/s"
        print(f"| {label} | {'on' if archive == 'true' else 'off'} | {', '.join(f'{x:,.0f}' for x in rates)} "
              f"(median {statistics.median(rates):,.0f}) | {statistics.median(p50):.2f} | {statistics.median(p99):.2f} | {lost} / {dup} |")
for kind in ("max", "paced"):
    on, off = rows.get((kind, "true")), rows.get((kind, "false"))
    if on and off:
        m_on = statistics.median(r["delivered_per_s"] for r in on)
        m_off = statistics.median(r["delivered_per_s"] for r in off)
        print(f"\n{kind}: archiving keeps {m_on / m_off:.0%} of the msgs/s without it (cost {1 - m_on / m_off:.0%}).")
PY
