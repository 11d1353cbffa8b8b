#!/usr/bin/env bash
# Runs the protocol suites against the real nines binary:
#   1. python unittest (slixmpp + raw sockets): test_*.py
#   2. node --test (@xmpp/client):              *.test.mjs
# Exits non-zero if either suite fails. Each suite is bounded by a wall-clock timeout.
#
# Environment:
#   NINES_BIN   server binary (default <repo>/build/release/nines)
#   PYTHON      interpreter with slixmpp (default: the first of /usr/bin/python3, python3 that has it)
#   SUITE_TIMEOUT  seconds per suite (default 900)
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export NINES_BIN="${NINES_BIN:-$repo/build/release/nines}"
suite_timeout="${SUITE_TIMEOUT:-900}"

if [[ ! -x "$NINES_BIN" ]]; then
  echo "run.sh: server binary $NINES_BIN not found or not executable (build it or set NINES_BIN)" >&2
  exit 1
fi

python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  # Debian's python3-slixmpp lives in /usr/lib/python3/dist-packages; a python3 earlier on
  # PATH (pyenv, venv) may not see it.
  for candidate in /usr/bin/python3 python3; do
    if "$candidate" -c 'import slixmpp' >/dev/null 2>&1; then
      python="$candidate"
      break
    fi
  done
fi
if [[ -z "$python" ]]; then
  echo "run.sh: no python3 with slixmpp found (apt-get install python3-slixmpp, or set PYTHON)" >&2
  exit 1
fi

status=0

# @xmpp/client for the node suite, and for the python suite's web device
# (test_three_devices.py runs web_device.mjs): installed first, from the lock file.
if ! (cd "$here" && npm ci --no-audit --no-fund); then
  echo "run.sh: npm ci failed in $here" >&2
  exit 1
fi

echo "=== python protocol tests ($python, $("$python" -c 'import slixmpp; print("slixmpp", slixmpp.__version__)' 2>/dev/null)) ==="
(cd "$repo" && timeout --signal=TERM --kill-after=30 "$suite_timeout" \
  "$python" -m unittest discover -s tests/protocol -p 'test_*.py' -v)
py_status=$?
if [[ $py_status -eq 124 ]]; then echo "run.sh: python suite exceeded ${suite_timeout}s" >&2; fi
[[ $py_status -ne 0 ]] && status=1

echo "=== node protocol tests (node $(node --version)) ==="
(cd "$here" && \
  timeout --signal=TERM --kill-after=30 "$suite_timeout" node --test --test-reporter=spec xmpp_client.test.mjs)
node_status=$?
if [[ $node_status -eq 124 ]]; then echo "run.sh: node suite exceeded ${suite_timeout}s" >&2; fi
[[ $node_status -ne 0 ]] && status=1

echo "=== summary: python exit ${py_status}, node exit ${node_status} ==="
exit $status
