#!/usr/bin/env bash
# What one feature costs the message scenario: the same nines build with the
# feature on and off, same machine, same run. Prints a markdown table.
#
#   bench/setting_cost.sh --what archive|sm|resume-store|build|backend [--clients N] [--duration S] [--rounds R]
#                         [--rate MSGS_PER_S] [--archive true|false] [--sm-every N]
#                         [--request-every M] [--baseline PATH] [--origin-id]
#
#   archive  archive.enabled = true against false (XEP-0313: delivery after the
#            durable write). bench/archive_cost.sh is this.
#   sm       XEP-0198 acknowledgements: nines-bench --sm (an <r/> after every
#            --sm-every N messages, default 1, and every <r/> answered) with
#            stream_management.request_every = N (the server asks as often;
#            --request-every M sets it apart),
#            against no stream management. --archive sets archive.enabled for
#            both (default false, where acks cost the largest share).
#   resume-store  stream_management.resume_from_store = true against false,
#            both runs with resumable stream management (nines-bench --sm
#            --sm-resume, --sm-every and --request-every as for sm): what
#            keeping each session's state in the store costs (a device-state
#            write before acks, and after the client's acks). --archive as
#            for sm (the cursor moves only with archived messages).
#   build    this build ($NINES, "on") against another nines binary (--baseline,
#            "off", e.g. an older commit's build), same settings: what a change
#            costs. --archive as for sm.
#   backend  store.backend = "postgres" ("on") against "sqlite": a throwaway
#            PostgreSQL 15 (scripts/pg-scratch.sh, its defaults: fsync and
#            synchronous_commit on), pinned to the server's core, a fresh
#            database each run. Use --archive true: with the archive off the
#            message path does not touch the store.
#
# --origin-id: every message carries an XEP-0359 <origin-id/>, as modern
# clients send (nines-bench --origin-id), in both runs.
#
# Each round runs both settings (alternating which goes first) against a
# fresh data directory. The server is pinned to CPU 0 and nines-bench to
# CPU 1 where the machine has two cores, so at the window-16 max the server
# is CPU-bound and msgs/s is the inverse of its CPU per message; the table
# also gives the server's CPU seconds per 100k delivered messages (over the
# whole run, logins included) and per delivery while sending (nines-bench
# --server-pid: from the first send to the last delivery). --rate
# adds a paced run at that total rate (latency at a fixed load).
set -euo pipefail
cd "$(dirname "$0")/.."
NINES=${NINES:-build/release/nines}
BENCH=${BENCH:-build/release/nines-bench}
clients=1000 duration=10 rounds=2 rate=0 what= archive_base=false sm_every=1 request_every= baseline=
origin_args=()
while (($#)); do
  case "$1" in
    --what) what=$2; shift 2 ;;
    --archive) archive_base=$2; shift 2 ;;
    --sm-every) sm_every=$2; shift 2 ;;
    --request-every) request_every=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --baseline) baseline=$2; shift 2 ;;
    --origin-id) origin_args=(--origin-id); shift ;;
    *) echo "usage: $0 --what archive|sm [--clients N] [--duration S] [--rounds R] [--rate R] [--archive B]" >&2
       exit 2 ;;
  esac
done
request_every_arg=$request_every
case "$what" in
  archive|sm|resume-store|backend) ;;
  build) [ -x "$baseline" ] || { echo "$0: --what build needs --baseline PATH to a nines binary" >&2; exit 2; } ;;
  *) echo "$0: --what archive, sm, resume-store, build or backend" >&2; exit 2 ;;
esac
[ -x "$NINES" ] && [ -x "$BENCH" ] || { echo "build the release preset first" >&2; exit 1; }
server_pin=() bench_pin=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  server_pin=(taskset -c 0) bench_pin=(taskset -c 1)
fi
work=$(mktemp -d /tmp/nines-setting-cost.XXXXXX)
server_pid=
pg_uri=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null
  [ -n "$pg_uri" ] && bash scripts/pg-scratch.sh stop "$work/pg"
  rm -rf "$work"
}
trap cleanup EXIT
if [ "$what" = backend ]; then
  chmod 755 "$work"
  pg_uri=$("${server_pin[@]}" bash scripts/pg-scratch.sh start "$work/pg")
  echo "PostgreSQL for the 'on' runs: $pg_uri (pinned with the server: ${server_pin[*]:-no pinning})" >&2
fi

# cpu_ticks PID -> utime + stime of the process, in clock ticks
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# run ON KIND -> one JSON line on stdout (with the server's CPU seconds added)
run() {
  local on=$1 kind=$2 dir="$work/$1-$RANDOM" archive=$archive_base request_every=5 extra=()
  local request_every_opt=$request_every_arg resume_from_store=true bin=$NINES
  if [ "$what" = build ]; then
    [ "$on" = false ] && bin=$baseline
  elif [ "$what" = archive ]; then
    archive=$on
  elif [ "$what" = backend ]; then
    :
  elif [ "$what" = resume-store ]; then
    request_every=${request_every_opt:-$sm_every} extra=(--sm --sm-every "$sm_every" --sm-resume)
    resume_from_store=$on
  elif [ "$on" = true ]; then
    request_every=${request_every_opt:-$sm_every} extra=(--sm --sm-every "$sm_every")
  fi
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
[stream_management]
request_every = $request_every
resume_from_store = $resume_from_store
[limits]
stanzas_per_second = 1000000
stanza_burst = 1000000
connections_per_ip = 1000000
TOML
  if [ "$what" = backend ] && [ "$on" = true ]; then
    local db="bench_${RANDOM}_$RANDOM"
    psql -q "$pg_uri" -c "CREATE DATABASE $db" >/dev/null
    printf '[store]\nbackend = "postgres"\npostgres_uri = "%s"\n' "${pg_uri%/*}/$db" >> "$dir/nines.toml"
  fi
  echo bench | "$bin" user add -c "$dir/nines.toml" --bulk 'user{}' --count "$clients" --password-stdin >/dev/null
  "${server_pin[@]}" "$bin" serve -c "$dir/nines.toml" > "$dir/ready" 2>> "$dir/nines.log" &
  server_pid=$!
  for _ in $(seq 100); do grep -q '^ready' "$dir/ready" 2>/dev/null && break; sleep 0.1; done
  local port
  port=$(sed -n 's/.*c2s=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$dir/ready")
  local args=(message --duration "$duration" "${extra[@]}" "${origin_args[@]}")
  [ "$kind" = paced ] && args+=(--rate "$rate" --window 0)
  local before after json
  before=$(cpu_ticks "$server_pid")
  json=$("${bench_pin[@]}" "$BENCH" --port "$port" -n "$clients" --mech plain --no-progress --json \
    --server-pid "$server_pid" "${args[@]}")
  after=$(cpu_ticks "$server_pid")
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d["server_cpu_s"]=(int(sys.argv[3])-int(sys.argv[2]))/int(sys.argv[4]); print(json.dumps(d))' \
    "$json" "$before" "$after" "$(getconf CLK_TCK)"
}

kinds=(max); [ "$rate" != 0 ] && kinds+=(paced)
results="$work/results"
for r in $(seq "$rounds"); do
  order=(true false); ((r % 2 == 0)) && order=(false true)
  for kind in "${kinds[@]}"; do
    for a in "${order[@]}"; do
      echo "round $r: $what on=$a, $kind" >&2
      printf '%s %s %s\n' "$a" "$kind" "$(run "$a" "$kind")" >> "$results"
    done
  done
done

python3 - "$results" "$clients" "$rate" "$what" <<'PY'
import json, sys, statistics
path, clients, rate, what = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
label_of = {"archive": "archive", "sm": "acks (XEP-0198)", "resume-store": "resumption state in the store",
            "build": "this build (off: the baseline)", "backend": "store.backend = postgres (off: sqlite)"}[what]
rows = {}
for line in open(path):
    archive, kind, blob = line.split(" ", 2)
    rows.setdefault((kind, archive), []).append(json.loads(blob))
print(f"| run ({clients} clients in pairs) | {label_of} | delivered msgs/s (each round) | server CPU s per 100k delivered | server CPU µs per delivery while sending | p50 ms | p99 ms | lost / dup |")
print("|---|---|---|---|---|---|---|---|")
for kind in ("max", "paced"):
    for archive in ("false", "true"):
        rs = rows.get((kind, archive))
        if not rs: continue
        rates = [r["delivered_per_s"] for r in rs]
        p50 = [r["latency_p50_ms"] for r in rs]
        p99 = [r["latency_p99_ms"] for r in rs]
        lost = sum(r["lost"] for r in rs); dup = sum(r["duplicated"] for r in rs)
        cpu = [r["server_cpu_s"] / max(1, r["delivered"]) * 1e5 for r in rs]
        run_cpu = [r["server_cpu_us_per_delivered"] for r in rs if "server_cpu_us_per_delivered" in r]
        run_cell = (f"{', '.join(f'{x:.2f}' for x in run_cpu)} (median {statistics.median(run_cpu):.2f})"
                    if run_cpu else "n/a")
        label = "window 16 (max)" if kind == "max" else f"paced at {rate}/s"
        print(f"| {label} | {'on' if archive == 'true' else 'off'} | {', '.join(f'{x:,.0f}' for x in rates)} "
              f"(median {statistics.median(rates):,.0f}) | {statistics.median(cpu):.2f} | {run_cell} | {statistics.median(p50):.2f} | {statistics.median(p99):.2f} | {lost} / {dup} |")
for kind in ("max", "paced"):
    on, off = rows.get((kind, "true")), rows.get((kind, "false"))
    if on and off:
        m_on = statistics.median(r["delivered_per_s"] for r in on)
        m_off = statistics.median(r["delivered_per_s"] for r in off)
        c_on = statistics.median(r["server_cpu_s"] / max(1, r["delivered"]) for r in on)
        c_off = statistics.median(r["server_cpu_s"] / max(1, r["delivered"]) for r in off)
        print(f"\n{kind}: with {label_of} on, {m_on / m_off:.0%} of the msgs/s without (cost {1 - m_on / m_off:.0%}); "
              f"server CPU per delivered message {c_on / c_off:.2f}x.")
        if all("server_cpu_us_per_delivered" in r for r in on + off):
            u_on = statistics.median(r["server_cpu_us_per_delivered"] for r in on)
            u_off = statistics.median(r["server_cpu_us_per_delivered"] for r in off)
            print(f"{kind}: server CPU per delivery while sending (logins excluded): on {u_on:.2f} µs, "
                  f"off {u_off:.2f} µs, {u_on / u_off:.2f}x.")
        if all("logins_per_s" in r for r in on + off):
            l_on = statistics.median(r["logins_per_s"] for r in on)
            l_off = statistics.median(r["logins_per_s"] for r in off)
            each_on = ", ".join(format(r["logins_per_s"], ",.0f") for r in on)
            each_off = ", ".join(format(r["logins_per_s"], ",.0f") for r in off)
            print(f"{kind}: logins/s while connecting the {clients} clients: on {l_on:,.0f}, off {l_off:,.0f} "
                  f"({l_on / l_off:.0%}); each round on: {each_on}, off: {each_off}.")
PY
