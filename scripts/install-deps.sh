#!/usr/bin/env bash
# Installs every Debian package nines needs to build, test and run.
# Idempotent; run as root on Debian 12. Network: Debian mirrors only.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config clang clang-format clang-tidy
  libfuzzer-14-dev libclang-rt-14-dev
  # libraries (see docs/architecture.md for why each is here)
  libboost1.81-dev libssl-dev nettle-dev libexpat1-dev libsqlite3-dev libicu-dev
  libtomlplusplus-dev libcli11-dev libspdlog-dev libfmt-dev libpq-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # the PostgreSQL store's tests run against a throwaway PostgreSQL 15 (scripts/pg-scratch.sh)
  postgresql-15
  # protocol tests
  python3 python3-slixmpp python3-openssl openssl procps
)
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
