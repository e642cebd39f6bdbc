#!/usr/bin/env bash
# Idle cost of a release server (issue 13, "Idle costs nothing"): CPU of the palaver process
# over a window (default 60 s), read from /proc/<pid>/stat (utime + stime, fields 14 and 15),
# printed as % of one core,
#   (a) started, no conversations;
#   (b) with N (default 50) joined but silent QUIC participants in one meeting
#       (palaver-load listeners: `--talkers 0`, they attach media and receive the mix).
# The server runs on 127.0.0.1 with free ports, its data in a temporary directory.
#
#   scripts/idle_cpu.sh                 # builds release palaver + palaver-load first
#   IDLE_WINDOW=60 IDLE_PARTICIPANTS=50 IDLE_NO_BUILD=1 scripts/idle_cpu.sh
#   IDLE_PROFILE=debug ...            # the debug binaries (a quick check of the script itself)
#
# Run it on a quiet machine: other processes' CPU does not count against the server, but
# scheduler and cache contention do. Uses CARGO_TARGET_DIR (default ./target).
set -euo pipefail

window=${IDLE_WINDOW:-60}
participants=${IDLE_PARTICIPANTS:-50}
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
profile=${IDLE_PROFILE:-release}
server_bin=$target/$profile/palaver
load_bin=$target/$profile/palaver-load

if [[ -z "${IDLE_NO_BUILD:-}" ]]; then
    if [[ $profile == release ]]; then build=(--release); else build=(); fi
    (cd "$root" && cargo build "${build[@]}" -p palaver -p palaver-load)
fi
[[ -x $server_bin && -x $load_bin ]] || { echo "missing $server_bin or $load_bin" >&2; exit 2; }

work=$(mktemp -d /tmp/palaver-idle.XXXXXX)
metrics_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/data"
printf '[usage]\nmetrics_listen = "127.0.0.1:%s"\n' "$metrics_port" >"$work/palaver.toml"

server_pid=""
load_pid=""
cleanup() {
    [[ -n $load_pid ]] && kill "$load_pid" 2>/dev/null || true
    if [[ -n $server_pid ]]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

"$server_bin" --config "$work/palaver.toml" --data-dir "$work/data" --listen 127.0.0.1:0 \
    --log-level warn run >"$work/server.out" 2>"$work/server.err" &
server_pid=$!

line() { sed -n "s/^$1 //p" "$work/server.out" | head -1; }
for _ in $(seq 1 300); do
    [[ -n $(line PALAVER_READY) ]] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.err" >&2; exit 2; }
    sleep 0.1
done
[[ -n $(line PALAVER_READY) ]] || { echo "server not ready after 30 s" >&2; exit 2; }

# utime + stime of the server in clock ticks (fields 14 and 15; skip the comm field, which
# may hold spaces, by cutting at its closing parenthesis).
ticks() { sed 's/.*) //' "/proc/$server_pid/stat" | awk '{print $12 + $13}'; }
hz=$(getconf CLK_TCK)

# Prints "<ticks> ticks = <percent> % of a core" for a window starting now.
measure() {
    local t0 t1
    t0=$(ticks)
    sleep "$window"
    t1=$(ticks)
    awk -v d=$((t1 - t0)) -v hz="$hz" -v w="$window" \
        'BEGIN { printf "%d ticks over %d s = %.3f %% of a core\n", d, w, 100 * d / hz / w }'
}

participants_joined() {
    curl -s "http://127.0.0.1:$metrics_port/metrics" |
        awk '/^palaver_participants\{/ { n += $2 } END { print n + 0 }'
}

sleep 5 # start-up work (migrations, first timers) is not idle cost
echo "palaver ($profile) $(line PALAVER_READY) pid $server_pid, window ${window} s, CLK_TCK $hz"
echo "(a) no conversations: $(measure)"

"$load_bin" --connection-string "$(line PALAVER_CONNECTION_STRING)" --ca "$(line PALAVER_CA_FILE)" \
    --preset smoke --rooms 1 --participants "$participants" --talkers 0 --room-kind meeting \
    --ramp 25 --duration $((window + 30)) --metrics-url none >"$work/load.out" 2>&1 &
load_pid=$!
for _ in $(seq 1 120); do
    [[ $(participants_joined) -ge $participants ]] && break
    kill -0 "$load_pid" 2>/dev/null || { cat "$work/load.out" >&2; exit 2; }
    sleep 0.5
done
joined=$(participants_joined)
[[ $joined -ge $participants ]] || { echo "only $joined of $participants joined" >&2; cat "$work/load.out" >&2; exit 2; }
sleep 3 # let the joins' slot planning and first keyframe requests settle
echo "(b) $joined joined silent QUIC participants: $(measure)"
wait "$load_pid" || echo "palaver-load exited with $? (see its report below)" >&2
load_pid=""
tail -n 30 "$work/load.out"
