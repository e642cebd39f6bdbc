#!/usr/bin/env bash
# Runs fuzz targets for a time each and prints one summary line per target (executions,
# seconds, crashes/timeouts/OOMs). Usage: fuzz/run.sh SECONDS [TARGET...] (default: all).
# New corpus entries go to fuzz/target/corpus/<target> (not committed); the committed seeds in
# fuzz/corpus/<target> are read only. A crash leaves its input in fuzz/artifacts/<target>/
# and makes this script fail. Needs cargo-fuzz (the Makefile installs it) and a C++ compiler.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
export RUSTC_BOOTSTRAP=1 # cargo-fuzz needs -Zsanitizer / -Cpasses on the stable toolchain
unset CARGO_TARGET_DIR   # the fuzz crate builds in fuzz/target with its own flags
# The bundled SQLite (via palaver-signaling) defines two static arrays named aiOff, which
# ASan's ODR check reports as a violation at start-up; it is not one (they are file-local).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_odr_violation=0}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
cargo fuzz build >/dev/null
mkdir -p fuzz/target/logs
status=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/target/corpus/$t" "fuzz/corpus/$t"
  log="fuzz/target/logs/$t.log"
  start=$(date +%s)
  if cargo fuzz run "$t" "fuzz/target/corpus/$t" "fuzz/corpus/$t" -- \
      -fork=1 -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=65536 >"$log" 2>&1; then
    result=ok
  else
    result=FAILED
    status=1
  fi
  took=$(( $(date +%s) - start ))
  # Fork mode's progress lines: "#<execs>: cov: ... oom/timeout/crash: a/b/c time: ...".
  last=$(grep -E '^#[0-9]+: cov:' "$log" | tail -n 1 || true)
  execs=$(sed -E 's/^#([0-9]+):.*/\1/' <<<"$last")
  faults=$(sed -E 's/.*oom\/timeout\/crash: ([0-9]+\/[0-9]+\/[0-9]+).*/\1/' <<<"$last")
  cov=$(sed -E 's/.*cov: ([0-9]+).*/\1/' <<<"$last")
  printf '%-16s %-6s execs=%-10s seconds=%-5s cov=%-6s oom/timeout/crash=%s\n' \
    "$t" "$result" "${execs:-0}" "$took" "${cov:-?}" "${faults:-?}"
  [ "$result" = ok ] || tail -n 30 "$log"
done
exit $status
