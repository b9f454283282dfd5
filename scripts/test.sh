#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs the XMPP servers the
# integration tests start and nats-server (when missing), then fmt, clippy,
# docs, `cargo package`, a user's build on the newest dependencies, and
# every test.
#
# The integration tests run against every server in XBUS_TEST_SERVERS
# (comma-separated; unset: the harness's default, embedded,prosody,ejabberd,ejabberd-cluster). Both
# servers are installed whatever the list says: the harness's own tests
# cover every server kind it offers.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v prosody >/dev/null 2>&1 || need+=(prosody)
[ -e /usr/lib/x86_64-linux-gnu/lua/5.4/dbd/sqlite3.so ] || need+=(lua-dbi-sqlite3)
# sqlite3: the harness creates Prosody's database in WAL mode (Storage::Tuned).
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
# ejabberd (Debian's package also brings Erlang and creates user ejabberd;
# its daemon does not start without an init system, and the tests start
# their own).
command -v ejabberdctl >/dev/null 2>&1 || need+=(ejabberd)
# nats-server: the peer the benchmark (bench/, xbus-bench) compares with; its driver's tests start one.
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need+=(nats-server)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]} (Debian packages)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" lua-unbound
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo doc (broken links are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
echo "== cargo package (the publishable crates, xbus-macros resolved from the workspace)"
cargo package -p xbus-macros -p xbus -p xbus-server --allow-dirty --quiet
echo "== user build (a new crate on xbus, newest compatible dependencies, warnings denied)"
scripts/user-build.sh
echo "== slixmpp venv for the interop test (target/slixmpp-venv)"
scripts/slixmpp-venv.sh
# --no-fail-fast: one failing test binary does not hide the others'
# results; the exit status is still a failure.
echo "== cargo test (servers: ${XBUS_TEST_SERVERS:-default})"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole workspace (the last per-crate line is
# often a doc-test run with 0 tests).
passed=$(grep -oE '^test result: .* ([0-9]+) passed' "$log" | grep -oE '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -oE '^test result: .* ([0-9]+) failed' "$log" | grep -oE '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
echo
echo "total: ${passed} passed, ${failed} failed"
exit "$status"
