#!/usr/bin/env python3
"""Three palaver nodes on loopback, one private PostgreSQL, one private Redis, placement on:
conversations spread over the nodes and everyone hears everyone (decoded Opus).

palaver-load runs as three shards with one run id, so every group call gets one participant
through each node: shard 0 (WebRTC) through node-0, shard 1 (QUIC) through node-1, shard 2
(WebRTC) through node-2. A WebSocket reaching a node that is not the call's home is relayed
over the node mesh (mutual TLS) and its WebRTC media goes straight to the home's worker; a QUIC
participant is redirected to the home. Every participant talks (marker tones on a schedule
every shard computes) and decodes what it receives.

Checks:
- the three nodes announce themselves with their mesh and QUIC addresses;
- while the calls run, `cluster_homes` records homes on at least two nodes (power of two
  choices over the nodes' load);
- every participant of every shard joined, none was silent, and each shard heard the markers
  of the others (decoded audio; latency and first-audio figures printed);
- relays were timed on /metrics (`palaver_cluster_relay_latency_seconds`), and every node
  counts 3 live nodes (`palaver_cluster_nodes`).

Usage: three_nodes.py --binary PATH [--load-binary PATH]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

from cluster_fixture import cluster, registry, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "sdk"))
from support import check  # noqa: E402

ROOMS = 6
SECONDS = 8
TRANSPORTS = ["webrtc", "quic", "webrtc"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--load-binary")
    args = parser.parse_args()
    load_bin = args.load_binary or os.path.join(os.path.dirname(args.binary), "palaver-load")
    started = time.time()
    with cluster(args.binary, 3) as (pg, database, redis, nodes):
        names = [n.name for n in nodes]
        print("nodes: " + ", ".join(f"{n.name} {n.url} quic {n.quic} mesh {n.mesh}" for n in nodes))
        check("the three nodes announce themselves", wait_for(lambda: set(registry(redis)) == set(names), 10),
              registry(redis))
        announced = registry(redis)
        check("each announces its mesh and QUIC addresses",
              all(announced[n]["addresses"].get("mesh") and announced[n]["addresses"].get("quic") for n in names),
              announced)

        run_id = uuid.uuid4().hex
        out_dir = tempfile.mkdtemp(prefix="palaver-three-")
        shards = []
        for i, node in enumerate(nodes):
            report = os.path.join(out_dir, f"shard{i}.json")
            cmd = [load_bin, "--connection-string", node.conn_str, "--ca", node.ca,
                   "--room-kind", "group-call", "--rooms", str(ROOMS), "--participants", "3", "--talkers", "3",
                   "--decoding-listeners", "0", "--duration", str(SECONDS), "--ramp", "6", "--dtx", "false",
                   "--transport", TRANSPORTS[i], "--shard", f"{i}/3", "--run-id", run_id,
                   "--metrics-url", "none", "--no-progress", "--json", report]
            shards.append((report, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=sys.stderr)))

        # While the calls run: where their homes are.
        homes_seen = {}
        while any(p.poll() is None for _, p in shards):
            rows = pg.scalar(database, "SELECT home_node || '=' || count(*) FROM cluster_homes GROUP BY home_node")
            for row in rows.splitlines():
                node, _, count = row.partition("=")
                homes_seen[node] = max(homes_seen.get(node, 0), int(count))
            time.sleep(0.5)
        print(f"  homes per node while the calls ran (max seen): {homes_seen}")
        check("the group calls are homed on at least two nodes", len(homes_seen) >= 2, homes_seen)

        reports = []
        for i, (path, proc) in enumerate(shards):
            with open(path) as f:
                reports.append(json.load(f))
            r = reports[-1]
            p, a = r["participants"], r["audio"]
            first = r.get("firstAudioMs") or r.get("first_audio_ms") or {}
            lat = a.get("latencyMs") or a.get("latency_ms") or {}
            print(f"  shard {i} ({TRANSPORTS[i]} via {names[i]}): joined {p['joined']}/{p['planned']}, "
                  f"failed {p['failed']} {p['failures']}, silent {a.get('silentParticipants')}, "
                  f"markers heard {a.get('markersHeard')}/{a.get('markersSent')} sent, "
                  f"loss {a.get('lossPercent'):.2f} %, latency p50 {lat.get('p50')} ms, "
                  f"first audio p50 {first.get('p50')} max {first.get('max')} ms")
            check(f"shard {i}: every participant joined", p["joined"] == p["planned"] == ROOMS and p["failed"] == 0, p)
            check(f"shard {i}: no participant was silent", a.get("silentParticipants") == 0, a)
            check(f"shard {i}: the other nodes' talkers were decoded", (a.get("markersHeard") or 0) > 0, a)
            check(f"shard {i}: palaver-load exited 0", proc.returncode == 0, proc.returncode)

        relays = sum(n.metric("palaver_cluster_relay_latency_seconds_count") or 0 for n in nodes)
        check("relays went over the mesh and were timed", relays > 0, relays)
        for node in nodes:
            check(f"{node.name} counts 3 live nodes", node.metric("palaver_cluster_nodes") == 3,
                  node.metric("palaver_cluster_nodes"))
    print(f"three_nodes: all checks passed in {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
