#!/usr/bin/env bash
# Session 13: idle1000 over quic-srtp, one release binary resting vs ticking ([media.mixer] rest_when_silent = false).
set -u
cd /work/wt/perf
mkdir -p /work/targets/perf/bin
cp /work/targets/perf/release/palaver /work/targets/perf/bin/palaver-s13
cp /work/targets/perf/release/palaver-load /work/targets/perf/bin/palaver-load-s13
uptime
CARRIERS_NO_BUILD=1 CARRIERS_LOAD=/work/targets/perf/bin/palaver-load-s13 \
  CARRIERS_SERVERS="ticking=/work/targets/perf/bin/palaver-s13 resting=/work/targets/perf/bin/palaver-s13" \
  CARRIERS_TOML_ticking='[media.mixer]\nrest_when_silent = false' \
  CARRIERS_RUNS="idle1000:quic-srtp" CARRIERS_DURATION=12 \
  CARRIERS_OUT=/tmp/perf-ab-out scripts/quic_carriers.sh
uptime
