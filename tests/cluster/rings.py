#!/usr/bin/env python3
"""Rings and presence across nodes: two palaver nodes sharing a private PostgreSQL and Redis
(cluster_fixture.py); Alice's socket is on node-0, Bob's on node-1 (WSS, protocol v1).

Checks:
- presence: Bob's node is in Redis' presence set for Bob (`palaver:presence:<raw id>`) once
  his socket is open, and leaves it when the socket closes;
- a 1:1 call Alice places on node-0 rings Bob on node-1 (`call.incoming`); Bob's
  `call.decline` (sent to node-1) reaches the call on node-0: Bob's answer is `ack` and Alice
  gets `call.ended` with reason `declined`;
- Alice calls again, Bob accepts: both get `call.connected`; Alice hangs up and Bob gets
  `call.ended`;
- Alice calls and cancels before Bob answers: Bob gets `call.ended` (`cancelled`);
- busy across nodes, as on one node: Bob in a call that runs on node-1 (Dave, also on node-1,
  called him) is `Busy` when Alice calls him from node-0 (`call.place` refused, no ring); Bob
  in a call that runs on node-0 (Alice called him, he accepted on node-1) is `Busy` when Dave
  calls him from node-1; once that call is over, Dave's call rings Bob again;
- a node's subscriber connection lost (`CLIENT KILL TYPE pubsub`) just before a ring: the
  ring published while nobody hears node-1's channel is published again until node-1 has
  subscribed again, so Bob is still rung (before the fix it was lost every time);
- with Redis killed, a ring reaches only the caller's node (Carol on node-0 is rung, Bob on
  node-1 is not: the documented degradation), and after Redis is restarted presence comes
  back within the refresh period and rings cross nodes again, for a ring placed the moment
  presence is back (presence is announced only once the node's subscriber is subscribed
  again; before the fix that ring was lost in 1/3–3/4 of runs under load), five times.

Usage: rings.py --binary PATH
"""

import argparse
import os
import sys
import time

from cluster_fixture import cluster, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "sdk"))
sys.path.insert(0, os.path.join(ROOT, "tests", "trials"))
from azure.communication.identity import CommunicationIdentityClient, CommunicationTokenScope  # noqa: E402
from signaling_participant import SignalingParticipant  # noqa: E402
from support import check  # noqa: E402

RING_WAIT_S = 5.0


def host(node):
    return node.url.split("://", 1)[1].rstrip("/")


def frames_until(ws, wanted, timeout):
    """The first frame of type `wanted` (other frames are skipped), or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = ws.recv(deadline - time.monotonic())
        if frame and frame.get("type") == wanted:
            return frame
    return None


def place(ws, target):
    ws.send({"type": "call.place", "requestId": "p", "targets": [target]})
    placed = frames_until(ws, "call.placed", RING_WAIT_S)
    check("the call is placed", placed, placed)
    return placed["callId"]


def place_refused(ws, target):
    """`call.place` to `target`, expected refused: the error frame, or ("placed", call id)."""
    ws.send({"type": "call.place", "requestId": "busy", "targets": [target]})
    deadline = time.monotonic() + RING_WAIT_S
    while time.monotonic() < deadline:
        frame = ws.recv(deadline - time.monotonic())
        if frame and frame.get("type") == "call.placed":
            return ("placed", frame["callId"])
        if frame and frame.get("type") == "error" and frame.get("requestId") == "busy":
            return frame
    return None


def place_when_free(ws, target, timeout=5.0):
    """Places a call to `target`, retrying while it is refused Busy (the engagement of a call
    that just ended is deleted in the background): the call id, or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = place_refused(ws, target)
        if isinstance(answer, tuple):
            return answer[1]
        time.sleep(0.1)
    return None


def busy_across_nodes(redis, nodes, alice, bob, dave, bob_id, dave_id):
    """Bob busy in a call on either node is busy for a caller on the other one."""
    engaged_on = lambda: redis.cli("GET", f"palaver:engaged:{bob_id}").strip()  # noqa: E731
    # A call that runs on node-1 (Dave's socket is there): Alice on node-0 finds Bob busy.
    call_id = place(dave, bob_id)
    check("Dave's call rings Bob (both on node-1)", frames_until(bob, "call.incoming", RING_WAIT_S), None)
    bob.send({"type": "call.accept", "requestId": "a1", "callId": call_id})
    check("Bob is connected with Dave", frames_until(bob, "call.connected", RING_WAIT_S), None)
    check("Redis: Bob engaged on node-1", wait_for(lambda: engaged_on() == nodes[1].name, 5), engaged_on())
    t0 = time.monotonic()
    refused = place_refused(alice, bob_id)
    busy_ms = (time.monotonic() - t0) * 1000
    check("busy: Alice on node-0 calling Bob, in a call on node-1, is refused Busy",
          isinstance(refused, dict) and refused.get("code") == "Busy", refused)
    check("busy: Bob is not rung", not frames_until(bob, "call.incoming", 1.0), None)
    print(f"  busy: Bob in a call on node-1 is Busy for a call placed on node-0 (answered in {busy_ms:.0f} ms)")
    dave.send({"type": "call.hangUp", "requestId": "h1", "callId": call_id})
    check("Bob's call with Dave ends", frames_until(bob, "call.ended", RING_WAIT_S), None)
    # A call that runs on node-0 (Alice placed it): Dave on node-1 finds Bob busy.
    call_id = place_when_free(alice, bob_id)
    check("free again: Alice's call to Bob is placed", call_id, None)
    incoming = frames_until(bob, "call.incoming", RING_WAIT_S)
    check("free again: Alice's call rings Bob across nodes", incoming and incoming["callId"] == call_id, incoming)
    bob.send({"type": "call.accept", "requestId": "a2", "callId": call_id})
    check("Bob is connected with Alice (the call runs on node-0)", frames_until(bob, "call.connected", RING_WAIT_S), None)
    check("Redis: Bob engaged on node-0", wait_for(lambda: engaged_on() == nodes[0].name, 5), engaged_on())
    refused = place_refused(dave, bob_id)
    check("busy: Dave on node-1 calling Bob, in a call on node-0, is refused Busy",
          isinstance(refused, dict) and refused.get("code") == "Busy", refused)
    refused = place_refused(bob, dave_id)
    check("busy: Bob, in a call on node-0, cannot place another from node-1 (as on one node)",
          isinstance(refused, dict) and refused.get("code") == "InvalidState", refused)
    alice.send({"type": "call.hangUp", "requestId": "h2", "callId": call_id})
    check("Bob's call with Alice ends", frames_until(bob, "call.ended", RING_WAIT_S), None)
    call_id = place_when_free(dave, bob_id)
    check("free again: Dave's call rings Bob", call_id and frames_until(bob, "call.incoming", RING_WAIT_S), call_id)
    dave.send({"type": "call.cancel", "requestId": "c5", "callId": call_id})
    check("Dave's last call is cancelled", frames_until(bob, "call.ended", RING_WAIT_S), None)
    print("  busy: Bob in a call on node-0 is Busy for node-1, and free once it ends")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True)
    args = parser.parse_args()
    started = time.time()
    with cluster(args.binary, 2) as (pg, database, redis, nodes):
        a, b = nodes
        identity = CommunicationIdentityClient.from_connection_string(a.conn_str, connection_verify=a.ca)
        users = {}
        for name in ("alice", "bob", "carol", "dave"):
            user, token = identity.create_user_and_token(scopes=[CommunicationTokenScope.VOIP])
            users[name] = (user.properties["id"], token.token)
        alice = SignalingParticipant(host(a), a.ca, users["alice"][1])
        bob = SignalingParticipant(host(b), b.ca, users["bob"][1])
        bob_id = users["bob"][0]
        presence = lambda raw: set(redis.cli("SMEMBERS", f"palaver:presence:{raw}").split())  # noqa: E731
        check("presence: Bob's socket on node-1 is seen in Redis", wait_for(lambda: presence(bob_id) == {b.name}, 5),
              presence(bob_id))
        check("presence: Alice's socket on node-0 is seen in Redis",
              wait_for(lambda: presence(users["alice"][0]) == {a.name}, 5), presence(users["alice"][0]))

        # Decline.
        t0 = time.monotonic()
        call_id = place(alice, bob_id)
        incoming = frames_until(bob, "call.incoming", RING_WAIT_S)
        ring_ms = (time.monotonic() - t0) * 1000
        check("a call placed on node-0 rings Bob on node-1", incoming and incoming["callId"] == call_id, incoming)
        bob.send({"type": "call.decline", "requestId": "d", "callId": call_id})
        check("Bob's decline on node-1 is acknowledged by the call on node-0", frames_until(bob, "ack", RING_WAIT_S), None)
        ended = frames_until(alice, "call.ended", RING_WAIT_S)
        check("Alice hears the decline", ended and ended.get("reason") == "declined", ended)
        print(f"  decline: rang across nodes in {ring_ms:.0f} ms, declined")

        # Accept, then hang up.
        call_id = place(alice, bob_id)
        incoming = frames_until(bob, "call.incoming", RING_WAIT_S)
        check("the second call rings Bob on node-1", incoming and incoming["callId"] == call_id, incoming)
        bob.send({"type": "call.accept", "requestId": "a", "callId": call_id})
        check("Bob's accept on node-1 is acknowledged", frames_until(bob, "ack", RING_WAIT_S), None)
        check("Bob gets call.connected", frames_until(bob, "call.connected", RING_WAIT_S), None)
        check("Alice gets call.connected", frames_until(alice, "call.connected", RING_WAIT_S), None)
        alice.send({"type": "call.hangUp", "requestId": "h", "callId": call_id})
        ended = frames_until(bob, "call.ended", RING_WAIT_S)
        check("Bob on node-1 gets call.ended when Alice hangs up", ended and ended["callId"] == call_id, ended)
        print("  accept: connected across nodes, hung up")

        # Cancel before the answer.
        call_id = place(alice, bob_id)
        check("the third call rings Bob", frames_until(bob, "call.incoming", RING_WAIT_S), None)
        alice.send({"type": "call.cancel", "requestId": "c", "callId": call_id})
        ended = frames_until(bob, "call.ended", RING_WAIT_S)
        check("Bob on node-1 sees the cancel", ended and ended["callId"] == call_id and ended.get("reason") == "cancelled", ended)
        print("  cancel: Bob's ring ended as cancelled")

        dave = SignalingParticipant(host(b), b.ca, users["dave"][1])
        busy_across_nodes(redis, nodes, alice, bob, dave, bob_id, users["dave"][0])
        dave.close()

        # Bob's node loses its subscriber connection just before a ring.
        killed = redis.cli("CLIENT", "KILL", "TYPE", "pubsub")
        t0 = time.monotonic()
        call_id = place(alice, bob_id)
        incoming = frames_until(bob, "call.incoming", RING_WAIT_S)
        ring_ms = (time.monotonic() - t0) * 1000
        check("subscriber lost: the ring reaches Bob once node-1 has subscribed again",
              incoming and incoming["callId"] == call_id, incoming)
        alice.send({"type": "call.cancel", "requestId": "c6", "callId": call_id})
        check("subscriber lost: the cancel reaches Bob after the ring", frames_until(bob, "call.ended", RING_WAIT_S), None)
        print(f"  subscriber lost ({killed} pubsub connections killed): rang across nodes after {ring_ms:.0f} ms")

        # Redis down: rings stay on the caller's node.
        carol = SignalingParticipant(host(a), a.ca, users["carol"][1])
        redis.kill()
        call_id = place(alice, users["carol"][0])
        check("Redis down: Carol on the caller's node is rung", frames_until(carol, "call.incoming", RING_WAIT_S), None)
        alice.send({"type": "call.cancel", "requestId": "c2", "callId": call_id})
        call_id = place(alice, bob_id)
        check("Redis down: Bob on the other node is not rung (same-node only)", not frames_until(bob, "call.incoming", 2.0), None)
        alice.send({"type": "call.cancel", "requestId": "c3", "callId": call_id})
        redis.start()
        restarted = time.monotonic()
        back = wait_for(lambda: presence(bob_id) == {b.name}, 15)
        check("Redis back: Bob's presence is announced again", back, presence(bob_id))
        print(f"  redis: rings stayed on node-0 while it was down; presence back {time.monotonic() - restarted:.1f} s after the restart")
        ring_ms = []
        for i in range(5):
            t0 = time.monotonic()
            call_id = place(alice, bob_id)
            incoming = frames_until(bob, "call.incoming", RING_WAIT_S)
            ring_ms.append((time.monotonic() - t0) * 1000)
            check(f"Redis back: rings cross nodes again (ring {i + 1} of 5)",
                  incoming and incoming["callId"] == call_id, incoming)
            alice.send({"type": "call.cancel", "requestId": f"c4-{i}", "callId": call_id})
            check("Redis back: the cancel reaches Bob", frames_until(bob, "call.ended", RING_WAIT_S), None)
        print(f"  redis back: 5 rings crossed nodes (ms: {', '.join(f'{m:.0f}' for m in ring_ms)})")

        bob.close()
        check("presence: Bob's node leaves the set when his socket closes", wait_for(lambda: not presence(bob_id), 5),
              presence(bob_id))
        for ws in (alice, carol):
            ws.close()
    print(f"rings: all checks passed in {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
