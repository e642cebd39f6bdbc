#!/usr/bin/env bash
# Issue #18: where a participant's memory goes. Starts one release `palaver` under heaptrack on
# free loopback ports, runs one palaver-load scenario against it, stops it, and prints the heap
# in use at its peak (the end of the steady window) by owner, per participant: QUIC connection
# (quinn, rustls), signaling (sessions, actors, frames), the media worker (transports, SRTP,
# router), the mixer (jitter buffers, Opus codecs), tokio (tasks, timers) and the rest.
# RSS (/proc) is printed beside it: RSS also holds freed memory glibc keeps per thread.
#
#   MEM_SERVER=target/release/palaver MEM_LOAD=target/release/palaver-load \
#     MEM_ARGS="--preset mixing3 --transport quic-srtp --duration 10" scripts/memory_breakdown.sh
#
# Env: MEM_SERVER, MEM_LOAD (binaries), MEM_ARGS (palaver-load flags), MEM_OUT (directory for
# the heaptrack file and the stacks, default a new temporary one).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
[[ -x ${MEM_SERVER:-} && -x ${MEM_LOAD:-} ]] || { echo "set MEM_SERVER and MEM_LOAD" >&2; exit 2; }
command -v heaptrack >/dev/null || { echo "heaptrack is not installed" >&2; exit 2; }
out=${MEM_OUT:-$(mktemp -d /tmp/palaver-memory.XXXXXX)}
work=$(mktemp -d /tmp/palaver-memory-server.XXXXXX)
mkdir -p "$work/data" "$out"
metrics_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf '[usage]\nmetrics_listen = "127.0.0.1:%s"\n' "$metrics_port" >"$work/palaver.toml"

heaptrack -o "$out/heaptrack.palaver" "$MEM_SERVER" --config "$work/palaver.toml" --data-dir "$work/data" \
    --listen 127.0.0.1:0 --log-level warn run >"$work/server.out" 2>"$work/server.err" &
tracker=$!
line() { sed -n "s/^$1 //p" "$work/server.out" | head -1; }
for _ in $(seq 1 600); do
    [[ -n $(line PALAVER_READY) ]] && break
    kill -0 "$tracker" 2>/dev/null || { cat "$work/server.err" >&2; exit 2; }
    sleep 0.1
done
[[ -n $(line PALAVER_READY) ]] || { echo "server not ready" >&2; kill "$tracker"; exit 2; }
server_pid=$(pgrep -P "$tracker" -n || echo "$tracker")
# heaptrack runs the server as its child (or itself, after exec): find the process with our config.
for pid in $(pgrep -f -- "--config $work/palaver.toml"); do
    [[ $(readlink "/proc/$pid/exe") == "$(readlink -f "$MEM_SERVER")" ]] && server_pid=$pid
done
idle_kb=$(awk '/^VmRSS/ {print $2}' "/proc/$server_pid/status")
echo "server pid $server_pid, idle RSS $idle_kb kB"
# shellcheck disable=SC2086
"$MEM_LOAD" --connection-string "$(line PALAVER_CONNECTION_STRING)" --ca "$(line PALAVER_CA_FILE)" \
    --metrics-url "http://127.0.0.1:$metrics_port/metrics" --server-pid "$server_pid" --no-progress \
    --json "$out/load.json" ${MEM_ARGS:-} | tail -5 || true
kill -TERM "$server_pid"
wait "$tracker" || true
rm -rf "$work"
file=$( (ls -t "$out"/heaptrack.palaver* 2>/dev/null || true) | grep -E "\.(zst|gz)$" | head -1)
heaptrack_print -f "$file" --flamegraph-cost-type peak -F "$out/peak.stacks" >/dev/null
python3 "$root/scripts/memory_breakdown.py" "$out/peak.stacks" "$out/load.json" "$idle_kb"
echo "heaptrack file: $file"
