#!/usr/bin/env bash
# Quick start, command 1: install what is needed, build, and start nines on
# its embedded default (SQLite in ./nines-data, domain localhost, ports 5222
# STARTTLS and 5223 direct TLS on 127.0.0.1). Extra arguments go to `nines serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build build/release --target nines
echo
echo "Starting nines. In another terminal, create a user:"
echo "  build/release/nines user add alice"
echo "then log in as alice@localhost with any XMPP client (accept the self-signed certificate)."
echo
exec build/release/nines serve "$@"
