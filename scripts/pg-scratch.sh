#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster for tests and benchmarks: initdb in a
# directory of its own, its own port on 127.0.0.1, trust authentication, no
# other users. Nothing of the machine's own PostgreSQL is touched.
#
#   scripts/pg-scratch.sh start DIR [PORT]            # prints the connection URI on stdout
#   scripts/pg-scratch.sh standby DIR PRIMARY_PORT [PORT]
#                                    # a streaming-replication standby of the
#                                    # cluster on PRIMARY_PORT; prints its URI
#   scripts/pg-scratch.sh crash DIR          # stops it at once, as a crash would (-m immediate)
#   scripts/pg-scratch.sh promote DIR        # makes a standby the primary
#   scripts/pg-scratch.sh stop DIR           # stops it and deletes DIR
#
# Options for the server go in PG_SCRATCH_OPTS (e.g. "-c fsync=off" for unit
# tests that do not test durability). PostgreSQL refuses to run as root, so
# when run as root the cluster belongs to the 'postgres' user the Debian
# package creates.
set -euo pipefail

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  echo "pg-scratch: PostgreSQL server binaries not found (apt-get install postgresql-15)" >&2
  exit 1
fi

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# serve [PORT]: starts the cluster in $dir on PORT, or without one on a few
# random ports in turn (another test run may hold one); prints its URI.
serve() {
  local port
  for _ in 1 2 3 4 5; do
    port=${1:-$((20000 + RANDOM % 20000))}
    # shellcheck disable=SC2086
    if as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c max_connections=200 ${PG_SCRATCH_OPTS:-}" \
      start >/dev/null; then
      echo "postgresql://postgres@127.0.0.1:$port/postgres"
      exit 0
    fi
    [ -z "${1:-}" ] || break
  done
  cat "$dir/server.log" >&2
  exit 1
}

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|standby|crash|promote|stop DIR ..." >&2; exit 2; }

case "$cmd" in
  start)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir"; fi
    chmod 700 "$dir"
    as_owner "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; exit 1; }
    serve "${3:-}"
    ;;
  standby)
    primary_port=${3:-}
    [ -n "$primary_port" ] || { echo "usage: $0 standby DIR PRIMARY_PORT [PORT]" >&2; exit 2; }
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir"; fi
    chmod 700 "$dir"
    # -R writes primary_conninfo and standby.signal; the walreceiver's
    # application_name is the directory's name, for synchronous_standby_names.
    name=$(basename "$dir" | tr -c 'a-zA-Z0-9_\n' '_')
    as_owner "$bindir/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U postgres -D "$dir/data" -R -X stream -c fast \
      -d "application_name=$name" >"$dir/basebackup.log" 2>&1 || { cat "$dir/basebackup.log" >&2; exit 1; }
    serve "${4:-}"
    ;;
  crash)
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null
    ;;
  promote)
    as_owner "$bindir/pg_ctl" -D "$dir/data" -w promote >/dev/null
    ;;
  stop)
    if [ -d "$dir/data" ]; then
      as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start DIR [PORT] | stop DIR" >&2
    exit 2
    ;;
esac
