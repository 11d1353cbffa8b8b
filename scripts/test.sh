#!/usr/bin/env bash
# Quick start, command 2: run every test. CI runs this through .ci/run.
#
#   unit tests (GoogleTest, ctest)          every layer; the store suite against SQLite and a throwaway PostgreSQL
#   protocol tests                          the real binary, driven by slixmpp and @xmpp/client
#   the same two again under ASan+UBSan     (NINES_SANITIZERS=0 skips them)
#   fuzz smoke run                          libFuzzer on the XML stream parser, stanza handling and SASL
#
# NINES_FUZZ_SECONDS (default 30) sets each fuzz target's run; 0 skips building the fuzzers.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

echo "== installing dependencies"
bash scripts/install-deps.sh --tests

# The PostgreSQL store's tests need a server: a throwaway PostgreSQL 15 in a
# temporary directory, on its own port, stopped and deleted on exit. fsync is
# off there only to make creating a database per test fast; no test relies
# on it (durability is the server's job, tested by the store's own tests).
pg_dir=$(mktemp -d /tmp/nines-pg.XXXXXX)
trap 'bash scripts/pg-scratch.sh stop "$pg_dir"' EXIT
echo "== starting a throwaway PostgreSQL for the store tests"
NINES_TEST_PG=$(PG_SCRATCH_OPTS="-c fsync=off" bash scripts/pg-scratch.sh start "$pg_dir")
export NINES_TEST_PG NINES_REQUIRE_PG=1

# Builds a preset, then runs the unit tests and the protocol tests against
# its binary. $1: preset, $2: what to call it in the log; the environment of
# the call reaches the protocol tests.
build_and_test() {
  echo "== building ($2)"
  cmake --preset "$1" >/dev/null
  cmake --build "build/$1" -j "$jobs"
  echo "== unit tests ($2)"
  ctest --test-dir "build/$1" --output-on-failure -j "$jobs"
  echo "== protocol tests ($2; a leak or UB report fails the server's exit status under sanitizers)"
  NINES_BIN="$PWD/build/$1/nines" bash tests/protocol/run.sh
}

build_and_test release "release preset"

# The store-heavy protocol suites again, with every server on PostgreSQL (a
# database per server in the throwaway cluster): the same behaviour on both
# backends. NINES_PG_PROTOCOL=full runs the whole protocol suite this way.
echo "== protocol tests on PostgreSQL (release preset)"
pg_suites=(test_stream_management test_resume_from_store test_three_devices test_archive test_pep test_pep_profile
  test_push test_settings test_blocking test_raw_lifecycle)
if [ "${NINES_PG_PROTOCOL:-}" = full ]; then
  (cd tests/protocol && NINES_BIN="$PWD/../../build/release/nines" NINES_TEST_STORE_PG="$NINES_TEST_PG" \
    SUITE_TIMEOUT=1500 bash run.sh)
else
  (cd tests/protocol && NINES_BIN="$PWD/../../build/release/nines" NINES_TEST_STORE_PG="$NINES_TEST_PG" \
    timeout --signal=TERM --kill-after=30 900 /usr/bin/python3 -m unittest -v "${pg_suites[@]}")
fi
if [ "${NINES_SANITIZERS:-1}" = 1 ]; then
  # A small quarantine keeps freed memory from counting as growth in the
  # tests that bound the server's RSS.
  ASAN_OPTIONS=quarantine_size_mb=8 build_and_test debug "debug preset: AddressSanitizer + UndefinedBehaviorSanitizer"
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
