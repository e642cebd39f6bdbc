#!/usr/bin/env python3
"""Media of a 1:1 call whose ring crossed nodes: two palaver nodes sharing a private PostgreSQL
and Redis (cluster_fixture.py). Alice is a QUIC client (`call_probe`, palaver-client) on
node-0, Bob a QUIC client on node-1; Alice calls Bob, so the call runs on node-0 (the caller's
node) and Bob is rung and answers on node-1 (docs/cluster-rings.md).

Bob's `media.attach` for the call on node-1 is answered `redirect` with node-0's QUIC address;
his client connects there, attaches the call's media on the new connection and closes the one
on node-1 (`QuicClient::attach_call_media_following`). Before the fix that attach was refused
`InvalidState` ("QUIC media cannot follow it") and nobody heard anything.

Checks: the call rings Bob on node-1 and connects; Alice's media stays on node-0, Bob's is
redirected to node-0; each decodes the other's tone (Alice sends 440 Hz and listens for 660 Hz,
Bob the reverse: the Goertzel amplitude of the other's frequency in 100 ms of decoded audio);
after the move Bob's presence is node-0 only; Alice's hang-up reaches Bob (`call.ended`); the
billing oracle: each party has one closed usage session for the call (`<callId>/<raw id>`)
with exactly one usage record spanning it. Prints the figures (ring, redirect, first audio).

The same with Bob as a WebRTC client (`call_probe --web`, webrtc-rs) on node-1: his socket stays
on node-1, his `media.offer` for the call is forwarded to node-0, whose answer names node-0's
worker, and the media flows straight between Bob and node-0.

Then Bob on WebRTC once more, whose connection drops: his probe is killed (SIGKILL: the socket
closes, no `call.hangUp`) while the call runs. Once node-1's reconnect grace
(`RECONNECT_GRACE_MS`) is over node-1 tells node-0 that Bob's sockets are gone, and node-0 ends
his part as for a socket lost on node-0: Alice gets `call.ended` (`ConnectionLost`) within
`DROP_BOUND_MS` of the kill, and each party has one closed usage record. The QUIC runs wait past
the grace before hanging up: Bob's closed node-1 connection must not end a call his QUIC media
followed to node-0.

Usage: calls.py --binary PATH [--probe PATH] [--runs N] [--no-webrtc] [--no-drop]
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

from cluster_fixture import cluster, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "sdk"))
from azure.communication.identity import CommunicationIdentityClient, CommunicationTokenScope  # noqa: E402
from support import check  # noqa: E402

WAIT_S = 20.0
# The nodes' reconnect grace (default 30 s): how long a dropped callee's part outlives its socket.
RECONNECT_GRACE_MS = 2000
# Kill of Bob's WebRTC probe → Alice's call.ended: the grace plus the bus round trip.
DROP_BOUND_MS = RECONNECT_GRACE_MS + 2000


class CallProbe:
    """One call_probe process; its JSON events are collected by a reader thread."""

    def __init__(self, binary, ca, token, node, tone, expect, call=None):
        """`node`: a QUIC address, or an `https://` URL for a WebRTC party."""
        where = ["--web", node] if node.startswith("https://") else ["--node", node]
        cmd = [binary, "--ca", ca, "--token", token, *where, "--tone", str(tone), "--expect", str(expect),
               "--seconds", "60"]
        if call:
            cmd += ["--call", call]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        self.events = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.events.append(e)

    def first(self, name):
        with self.lock:
            return next((e for e in self.events if e["event"] in (name, "failed")), None)

    def wait(self, name, seconds=WAIT_S):
        e = wait_for(lambda: self.first(name), seconds)
        return e if e and e["event"] == name else None

    def kill(self):
        """Drop the connection: SIGKILL, so the socket closes without a hang-up."""
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("stop\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def billed(pg, database, session_id):
    """(count of records, summed ms, session span ms) of a closed session, or None."""
    closed = wait_for(lambda: pg.scalar(database, f"SELECT count(*) FROM sessions WHERE session_id = '{session_id}' "
                                                  "AND end_ms IS NOT NULL") == "1", 10)
    if not closed:
        return None
    span = int(pg.scalar(database, f"SELECT end_ms - start_ms FROM sessions WHERE session_id = '{session_id}'"))
    wait_for(lambda: pg.scalar(database, "SELECT count(*) FROM usage_records "
                                         f"WHERE participant_id = '{session_id}'") != "0", 10)
    row = pg.scalar(database, "SELECT count(*) || ' ' || coalesce(sum(end_ms - start_ms), 0) FROM usage_records "
                              f"WHERE participant_id = '{session_id}'")
    count, total = (int(x) for x in row.split())
    return count, total, span


def one_call(run, probe_bin, pg, database, redis, a, b, alice, bob, web=False, drop=False):
    """Alice (QUIC, node-0) calls Bob (QUIC, or WebRTC when `web`, on node-1)."""
    if drop:
        # The grace timers of the previous run's closed sockets run out first, so the figure is
        # this drop's own (a timer that finds Bob with no socket ends his part, as on one node).
        time.sleep(RECONNECT_GRACE_MS / 1000 + 0.5)
    for raw in (alice[0], bob[0]):
        free = wait_for(lambda: redis.cli("EXISTS", f"palaver:engaged:{raw}") == "0", 5)
        check(f"run {run}: {raw} is in no call (the last one's engagement is gone)", free, raw)
    bob_probe = CallProbe(probe_bin, b.ca, bob[1], b.url.rstrip("/") if web else b.quic, 660, 440)
    check(f"run {run}: Bob's probe is connected to node-1", bob_probe.wait("ready"), bob_probe.events)
    presence = lambda: set(redis.cli("SMEMBERS", f"palaver:presence:{bob[0]}").split())  # noqa: E731
    check(f"run {run}: Bob's presence is node-1", wait_for(lambda: presence() == {b.name}, 5), presence())
    alice_probe = CallProbe(probe_bin, a.ca, alice[1], a.quic, 440, 660, call=bob[0])
    try:
        return checked_call(run, pg, database, redis, a, b, alice, bob, web, alice_probe, bob_probe, presence, drop)
    finally:
        alice_probe.stop()
        bob_probe.stop()


def checked_call(run, pg, database, redis, a, b, alice, bob, web, alice_probe, bob_probe, presence, drop):
    dropped_ms = None
    try:
        placed = alice_probe.wait("placed")
        check(f"run {run}: Alice's call is placed on node-0", placed, alice_probe.events)
        incoming = bob_probe.wait("incoming")
        check(f"run {run}: the call rings Bob on node-1", incoming and incoming["callId"] == placed["callId"],
              bob_probe.events)
        for name, p in (("Alice", alice_probe), ("Bob", bob_probe)):
            check(f"run {run}: {name}'s call connects", p.wait("connected"), p.events)
        a_att, b_att = alice_probe.wait("attached"), bob_probe.wait("attached")
        check(f"run {run}: Alice's media is attached on node-0, not redirected",
              a_att and a_att["node"] == a.quic and not a_att["redirected"], alice_probe.events)
        if web:
            check(f"run {run}: Bob's WebRTC offer is answered through node-1 (his socket stays there)",
                  b_att and b_att["node"] == b.url.rstrip("/") and not b_att["redirected"], bob_probe.events)
        else:
            check(f"run {run}: Bob's media is redirected to the call's node, node-0",
                  b_att and b_att["node"] == a.quic and b_att["redirected"], bob_probe.events)
        a_audio, b_audio = alice_probe.wait("audio"), bob_probe.wait("audio")
        check(f"run {run}: Bob decodes Alice's 440 Hz", b_audio, bob_probe.events)
        check(f"run {run}: Alice (node-0) decodes Bob's 660 Hz", a_audio, alice_probe.events)
        where = {b.name} if web else {a.name}
        moved = "his socket stayed there" if web else "his QUIC client moved to the call's node"
        check(f"run {run}: Bob's presence is {sorted(where)} ({moved})",
              wait_for(lambda: presence() == where, 5), presence())
        if not web:
            # Node-1 tells node-0 Bob's node-1 socket is gone; node-0 still has him connected.
            time.sleep((RECONNECT_GRACE_MS + 1000) / 1000)
            check(f"run {run}: the call outlives Bob's closed node-1 connection (his QUIC client is on node-0)",
                  not alice_probe.first("ended") and not bob_probe.first("ended"),
                  (alice_probe.events, bob_probe.events))
        if drop:
            killed_ms = time.time() * 1000
            bob_probe.kill()
            ended = alice_probe.wait("ended", (DROP_BOUND_MS + 5000) / 1000)
            check(f"run {run}: Bob's dropped connection on node-1 ends the call for Alice on node-0",
                  ended and ended["reason"] == "ConnectionLost", alice_probe.events)
            dropped_ms = ended["at_ms"] - killed_ms
            check(f"run {run}: after the grace, within {DROP_BOUND_MS} ms of the drop (grace {RECONNECT_GRACE_MS} ms)",
                  RECONNECT_GRACE_MS <= dropped_ms <= DROP_BOUND_MS, dropped_ms)
    finally:
        alice_probe.stop()
    if not drop:
        ended = bob_probe.wait("ended", 10)
        check(f"run {run}: Alice's hang-up reaches Bob (call.ended)", ended, bob_probe.events)
    bob_probe.stop()
    figures = {
        "ring_ms": incoming["at_ms"] - placed["at_ms"],
        "redirect_ms": b_att["at_ms"] - bob_probe.first("connected")["at_ms"],
        "bob_hears_ms": b_audio["afterAttachMs"],
        "alice_hears_ms": a_audio["at_ms"] - a_att["at_ms"],
        "amplitudes": (b_audio["amplitude"], a_audio["amplitude"]),
        "dropped_ms": dropped_ms,
    }
    for name, raw in (("Alice", alice[0]), ("Bob", bob[0])):
        session = f"{placed['callId']}/{raw}"
        got = billed(pg, database, session)
        check(f"run {run}: {name}'s call session is closed and billed once", got and got[0] == 1 and got[1] == got[2],
              (session, got))
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--probe")
    parser.add_argument("--runs", type=int, default=2, help="calls with a QUIC callee")
    parser.add_argument("--no-webrtc", action="store_true", help="skip the calls with a WebRTC callee")
    parser.add_argument("--no-drop", action="store_true", help="skip the call whose WebRTC callee drops")
    args = parser.parse_args()
    probe_bin = args.probe or os.path.join(os.path.dirname(args.binary), "examples", "call_probe")
    started = time.time()
    grace = f"[signaling.gateway]\nreconnect_grace_ms = {RECONNECT_GRACE_MS}\n"
    with cluster(args.binary, 2, extra=grace) as (pg, database, redis, nodes):
        a, b = nodes
        identity = CommunicationIdentityClient.from_connection_string(a.conn_str, connection_verify=a.ca)
        users = []
        for _ in range(2):
            user, token = identity.create_user_and_token(scopes=[CommunicationTokenScope.VOIP])
            users.append((user.properties["id"], token.token))
        for run in range(1, args.runs + 1):
            f = one_call(run, probe_bin, pg, database, redis, a, b, users[0], users[1])
            print(f"  run {run} (QUIC callee): rang node-1 in {f['ring_ms']} ms; Bob's media redirected to node-0 "
                  f"{f['redirect_ms']} ms after call.connected; Bob heard Alice {f['bob_hears_ms']} ms and Alice "
                  f"heard Bob {f['alice_hears_ms']} ms after attaching (tone amplitudes {f['amplitudes'][0]:.0f}, "
                  f"{f['amplitudes'][1]:.0f} of 8000); one usage record each")
        if not args.no_webrtc:
            run = args.runs + 1
            f = one_call(run, probe_bin, pg, database, redis, a, b, users[0], users[1], web=True)
            print(f"  run {run} (WebRTC callee): rang node-1 in {f['ring_ms']} ms; Bob's offer forwarded to node-0 "
                  f"and answered in {f['redirect_ms']} ms (ICE + DTLS included); Bob heard Alice "
                  f"{f['bob_hears_ms']} ms and Alice heard Bob {f['alice_hears_ms']} ms after that (tone "
                  f"amplitudes {f['amplitudes'][0]:.0f}, {f['amplitudes'][1]:.0f} of 8000); one usage record each")
        if not args.no_webrtc and not args.no_drop:
            run = args.runs + 2
            f = one_call(run, probe_bin, pg, database, redis, a, b, users[0], users[1], web=True, drop=True)
            print(f"  run {run} (WebRTC callee drops): Bob's probe killed on node-1 without hanging up; Alice on "
                  f"node-0 got call.ended (ConnectionLost) {f['dropped_ms']:.0f} ms later (reconnect grace "
                  f"{RECONNECT_GRACE_MS} ms, bound {DROP_BOUND_MS} ms); one usage record each")
    print(f"calls: all checks passed in {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
