#!/usr/bin/env python3
"""Issue #18: fold the JSON reports of `scripts/quic_carriers.sh` (named
`<preset>-<transport>[-<flags>]--<server label>.json`, each beside its `.idle-rss-kb`) into the
README's performance table, one Markdown row per run, the builds of one shape and transport
next to each other.

Columns: participants joined / planned; audio loss and the worst listener's received share;
server CPU in cores; µs of server CPU per participant-second (user + kernel); participants per
core at that cost; µs per packet handled (in + out) and per packet sent, each user + kernel;
kernel UDP receive drops; mixer overruns; the tester's own CPU in cores; memory per participant
(RSS at the window's end minus the fresh server's idle RSS, over the participants).

    python3 scripts/perf_table.py /tmp/palaver-carriers.XXXXXX
"""

import json
import pathlib
import sys


def split(total, kernel):
    """'t (u + k)' with the user part derived from the total and the kernel part."""
    if total is None:
        return "-"
    if kernel is None:
        return f"{total:,.2f}" if total < 100 else f"{total:,.0f}"
    user = total - kernel
    if total < 100:
        return f"{total:.2f} ({user:.2f} + {kernel:.2f})"
    return f"{total:,.0f} ({user:,.0f} + {kernel:,.0f})"


def row(path):
    name, _, label = path.stem.partition("--")
    report = json.loads(path.read_text())
    server = report.get("server") or {}
    audio = report.get("audio") or {}
    people = report.get("participants") or {}
    n = server.get("runParticipants") or server.get("participants") or 0
    us = server.get("cpuUsPerParticipantSecond")
    idle = path.with_suffix(".idle-rss-kb")
    memory = "-"
    if idle.exists() and n and server.get("residentMbEnd"):
        memory = f"{(server['residentMbEnd'] * 1024 - int(idle.read_text())) / n:.1f}"
    worst = audio.get("worstStreamReceivedPercent")
    received = f"{audio.get('lossPercent', 0):.3f} / {worst:.2f}" if worst is not None else "- / -"
    tester = server.get("testerCpuCores")
    return [
        report.get("scenario", {}).get("name", name),
        report.get("transport", "?"),
        label,
        f"{people.get('joined', 0)}/{people.get('planned', 0)}",
        received,
        f"{server.get('cpuCores', 0):.3f}",
        split(us, server.get("kernelUsPerParticipantSecond")),
        f"{1e6 / us:,.0f}" if us else "-",
        split(server.get("cpuUsPerPacketHandled"), server.get("kernelUsPerPacketHandled")),
        split(server.get("cpuUsPerForwardedPacket"), server.get("kernelUsPerForwardedPacket")),
        f"{server.get('udpReceiveDrops', 0):.0f}",
        f"{server.get('mixerOverruns', 0):.0f}",
        f"{tester:.3f}" if tester is not None else "-",
        memory,
    ]


HEADER = [
    "shape",
    "transport",
    "build",
    "joined",
    "loss % / worst stream %",
    "server cores",
    "µs per participant-s (user + kernel)",
    "participants per core",
    "µs per packet in+out (user + kernel)",
    "µs per sent packet (user + kernel)",
    "UDP drops",
    "mixer overruns",
    "tester cores",
    "KB per participant",
]


def main():
    out = pathlib.Path(sys.argv[1])
    paths = sorted(out.glob("*.json"), key=lambda p: p.stat().st_mtime)
    if not paths:
        print(f"no reports in {out}", file=sys.stderr)
        return 1
    # Group by run (everything before "--"), in the order the runs were made.
    order = []
    for p in paths:
        run = p.stem.partition("--")[0]
        if run not in order:
            order.append(run)
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for run in order:
        for p in (p for p in paths if p.stem.partition("--")[0] == run):
            print("| " + " | ".join(row(p)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
