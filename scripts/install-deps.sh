#!/usr/bin/env bash
# Installs every Debian package nines needs to build and run; with --tests,
# also what only the tests need (a PostgreSQL server for the store tests).
# Idempotent; run as root on Debian 12. Network: Debian mirrors only.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
for_tests=false
[ "${1:-}" = --tests ] && for_tests=true

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config clang clang-format clang-tidy
  libfuzzer-14-dev libclang-rt-14-dev
  # libraries (see docs/architecture.md for why each is here)
  libboost1.81-dev libssl-dev nettle-dev libexpat1-dev libsqlite3-dev libicu-dev
  libtomlplusplus-dev libcli11-dev libspdlog-dev libfmt-dev libpq-dev libjemalloc-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # protocol tests
  python3 python3-slixmpp python3-openssl openssl procps
)
# The PostgreSQL store's tests run against throwaway PostgreSQL 15 clusters
# (scripts/pg-scratch.sh); the server itself needs only libpq.
if $for_tests; then packages+=(postgresql-15); fi
# Node.js: the machine image may ship its own node+npm; only fall back to
# Debian's when there is none (the two conflict).
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
