#!/usr/bin/env bash
# Quick start, command 2: run every test. CI runs this through .ci/run.
#
#   unit tests (GoogleTest, ctest)          every layer
#   protocol tests                          the real binary, driven by slixmpp and @xmpp/client
#   the same two again under ASan+UBSan     (NINES_SANITIZERS=0 skips them)
#   fuzz smoke run                          libFuzzer on the XML stream parser, stanza handling and SASL
#
# NINES_FUZZ_SECONDS (default 30) sets each fuzz target's run; 0 skips building the fuzzers.
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

echo "== protocol tests (release binary)"
NINES_BIN="$PWD/build/release/nines" bash tests/protocol/run.sh

if [ "${NINES_SANITIZERS:-1}" = 1 ]; then
  echo "== building (debug preset: AddressSanitizer + UndefinedBehaviorSanitizer)"
  cmake --preset debug >/dev/null
  cmake --build build/debug -j "$jobs"
  echo "== unit tests under sanitizers"
  ctest --test-dir build/debug --output-on-failure -j "$jobs"
  echo "== protocol tests under sanitizers (a leak or UB report fails the server's exit status)"
  # A small quarantine keeps freed memory from counting as growth in the
  # tests that bound the server's RSS.
  ASAN_OPTIONS=quarantine_size_mb=8 NINES_BIN="$PWD/build/debug/nines" bash tests/protocol/run.sh
fi

fuzz_seconds=${NINES_FUZZ_SECONDS:-30}
if [ "$fuzz_seconds" -gt 0 ]; then
  echo "== fuzz smoke run: ${fuzz_seconds}s per target"
  cmake --preset fuzz >/dev/null
  cmake --build build/fuzz -j "$jobs" --target xml_stream_fuzz stanza_fuzz sasl_fuzz
  for target in xml_stream stanza sasl; do
    work=$(mktemp -d)
    build/fuzz/${target}_fuzz -max_total_time="$fuzz_seconds" -print_final_stats=1 "$work" "fuzz/corpus/$target"
    rm -rf "$work"
  done
fi
echo "== all tests passed"
