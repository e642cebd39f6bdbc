#!/usr/bin/env bash
# Session 13 (#18 idle goal): idle1000 over QUIC (SRTP carrier) against one release server binary
# run twice, `ticking` ([media.mixer] rest_when_silent = false) then `resting` (the default), so the
# resting rooms' saving is measured without a second build (docs/load.md "Session 13").
#
#   IDLE_SERVER=target/release/palaver IDLE_LOAD=target/release/palaver-load scripts/perf_idle_ab.sh
#
# Env: IDLE_SERVER, IDLE_LOAD (binaries), IDLE_DURATION (s, default 12), IDLE_OUT (report dir).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[[ -x ${IDLE_SERVER:-} && -x ${IDLE_LOAD:-} ]] || { echo "set IDLE_SERVER and IDLE_LOAD" >&2; exit 2; }
uptime
CARRIERS_NO_BUILD=1 CARRIERS_LOAD=$IDLE_LOAD \
    CARRIERS_SERVERS="ticking=$IDLE_SERVER resting=$IDLE_SERVER" \
    CARRIERS_TOML_ticking='[media.mixer]\nrest_when_silent = false' \
    CARRIERS_RUNS="idle1000:quic-srtp" CARRIERS_DURATION=${IDLE_DURATION:-12} \
    CARRIERS_OUT=${IDLE_OUT:-$(mktemp -d /tmp/palaver-idle.XXXXXX)} "$root/scripts/quic_carriers.sh"
uptime
