#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ one after the other and prints a
# summary. Not part of CI (needs a nightly toolchain; takes minutes).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 300; the targets default to all of them:
#   payload_decoder     <payload/> XML -> RawPayload -> typed event
#   stanza_to_delivery  <message/> XML -> notification items / direct event -> Delivery
#   event_round_trip    arbitrary typed events and headers -> XML -> back (structured)
#
# The properties checked are documented in bus/src/fuzzing.rs. Each target
# starts from fuzz/seeds/TARGET (hand-written, committed) and
# fuzz/regressions/TARGET (inputs that once failed, committed) and grows
# fuzz/corpus/TARGET (generated, ignored by git). A failing input lands in
# fuzz/artifacts/TARGET/; reproduce it with
#   cargo +nightly fuzz run -a TARGET fuzz/artifacts/TARGET/crash-...
# shrink it with `cargo +nightly fuzz tmin -a TARGET FILE`, then copy it to
# fuzz/regressions/TARGET/ so that `cargo test -p xbus --lib fuzzing`
# replays it on stable (XML targets).
#
# Environment: FUZZ_ARGS adds libFuzzer flags (e.g. FUZZ_ARGS=-seed=1).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds=${1:-300}
shift || true
case $seconds in
  '' | *[!0-9]*)
    echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
    ;;
esac
if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=(payload_decoder stanza_to_delivery event_round_trip)
fi

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "cargo-fuzz needs a nightly toolchain: rustup toolchain install nightly" >&2
  exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

mkdir -p fuzz/logs
echo "== building the fuzz targets (nightly, ASan, debug assertions)"
for target in "${targets[@]}"; do
  cargo +nightly fuzz build -a "$target"
done
summary=()
failed=0
for target in "${targets[@]}"; do
  corpus=fuzz/corpus/$target
  artifacts=fuzz/artifacts/$target
  mkdir -p "$corpus" "$artifacts"
  inputs=("$corpus")
  for dir in fuzz/seeds/$target fuzz/regressions/$target; do
    [ -d "$dir" ] && inputs+=("$dir")
  done
  flags=(
    -max_total_time="$seconds"
    -print_final_stats=1
    -timeout=10            # a slow input is a finding too
    -malloc_limit_mb=256   # one allocation this big from a few KB is a finding
    -artifact_prefix="$root/$artifacts/"
  )
  case $target in
    payload_decoder | stanza_to_delivery)
      # XML inputs: room for payloads over the 1 KiB limit of the simulated bus.
      flags+=(-max_len=8192 -dict="$root/fuzz/dicts/xml.dict")
      ;;
    *)
      [ -f "fuzz/dicts/$target.dict" ] && flags+=(-dict="$root/fuzz/dicts/$target.dict")
      ;;
  esac
  # shellcheck disable=SC2206 # FUZZ_ARGS is split on purpose
  flags+=(${FUZZ_ARGS:-})
  before=$(find "$artifacts" -type f ! -name 'slow-unit-*' | wc -l)
  log=fuzz/logs/$target.log
  echo "== $target: ${seconds}s (log: $log)"
  set +e
  cargo +nightly fuzz run -a "$target" "${inputs[@]}" -- "${flags[@]}" 2>&1 | tee "$log" |
    grep --line-buffered -E '^#[0-9]+[[:space:]]+(INITED|pulse|DONE)|==ERROR|panicked|SUMMARY|^artifact_prefix|Test unit written'
  status=${PIPESTATUS[0]}
  set -e
  after=$(find "$artifacts" -type f ! -name 'slow-unit-*' | wc -l)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+[[:space:]]' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([^ ]*\).*/\1/p' <<<"$last")
  crashes=$((after - before))
  if [ "$status" -ne 0 ] || [ "$crashes" -gt 0 ]; then
    failed=1
    verdict="FAILED (exit $status, $crashes new artifact(s) in $artifacts)"
  else
    verdict=ok
  fi
  summary+=("$(printf '%-20s execs %-10s exec/s %-7s cov %-6s ft %-7s corpus %-12s rss %sMB  %s' \
    "$target" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "${rss:-?}" "$verdict")")
done

echo
echo "== summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
exit $failed
