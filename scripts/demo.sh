#!/usr/bin/env bash
# The main demo: installs Prosody when missing, then runs the quickstart,
# which starts a throwaway Prosody on a free loopback port.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v prosody >/dev/null 2>&1 || [ ! -e /usr/lib/x86_64-linux-gnu/lua/5.4/dbd/sqlite3.so ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends prosody lua-dbi-sqlite3 lua-unbound
fi
exec cargo run --example quickstart "$@"
