#!/usr/bin/env bash
# Runs fuzz targets for a time each and prints one summary line per target (executions,
# seconds, crashes/timeouts/OOMs). Usage: fuzz/run.sh SECONDS [TARGET...] (default: all).
# New corpus entries go to <target dir>/corpus/<target> (not committed); the committed seeds in
# fuzz/corpus/<target> are read only. A crash leaves its input in fuzz/artifacts/<target>/
# and makes this script fail. Needs cargo-fuzz (the Makefile installs it) and a C++ compiler.
#
# Environment:
#   FUZZ_TARGET_DIR  where the instrumented build goes (default fuzz/target); keep it between
#                    runs: the first build of every dependency with coverage instrumentation
#                    (and ASan) is the slow part, later builds only redo palaver's crates.
#   FUZZ_SANITIZER   address (default) or none (coverage only: faster to build and run).
#   FUZZ_FORK        1 (default): libFuzzer's fork mode, which survives and counts OOMs and
#                    timeouts; 0: one in-process run (the smoke stage of `make test`).
#   FUZZ_DEV         1: an unoptimised build (quick to compile, slow to run: for smoke runs).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
export RUSTC_BOOTSTRAP=1 # cargo-fuzz needs -Zsanitizer / -Cpasses on the stable toolchain
unset CARGO_TARGET_DIR   # the fuzz crate builds with its own flags, in FUZZ_TARGET_DIR
target_dir=${FUZZ_TARGET_DIR:-fuzz/target}
sanitizer=${FUZZ_SANITIZER:-address}
fork=${FUZZ_FORK:-1}
# The bundled SQLite (via palaver-signaling) defines two static arrays named aiOff, which
# ASan's ODR check reports as a violation at start-up; it is not one (they are file-local).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_odr_violation=0}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
build=(--target-dir "$target_dir" --sanitizer "$sanitizer")
[ "${FUZZ_DEV:-0}" = 1 ] && build+=(--dev)
cargo fuzz build "${build[@]}" >/dev/null
mkdir -p "$target_dir/logs"
status=0
for t in "${targets[@]}"; do
  mkdir -p "$target_dir/corpus/$t" "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log="$target_dir/logs/$t.log"
  start=$(date +%s)
  if [ "$fork" = 1 ]; then mode=(-fork=1); else mode=(-print_final_stats=1); fi
  if cargo fuzz run "${build[@]}" "$t" "$target_dir/corpus/$t" "fuzz/corpus/$t" -- \
      "${mode[@]}" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=65536 >"$log" 2>&1; then
    result=ok
  else
    result=FAILED
    status=1
  fi
  took=$(( $(date +%s) - start ))
  if [ "$fork" = 1 ]; then
    # Fork mode's progress lines: "#<execs>: cov: ... oom/timeout/crash: a/b/c time: ...".
    last=$(grep -E '^#[0-9]+: cov:' "$log" | tail -n 1 || true)
    execs=$(sed -E 's/^#([0-9]+):.*/\1/' <<<"$last")
    faults=$(sed -E 's/.*oom\/timeout\/crash: ([0-9]+\/[0-9]+\/[0-9]+).*/\1/' <<<"$last")
    cov=$(sed -E 's/.*cov: ([0-9]+).*/\1/' <<<"$last")
  else
    # In-process: "stat::number_of_executed_units: N" and the last "#N ... cov: C" line.
    execs=$(sed -nE 's/^stat::number_of_executed_units: ([0-9]+)/\1/p' "$log" | tail -n 1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1 | sed -E 's/cov: //' || true)
    faults=$([ "$result" = ok ] && echo 0/0/0 || echo "see log")
  fi
  printf '%-16s %-6s execs=%-10s seconds=%-5s cov=%-6s oom/timeout/crash=%s\n' \
    "$t" "$result" "${execs:-0}" "$took" "${cov:-?}" "${faults:-?}"
  [ "$result" = ok ] || tail -n 30 "$log"
done
exit $status
