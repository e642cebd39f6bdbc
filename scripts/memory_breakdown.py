#!/usr/bin/env python3
"""Heap at its peak by owner, per participant (scripts/memory_breakdown.sh).

Reads heaptrack's peak flame-graph stacks ("frame;frame;... bytes", outermost first), puts each
stack under the first owner whose pattern one of its frames matches (innermost first, so the
code that asked for the memory decides), and prints bytes and bytes per participant."""

import json
import re
import sys

# (owner, frame pattern); the first match from the innermost frame outwards wins.
OWNERS = [
    ("mixer: jitter buffers", r"mixer::jitter"),
    ("mixer: Opus codecs (decoders, encoders)", r"opus_(en|de)coder_create|opus::(Encoder|Decoder)::new|mixer::codec"),
    ("mixer: the rest (rooms, outputs)", r"palaver_sfu::mixer"),
    ("media worker: SRTP contexts", r"palaver_sfu::srtp|webrtc_srtp"),
    ("media worker: router (producers, consumers, packet caches)", r"palaver_sfu::router"),
    ("media worker: engine (transports, mix outputs, queues)", r"palaver_sfu::(engine|net|control)"),
    ("QUIC: TLS (rustls)", r"rustls"),
    ("QUIC: connection state (quinn)", r"quinn"),
    ("signaling (sessions, conversations, frames)", r"palaver_signaling|palaver_server::quic"),
    ("billing, events, stores", r"palaver_(billing|events|legs)|rusqlite|sqlite3"),
    ("tokio (tasks, timers, channels)", r"tokio::"),
]


def owner_of(frames):
    for frame in reversed(frames):
        for owner, pattern in OWNERS:
            if re.search(pattern, frame):
                return owner
    return "other (allocator, std, libraries)"


def main():
    stacks, report, idle_kb = sys.argv[1], sys.argv[2], int(sys.argv[3])
    totals = {}
    with open(stacks) as f:
        for line in f:
            path, _, cost = line.rstrip("\n").rpartition(" ")
            if not cost.isdigit():
                continue
            owner = owner_of(path.split(";"))
            totals[owner] = totals.get(owner, 0) + int(cost)
    with open(report) as f:
        data = json.load(f)
    server = data.get("server") or {}
    participants = int(server.get("runParticipants") or server.get("participants") or 0)
    rss_kb = (server.get("residentMbEnd") or 0) * 1024
    total = sum(totals.values())
    growth = (rss_kb - idle_kb) / participants if participants else 0
    print(f"participants: {participants}; idle RSS {idle_kb} kB; RSS at the end: {rss_kb:.0f} kB "
          f"({growth:.1f} KB per participant); heap at its peak: {total / 1024:.0f} kB")
    print("| owner | heap at peak (KB) | KB per participant |")
    print("|---|---:|---:|")
    for owner, cost in sorted(totals.items(), key=lambda kv: -kv[1]):
        per = cost / participants / 1024 if participants else 0
        print(f"| {owner} | {cost / 1024:,.0f} | {per:.1f} |")
    per = total / participants / 1024 if participants else 0
    print(f"| **all** | {total / 1024:,.0f} | {per:.1f} |")


if __name__ == "__main__":
    main()
