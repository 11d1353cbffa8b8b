#!/usr/bin/env bash
# bench/compare.sh: nines, Prosody and ejabberd on the same workload, in one
# run, on this machine, measured by nines-bench. Writes a markdown table
# (metric x server, with the ratio nines/peer) to docs/benchmarks.md.
#
#   bench/compare.sh [--quick | --large] [--sessions N] [--out FILE]
#                    [--servers "nines prosody ejabberd"] [--build DIR]
#                    [--prosody-gc MODE] [--no-install] [--keep]
#
#   --quick        small sizes; finishes in under 5 minutes
#   --large        also holds the most sessions one server process may have
#                  under the open-file cap (19,000 here; --sessions N to
#                  choose), and measures memory per session there
#   --out FILE     where the markdown goes (default docs/benchmarks.md)
#   --servers      which servers to run (default all three)
#   --build DIR    build directory holding nines and nines-bench
#                  (default build/release; built if missing)
#   --prosody-gc   also pass gc = { mode = MODE } to Prosody (e.g.
#                  generational); the default run keeps Prosody's default
#   --no-install   do not apt-get install missing peers (skip them instead)
#   --keep         keep the work directory (configs, logs, JSON results)
#
# Every server listens on 127.0.0.1 only, with the same domain (localhost),
# the same accounts (created through in-band registration, XEP-0077, which
# all three support), plaintext allowed, its default storage, and logging at
# warning level. Per-session rate limits are lifted on every server, since
# the point is to measure the servers, not their throttles. With two or more
# cores, each server is pinned to CPU 0 and the load generator to CPU 1.
#
# Needs root for the peers: ejabberd runs as the `ejabberd` user (its Debian
# packaging insists), Prosody as root with run_as_root. Traffic never leaves
# loopback.
set -euo pipefail

MODE=normal
OUT=""
SERVERS="nines prosody ejabberd"
BUILD=""
PROSODY_GC=""
INSTALL=1
KEEP=0
LARGE_SESSIONS=19000

while [ $# -gt 0 ]; do
  case "$1" in
    --quick) MODE=quick; shift ;;
    --large) MODE=large; shift ;;
    --sessions) LARGE_SESSIONS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --servers) SERVERS="$2"; shift 2 ;;
    --build) BUILD="$2"; shift 2 ;;
    --prosody-gc) PROSODY_GC="$2"; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${OUT:-$ROOT/docs/benchmarks.md}"
BUILD="${BUILD:-$ROOT/build/release}"
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
DOMAIN=localhost
PASSWORD=bench
START_TS=$(date +%s)

say() { echo "compare.sh: $*" >&2; }
die() { echo "compare.sh: $*" >&2; exit 1; }

# ---- sizes ------------------------------------------------------------------------------
case "$MODE" in
  quick)
    N_CONNECT=500; N_IDLE=1000; N_MSG=1000; MSG_SECONDS=4; N_PRESENCE=110; K=10; HOLD=11 ;;
  *)
    N_CONNECT=2000; N_IDLE=2000; N_MSG=1000; MSG_SECONDS=10; N_PRESENCE=550; K=10; HOLD=15 ;;
esac
N_ACCOUNTS=$(( N_CONNECT > N_IDLE ? N_CONNECT : N_IDLE ))
N_ACCOUNTS=$(( N_ACCOUNTS > N_MSG ? N_ACCOUNTS : N_MSG ))
N_ACCOUNTS=$(( N_ACCOUNTS > N_PRESENCE ? N_ACCOUNTS : N_PRESENCE ))
if [ "$MODE" = large ]; then
  N_ACCOUNTS=$(( N_ACCOUNTS > LARGE_SESSIONS ? N_ACCOUNTS : LARGE_SESSIONS ))
  # A server process needs a descriptor per session plus its own.
  HARD=$(ulimit -Hn)
  if [ "$HARD" != unlimited ] && [ "$LARGE_SESSIONS" -gt $(( HARD - 500 )) ]; then
    die "--large with $LARGE_SESSIONS sessions needs an open-file limit above $(( LARGE_SESSIONS + 500 )) (hard limit is $HARD)"
  fi
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---- binaries ---------------------------------------------------------------------------
NINES="$BUILD/nines"
BENCH="$BUILD/nines-bench"
if [ ! -x "$NINES" ] || [ ! -x "$BENCH" ]; then
  say "building nines and nines-bench in $BUILD"
  if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    cmake --preset release -S "$ROOT" -B "$BUILD" >/dev/null
  fi
  cmake --build "$BUILD" --target nines nines-bench >/dev/null
fi

# ---- peers ------------------------------------------------------------------------------
have() { command -v "$1" >/dev/null 2>&1; }
want() { case " $SERVERS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

install_peers() {
  local pkgs=()
  if want prosody && ! have prosody; then pkgs+=(prosody); fi
  if want ejabberd && ! have ejabberdctl; then pkgs+=(ejabberd); fi
  [ ${#pkgs[@]} -eq 0 ] && return 0
  if [ "$INSTALL" = 0 ]; then
    say "not installing ${pkgs[*]} (--no-install); skipping them"
    return 0
  fi
  [ "$(id -u)" = 0 ] || die "installing ${pkgs[*]} needs root (or pass --no-install)"
  say "installing ${pkgs[*]} from Debian"
  # Keep the packages from starting system-wide daemons on install; only a
  # policy-rc.d we created ourselves is removed again.
  local created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}" >/dev/null || {
    [ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
    die "apt-get install ${pkgs[*]} failed"
  }
  [ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  return 0
}
install_peers

ACTIVE=""
for s in $SERVERS; do
  case "$s" in
    nines) ACTIVE="$ACTIVE nines" ;;
    prosody) if have prosody; then ACTIVE="$ACTIVE prosody"; else say "prosody not installed; skipped"; fi ;;
    ejabberd)
      if ! have ejabberdctl; then say "ejabberd not installed; skipped"
      elif [ "$(id -u)" != 0 ]; then say "ejabberd needs root to run as its own user; skipped"
      else ACTIVE="$ACTIVE ejabberd"; fi ;;
    *) die "unknown server $s" ;;
  esac
done
[ -n "$ACTIVE" ] || die "no server to run"

# ---- pinning ----------------------------------------------------------------------------
CORES=$(nproc)
if [ "$CORES" -ge 2 ] && have taskset; then
  SERVER_PIN=(taskset -c 0)
  BENCH_PIN=(taskset -c 1)
  PINNING="each server pinned to CPU 0 (one event loop / scheduler where configurable), nines-bench to CPU 1 (taskset)"
else
  SERVER_PIN=()
  BENCH_PIN=()
  PINNING="not pinned ($CORES core(s) or no taskset): server and load generator share the CPU"
fi
say "$PINNING"

WORK=$(mktemp -d /tmp/nines-compare.XXXXXX)
chmod 755 "$WORK"
RESULTS="$WORK/results"
mkdir -p "$RESULTS"
SERVER_PID=""      # what we wait on / signal to stop
SERVER_RSS_PID=""  # the process whose RSS is the server's memory
SERVER_NAME=""
EJ_NODE="nines-compare-$$@localhost"

cleanup() {
  stop_server || true
  if [ "$KEEP" = 1 ]; then say "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

wait_port() {  # port seconds
  local i
  for i in $(seq $(( $2 * 10 ))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# ---- server configs ---------------------------------------------------------------------
start_nines() {
  local dir="$WORK/nines"
  mkdir -p "$dir"
  cat > "$dir/nines.toml" <<EOF
[server]
domain = "$DOMAIN"
data_dir = "$dir/data"
threads = 1
[listen]
c2s_port = 0
c2s_tls_port = -1
[tls]
require = false
[auth]
allow_plain_without_tls = true
[registration]
enabled = true
[log]
level = "warn"
[archive]
enabled = false   # like the peers here, which load no mod_mam; bench/archive_cost.sh measures the archive
[limits]
stanzas_per_second = 1000000
stanza_burst = 1000000
connections_per_ip = 1000000
failed_logins_per_ip = 1000000
failed_logins_per_account = 1000000
registrations_per_ip = 1000000
EOF
  "${SERVER_PIN[@]}" "$NINES" serve -c "$dir/nines.toml" > "$dir/ready" 2>> "$dir/nines.log" &
  SERVER_PID=$!
  SERVER_RSS_PID=$SERVER_PID
  local i
  for i in $(seq 100); do
    grep -q '^ready' "$dir/ready" 2>/dev/null && break
    sleep 0.1
  done
  PORT=$(sed -n 's/.*c2s=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$dir/ready")
  [ -n "$PORT" ] || die "nines did not start (see $dir/nines.log)"
}

start_prosody() {
  local dir="$WORK/prosody"
  mkdir -p "$dir/data" "$dir/certs"
  PORT=$(free_port)
  {
    echo "-- nines-bench comparison (loopback only)"
    [ "$(id -u)" = 0 ] && echo "run_as_root = true"
    [ -n "$PROSODY_GC" ] && echo "gc = { mode = \"$PROSODY_GC\" }"
    cat <<EOF
pidfile = "$dir/prosody.pid"
data_path = "$dir/data"
certificates = "$dir/certs"
interfaces = { "127.0.0.1" }
c2s_ports = { $PORT }
c2s_direct_tls_ports = { }
s2s_ports = { }
tcp_backlog = 1024
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "register"; "offline"; "posix" }
modules_disabled = { "s2s" }
allow_registration = true
registration_allowlist = { "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4" }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
log = { warn = "$dir/prosody.log" }
VirtualHost "$DOMAIN"
EOF
  } > "$dir/prosody.cfg.lua"
  "${SERVER_PIN[@]}" prosody --config "$dir/prosody.cfg.lua" -F >> "$dir/prosody.out" 2>&1 &
  SERVER_PID=$!
  SERVER_RSS_PID=$SERVER_PID
  wait_port "$PORT" 30 || die "prosody did not start (see $dir/prosody.log)"
}

start_ejabberd() {
  local dir="$WORK/ejabberd"
  mkdir -p "$dir/db" "$dir/log"
  PORT=$(free_port)
  cat > "$dir/ejabberd.yml" <<EOF
loglevel: warning
log_rotate_count: 0
hosts:
  - $DOMAIN
listen:
  -
    port: $PORT
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    shaper: none
    access: c2s
    starttls_required: false
    backlog: 1024
auth_password_format: scram
registration_timeout: infinity
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  register:
    allow: all
shaper_rules:
  max_user_sessions: 10
  max_user_offline_messages: 5000
  c2s_shaper: none
modules:
  mod_roster: {}
  mod_disco: {}
  mod_ping: {}
  mod_offline: {}
  mod_register:
    access: register
    ip_access: all
EOF
  cat > "$dir/ejabberdctl.cfg" <<EOF
ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0"
ERL_MAX_PORTS=$(( N_ACCOUNTS + 10000 ))
EOF
  chown -R ejabberd:ejabberd "$dir"
  # setpriv, not su: su goes through PAM, which resets the open-file limit
  # to 1024 and ejabberd then dies of EMFILE at about a thousand sessions.
  ( cd "$dir" && HOME="$dir" exec "${SERVER_PIN[@]}" setpriv --reuid=ejabberd --regid=ejabberd --init-groups \
      ejabberdctl --config "$dir/ejabberd.yml" --ctl-config "$dir/ejabberdctl.cfg" --config-dir "$dir" \
      --logs "$dir/log" --spool "$dir/db" --node "$EJ_NODE" foreground ) >> "$dir/ejabberd.out" 2>&1 &
  SERVER_PID=$!
  wait_port "$PORT" 60 || die "ejabberd did not start (see $dir/log)"
  SERVER_RSS_PID=$(pgrep -f "beam.smp.*-sname $EJ_NODE" | head -1)
  [ -n "$SERVER_RSS_PID" ] || die "cannot find ejabberd's beam.smp process"
}

start_server() {
  SERVER_NAME=$1
  "start_$1"
  say "$1 up on 127.0.0.1:$PORT (pid $SERVER_RSS_PID)"
}

stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  if [ "$SERVER_NAME" = ejabberd ]; then
    local dir="$WORK/ejabberd"
    ( cd "$dir" && HOME="$dir" setpriv --reuid=ejabberd --regid=ejabberd --init-groups \
        ejabberdctl --ctl-config "$dir/ejabberdctl.cfg" --config-dir "$dir" --node "$EJ_NODE" stop ) \
        >/dev/null 2>&1 || true
  else
    kill -TERM "$SERVER_PID" 2>/dev/null || true
  fi
  local i
  for i in $(seq 150); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  if [ -n "$SERVER_RSS_PID" ] && kill -0 "$SERVER_RSS_PID" 2>/dev/null; then
    kill -KILL "$SERVER_RSS_PID" 2>/dev/null || true
  fi
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  SERVER_RSS_PID=""
}

# bench NAME SCENARIO ARGS...: one nines-bench run, JSON kept as results/SERVER-NAME.json.
bench() {
  local name=$1; shift
  local out="$RESULTS/$SERVER_NAME-$name.json"
  say "$SERVER_NAME: $name"
  if ! "${BENCH_PIN[@]}" "$BENCH" "$@" --port "$PORT" --domain "$DOMAIN" --password "$PASSWORD" --json \
        --no-progress > "$out" 2>> "$RESULTS/$SERVER_NAME-$name.err"; then
    say "$SERVER_NAME: $name reported failures (kept in the table)"
  fi
}

json() {  # file key -> value or empty
  python3 -c 'import json,sys
try:
  d=json.load(open(sys.argv[1])); v=d.get(sys.argv[2], "")
  print(v)
except Exception: print("")' "$1" "$2"
}

run_server() {
  local s=$1
  start_server "$s"
  # Accounts first, then a restart, so the memory figures start from a
  # server that has never held a session.
  bench register register -n "$N_ACCOUNTS" -c 100
  stop_server
  start_server "$s"
  bench idle idle -n "$N_IDLE" --hold "$HOLD" --server-pid "$SERVER_RSS_PID"
  bench connect-plain connect -n "$N_CONNECT" --mech plain
  bench connect-scram1 connect -n "$N_CONNECT" --mech scram-sha-1
  bench connect-scram256 connect -n "$N_CONNECT" --mech scram-sha-256
  bench message-max message -n "$N_MSG" --duration "$MSG_SECONDS" --window 16
  local max
  max=$(json "$RESULTS/$s-message-max.json" delivered_per_s)
  max=${max%.*}
  if [ -n "$max" ] && [ "$max" -gt 0 ]; then
    bench message-half message -n "$N_MSG" --duration "$MSG_SECONDS" --rate $(( max / 2 )) --window 0
  fi
  bench presence presence -n "$N_PRESENCE" -k "$K" --duration 0 --setup-timeout 300
  if [ "$MODE" = large ]; then
    stop_server
    start_server "$s"
    bench idle-large idle -n "$LARGE_SESSIONS" --hold "$HOLD" --server-pid "$SERVER_RSS_PID"
  fi
  stop_server
}

for s in $ACTIVE; do run_server "$s"; done

# ---- versions and machine ---------------------------------------------------------------
pkgver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "?"; }
NINES_VERSION="$("$NINES" version 2>/dev/null | awk '{print $2}') ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
PROSODY_VERSION="$(pkgver prosody) (Lua $(pkgver lua5.4))"
EJABBERD_VERSION="$(pkgver ejabberd) (Erlang/OTP $(pkgver erlang-base))"
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
MEM_GIB=$(awk '/MemTotal/ {printf "%.1f", $2/1048576}' /proc/meminfo)
ELAPSED=$(( $(date +%s) - START_TS ))

python3 - "$RESULTS" "$OUT" <<PYEOF
import json, os, sys, datetime
results, out = sys.argv[1], sys.argv[2]
servers = "$ACTIVE".split()
def load(server, name):
    try:
        with open(os.path.join(results, f"{server}-{name}.json")) as f:
            return json.load(f)
    except Exception:
        return None

# (label, run, JSON key, which direction is better, decimals)
rows = [
    ("Delivered msgs/s, $N_MSG clients in pairs (max, window 16)", "message-max", "delivered_per_s", "higher", 0),
    ("Message latency p50 at max (ms)", "message-max", "latency_p50_ms", "lower", 2),
    ("Message latency p99 at half of max (ms)", "message-half", "latency_p99_ms", "lower", 2),
    ("Message latency p50 at half of max (ms)", "message-half", "latency_p50_ms", "lower", 2),
    ("Messages lost / duplicated (max run)", "message-max", "lost_dup", "lower", 0),
    ("Logins/s, PLAIN, $N_CONNECT sessions", "connect-plain", "logins_per_s", "higher", 0),
    ("Logins/s, SCRAM-SHA-1", "connect-scram1", "logins_per_s", "higher", 0),
    ("Logins/s, SCRAM-SHA-256", "connect-scram256", "logins_per_s", "higher", 0),
    ("Server KiB per idle session, $N_IDLE sessions", "idle", "server_kib_per_session", "lower", 1),
    ("Presence fan-out/s, login storm, K=$K, $N_PRESENCE users", "presence", "presence_per_s", "higher", 0),
    ("Registrations/s (XEP-0077)", "register", "logins_per_s", "higher", 0),
]
if "$MODE" == "large":
    rows.insert(9, ("Server KiB per idle session, $LARGE_SESSIONS sessions", "idle-large", "server_kib_per_session", "lower", 1))

def value(server, run, key):
    d = load(server, run)
    if d is None:
        return None
    if key == "lost_dup":
        return (d.get("lost"), d.get("duplicated"))
    if run.startswith("connect") or run.startswith("idle") or run == "presence":
        if d.get("online", 0) == 0:
            return None  # e.g. SCRAM-SHA-256 not offered
    return d.get(key)

def fmt(v, decimals):
    if v is None:
        return "n/a"
    if isinstance(v, tuple):
        return " / ".join("n/a" if x is None else f"{int(x):,}" for x in v)
    return f"{v:,.{decimals}f}"

peers = [s for s in servers if s != "nines"]
head = ["metric"] + servers + [f"nines/{p}" for p in peers if "nines" in servers]
lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
for label, run, key, better, decimals in rows:
    cells = [f"{label} ({better} is better)" if key != "lost_dup" else label]
    vals = {s: value(s, run, key) for s in servers}
    cells += [fmt(vals[s], decimals) for s in servers]
    if "nines" in servers:
        for p in peers:
            a, b = vals.get("nines"), vals.get(p)
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
                cells.append(f"{a / b:.2f}")
            else:
                cells.append("n/a")
    lines.append("| " + " | ".join(cells) + " |")

def failures(server):
    notes = []
    for name in ["register", "idle", "idle-large", "connect-plain", "connect-scram1", "connect-scram256",
                 "message-max", "message-half", "presence"]:
        d = load(server, name)
        fails = {k: v for k, v in (d or {}).get("failures", {}).items()
                 if not k.startswith("mechanism not offered")}  # explained above
        if fails:
            top = ", ".join(f"{k}: {v}" for k, v in list(fails.items())[:3])
            notes.append(f"- {server} {name}: {top}")
    return notes

now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
doc = [
    "# Benchmarks: nines, Prosody and ejabberd",
    "",
    "<!-- Written by bench/compare.sh; rerun it rather than editing by hand. -->",
    "",
    f"Measured {now} with \`bench/compare.sh{' --' + '$MODE' if '$MODE' != 'normal' else ''}\` ({$ELAPSED} s), "
    "using nines-bench (bench/README.md has the definitions).",
    "",
    f"- Machine: $CORES cores ($CPU_MODEL), {float('$MEM_GIB'):.1f} GiB RAM, Linux $(uname -r)",
    f"- Versions: nines $NINES_VERSION; Prosody $PROSODY_VERSION; ejabberd $EJABBERD_VERSION",
    f"- Pinning: $PINNING",
    "- Every server: 127.0.0.1 only, domain localhost, accounts created by in-band registration, plaintext "
    "allowed (PLAIN without TLS), its default storage (nines: SQLite; Prosody: internal files; ejabberd: Mnesia), "
    "warning-level logs, per-session rate limits lifted, listen backlog 1024 where it is configurable.",
    "- Logins for the idle, message and presence runs use the best SASL mechanism each server offers.",
    "- No server keeps a message archive here (nines: archive.enabled = false; Prosody and ejabberd: no mod_mam), "
    "so all three do the same work per message; what nines' archive (on by default) costs is measured by "
    "bench/archive_cost.sh (docs/benchmarks.md, \"The archive\").",
    "- Ratios are nines/peer: above 1 is better for nines where higher is better, below 1 where lower is better.",
    "",
] + lines + [""]
notes = []
if "prosody" in servers:
    notes.append("- Prosody 0.12 does not offer SCRAM-SHA-256; ejabberd 23.01 offers one SCRAM hash (SHA-1 by default).")
    notes.append("- Prosody ran with its default garbage collector settings" +
                 (" plus gc mode $PROSODY_GC" if "$PROSODY_GC" else "") +
                 "; on this machine \`gc = { mode = \"generational\" }\` raised its message rate about tenfold "
                 "in a trial run (\`--prosody-gc generational\` measures it).")
notes.append("- PLAIN logins cost the server a PBKDF2 on servers that store salted keys (all three here). SCRAM logins "
             "cost the server only HMACs, but here each account (made by in-band registration) has its own salt, so "
             "nines-bench derives the client's keys with one PBKDF2 per login on its single core: the SCRAM rows are "
             "bounded by the load generator for the faster servers (nines does ~7,000 SCRAM-SHA-256 logins/s with "
             "shared-salt accounts; docs/benchmarks.md, runs by hand).")
for s in servers:
    notes += failures(s)
doc += ["Notes:", ""] + notes + [""]
# Only the generated part is replaced: everything from the first "## "
# section of the existing file on (runs by hand, profiles) is kept.
kept = ""
if os.path.exists(out):
    old = open(out).read()
    at = old.find("\n## ")
    if at >= 0:
        kept = old[at + 1:]
with open(out, "w") as f:
    f.write("\n".join(doc) + ("\n" + kept if kept else ""))
print("\n".join(lines))
PYEOF
say "wrote $OUT ($ELAPSED s)"
