#!/usr/bin/env python3
"""Media of a 1:1 call whose ring crossed nodes: three palaver nodes sharing a private
PostgreSQL and Redis (cluster_fixture.py; node-2 only in the last two steps). Alice is a QUIC client (`call_probe`, palaver-client) on
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

A third node (node-2) holds another socket of Bob's: once more Bob answers on WebRTC on node-1,
and once the call runs he also connects on node-2 (which never heard of the call). His probe on
node-1 is killed: past the grace node-1 tells node-0 his sockets there are gone, but his presence
names node-2, so the call goes on (before the fix node-0 ended his part then) and node-0 asks
node-2 to watch; when his node-2 socket closes too, node-2 tells node-0 past its grace and Alice
gets `call.ended` (`ConnectionLost`) within `DROP_BOUND_MS` of that close.

Last, a Call Automation move (signaling only, WebSocket clients): Alice on node-0 calls Bob, who
answers on node-1; an application on node-0 connected to a group call homed on node-0 (Carol
started it) moves Bob into it (`participants:moveHere`, `fromCall` = the call's id). Node-0 runs
the call but Bob's answering socket is on node-1: node-0 sends the move to node-1, whose socket
gets `call.moved` and then `joined` (relayed to the group call's home, node-0); Alice gets
`call.ended` and the connection lists Bob. Before the fix node-0 looked for Bob's socket among
its own and nothing happened.

Usage: calls.py --binary PATH [--probe PATH] [--runs N] [--no-webrtc] [--no-drop] [--no-move]
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid

from cluster_fixture import cluster, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "sdk"))
sys.path.insert(0, os.path.join(ROOT, "tests", "trials"))
from azure.communication.callautomation import CallAutomationClient  # noqa: E402
from azure.communication.identity import (  # noqa: E402
    CommunicationIdentityClient, CommunicationTokenScope, CommunicationUserIdentifier)
from signaling_participant import SignalingParticipant  # noqa: E402
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


def host(node):
    return node.url.split("://", 1)[1].rstrip("/")


def one_call(run, probe_bin, pg, database, redis, a, b, alice, bob, web=False, drop=False, third=None):
    """Alice (QUIC, node-0) calls Bob (QUIC, or WebRTC when `web`, on node-1); with `third`
    (and `drop`) Bob also connects on that node once the call runs."""
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
        return checked_call(run, pg, database, redis, (a, b, third), alice, bob, web, alice_probe, bob_probe, presence,
                            drop)
    finally:
        alice_probe.stop()
        bob_probe.stop()


def checked_call(run, pg, database, redis, nodes, alice, bob, web, alice_probe, bob_probe, presence, drop):
    a, b, third = nodes
    dropped_ms = outlived_ms = None
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
        if drop and third is not None:
            killed_ms, outlived_ms = third_node_drop(run, alice, bob, alice_probe, bob_probe, presence, (b, third))
        elif drop:
            killed_ms = time.time() * 1000
            bob_probe.kill()
        if drop:
            ended = alice_probe.wait("ended", (DROP_BOUND_MS + 5000) / 1000)
            check(f"run {run}: Bob's dropped connection ends the call for Alice on node-0",
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
        "outlived_ms": outlived_ms,
    }
    for name, raw in (("Alice", alice[0]), ("Bob", bob[0])):
        session = f"{placed['callId']}/{raw}"
        got = billed(pg, database, session)
        check(f"run {run}: {name}'s call session is closed and billed once", got and got[0] == 1 and got[1] == got[2],
              (session, got))
    return figures


def third_node_drop(run, alice, bob, alice_probe, bob_probe, presence, nodes):
    """Bob connects on node-2 too, his node-1 probe is killed and the call must go on past the
    grace; then his node-2 socket closes. Returns (ms of that close, ms the call outlived the
    kill of his answering probe)."""
    b, c = nodes
    other = SignalingParticipant(host(c), c.ca, bob[1])
    try:
        check(f"run {run}: Bob's presence is node-1 and node-2",
              wait_for(lambda: presence() == {b.name, c.name}, 5), presence())
        killed_ms = time.time() * 1000
        bob_probe.kill()
        check(f"run {run}: Bob's presence is node-2 once his node-1 probe is gone",
              wait_for(lambda: presence() == {c.name}, 5), presence())
        time.sleep((RECONNECT_GRACE_MS + 1500) / 1000)
        check(f"run {run}: the call goes on past node-1's grace: Bob is still connected on node-2",
              not alice_probe.first("ended"), alice_probe.events)
        outlived_ms = time.time() * 1000 - killed_ms
    finally:
        closed_ms = time.time() * 1000
        other.close()
    return closed_ms, outlived_ms


def moved_across_nodes(pg, database, nodes, alice, bob, carol):
    """A Call Automation move of Bob, who answered on node-1, from a call running on node-0
    into a group call homed on node-0. Returns ms from the move request to Bob's `joined`."""
    a, b = nodes[0], nodes[1]
    alice_ws = SignalingParticipant(host(a), a.ca, alice[1])
    bob_ws = SignalingParticipant(host(b), b.ca, bob[1])
    carol_ws = None
    try:
        # A group call homed on node-0, where the application connects (a connection lives on
        # the node its requests reach); Carol starts it from node-0 (placement picks the home
        # by load: new group ids until one lands there; a relayed socket cannot join again).
        group = None
        for _ in range(12):
            candidate = str(uuid.uuid4())
            carol_ws = SignalingParticipant(host(a), a.ca, carol[1])
            carol_ws.join_group_call(candidate)
            home = pg.scalar(database, "SELECT home_node FROM cluster_homes "
                                       f"WHERE conversation_id = 'groupCall:{candidate}'")
            if home == a.name:
                group = candidate
                break
            carol_ws.close()
        check("move: a group call homed on node-0", group, None)
        app = CallAutomationClient.from_connection_string(a.conn_str, connection_verify=a.ca)
        props = app.connect_call(callback_url="https://127.0.0.1:9/cb", group_call_id=group)
        connection = app.get_call_connection(props.call_connection_id)
        in_group = lambda: {p.identifier.raw_id for p in connection.list_participants()}  # noqa: E731
        check("move: the application is connected to the group call with Carol",
              wait_for(lambda: carol[0] in in_group(), 5), in_group())
        alice_ws.send({"type": "call.place", "requestId": "p", "targets": [bob[0]]})
        call_id = alice_ws.wait_for("call.placed", 5)["callId"]
        ring = bob_ws.wait_for("call.incoming", 5)
        check("move: Alice's call (node-0) rings Bob on node-1", ring["callId"] == call_id, ring)
        bob_ws.send({"type": "call.accept", "requestId": "a", "callId": call_id})
        bob_ws.wait_for("call.connected", 5)
        alice_ws.wait_for("call.connected", 5)
        started = time.monotonic()
        result = connection.move_participants([CommunicationUserIdentifier(bob[0])], call_id)
        check("move: move_participants is accepted and echoes fromCall", result.from_call == call_id, vars(result))
        moved = bob_ws.wait_for("call.moved", 5)
        check("move: Bob's socket on node-1 gets call.moved naming the group call",
              moved["callId"] == call_id and moved["join"] == {"kind": "groupCall", "groupId": group}, moved)
        joined = bob_ws.wait_for("joined", 5)
        joined_ms = (time.monotonic() - started) * 1000
        check("move: Bob is joined into the group call (relayed to its home, node-0)",
              joined["snapshot"]["conversationId"] == carol_ws.conversation_id, joined["snapshot"]["conversationId"])
        ended = alice_ws.wait_for("call.ended", 5)
        check("move: Alice's call with Bob is over", ended["callId"] == call_id, ended)
        check("move: the application's connection lists Bob", wait_for(lambda: bob[0] in in_group(), 5), in_group())
        connection.hang_up(is_for_everyone=False)
        return joined_ms
    finally:
        for ws in (alice_ws, bob_ws, carol_ws):
            if ws is not None:
                ws.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--probe")
    parser.add_argument("--runs", type=int, default=2, help="calls with a QUIC callee")
    parser.add_argument("--no-webrtc", action="store_true", help="skip the calls with a WebRTC callee")
    parser.add_argument("--no-drop", action="store_true", help="skip the calls whose WebRTC callee drops")
    parser.add_argument("--no-move", action="store_true", help="skip the Call Automation move across nodes")
    parser.add_argument("--log-level", default="warn", help="the nodes' log level (their logs go to stderr)")
    args = parser.parse_args()
    probe_bin = args.probe or os.path.join(os.path.dirname(args.binary), "examples", "call_probe")
    started = time.time()
    grace = f"[signaling.gateway]\nreconnect_grace_ms = {RECONNECT_GRACE_MS}\n"
    with cluster(args.binary, 3, log_level=args.log_level, extra=grace) as (pg, database, redis, nodes):
        a, b, c = nodes
        identity = CommunicationIdentityClient.from_connection_string(a.conn_str, connection_verify=a.ca)
        users = []
        for _ in range(3):
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
            run = args.runs + 3
            f = one_call(run, probe_bin, pg, database, redis, a, b, users[0], users[1], web=True, drop=True, third=c)
            print(f"  run {run} (WebRTC callee drops, still connected on node-2): the call went on "
                  f"{f['outlived_ms']:.0f} ms past the kill of Bob's node-1 probe; Alice got call.ended "
                  f"(ConnectionLost) {f['dropped_ms']:.0f} ms after his node-2 socket closed; one usage record each")
        if not args.no_move:
            joined_ms = moved_across_nodes(pg, database, nodes, users[0], users[1], users[2])
            print(f"  move: Bob (answered on node-1) moved by Call Automation on node-0 into a group call homed "
                  f"on node-0: joined {joined_ms:.0f} ms after move_participants")
    print(f"calls: all checks passed in {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
