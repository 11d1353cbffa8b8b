#!/usr/bin/env bash
# What archiving costs the message scenario: see bench/setting_cost.sh.
exec "$(dirname "$0")/setting_cost.sh" --what archive "$@"
