#!/usr/bin/env bash
# Creates (idempotently) the Python venv of the slixmpp interoperability test
# at target/slixmpp-venv, with the exact versions pinned in
# integration-tests/slixmpp/requirements.txt, and prints its python's path.
# Fast when the venv already has them: it reinstalls only when the pins change.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/target/slixmpp-venv"
requirements="$root/integration-tests/slixmpp/requirements.txt"
python="$venv/bin/python"
stamp="$venv/.xbus-requirements"

if [ -x "$python" ] && [ -f "$stamp" ] && cmp -s "$requirements" "$stamp"; then
  echo "$python"
  exit 0
fi

command -v python3 >/dev/null 2>&1 || {
  echo "slixmpp-venv: python3 not found; install it (apt-get install -y python3 python3-venv)" >&2
  exit 1
}
if [ ! -x "$python" ]; then
  mkdir -p "$root/target"
  python3 -m venv "$venv" || {
    echo "slixmpp-venv: 'python3 -m venv' failed; on Debian: apt-get install -y python3-venv" >&2
    rm -rf "$venv"
    exit 1
  }
fi
PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
  "$python" -m pip install --quiet --no-cache-dir -r "$requirements" >&2
"$python" -c 'import slixmpp, msgpack' >&2
cp "$requirements" "$stamp"
echo "$python"
