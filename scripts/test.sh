#!/usr/bin/env bash
# Quick start, command 2: run every test. CI runs this through .ci/run.
#
#   unit tests (GoogleTest, ctest)          every layer
#   protocol tests                          the real binary, driven by slixmpp and @xmpp/client
#   fuzz smoke run                          libFuzzer on the XML stream parser, fixed time
#
# NINES_FUZZ_SECONDS (default 60) sets the fuzz run's length; 0 skips building the fuzzers.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

echo "== installing dependencies"
bash scripts/install-deps.sh

echo "== building (release preset)"
cmake --preset release >/dev/null
cmake --build build/release -j "$jobs"

echo "== unit tests"
ctest --test-dir build/release --output-on-failure -j "$jobs"

echo "== protocol tests"
NINES_BIN="$PWD/build/release/nines" bash tests/protocol/run.sh

fuzz_seconds=${NINES_FUZZ_SECONDS:-60}
if [ "$fuzz_seconds" -gt 0 ]; then
  echo "== fuzzing the XML stream parser for ${fuzz_seconds}s"
  cmake --preset fuzz >/dev/null
  cmake --build build/fuzz -j "$jobs" --target xml_stream_fuzz
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  build/fuzz/xml_stream_fuzz -max_total_time="$fuzz_seconds" -print_final_stats=1 "$work" fuzz/corpus/xml_stream
fi
echo "== all tests passed"
