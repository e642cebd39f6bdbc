#!/usr/bin/env python3
"""Two palaver nodes on one machine sharing one private PostgreSQL and one private Redis.

Checks, with the official SDKs where there is one:
- both nodes announce themselves in the Redis node registry, with their load;
- a user and token made on node A work on node B (shared identities and signing keys);
- a room and a chat thread made on node A are read on node B (shared stores);
- a token revoked on node A is refused by node B (Redis invalidation); the time from the
  revoke's answer to B's first refusal is printed;
- node B killed with SIGKILL drops out of the registry when its announcement expires.

Usage: two_nodes.py --binary PATH
"""

import argparse
import os
import signal
import sys
import tempfile
import time

from cluster_fixture import ClusterNode, registry, wait_for
from pg_fixture import private_postgres, private_redis

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "sdk"))

from azure.communication.chat import ChatClient, CommunicationTokenCredential  # noqa: E402
from azure.communication.identity import CommunicationIdentityClient, CommunicationTokenScope  # noqa: E402
from azure.communication.rooms import RoomsClient  # noqa: E402
from support import check  # noqa: E402

# The bound for B refusing a revoked token: the issue asks for one second; the wait allows
# for the loaded 2-core machine (the measured time is printed).
REFUSAL_WAIT_S = 3.0
# A killed node's announcement expires after 3 s (NODE_TTL_MS); allow for the machine.
EXPIRY_WAIT_S = 10.0


def Node(binary, name, config):
    """One palaver process with its own (removed on stop) data directory and config."""
    return ClusterNode(binary, name, tempfile.mkdtemp(prefix=f"palaver-{name}-"), config, remove_dir=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True)
    args = parser.parse_args()
    started = time.time()
    with private_postgres() as pg, private_redis() as redis:
        database = pg.fresh_database()

        def config(node_id):
            return (f'[cluster]\npostgres_url = "{pg.url(database)}"\nnode_id = "{node_id}"\n'
                    f'redis_url = "{redis.url()}"\n')

        a = Node(args.binary, "node-a", config("node-a"))
        b = None
        try:
            b = Node(args.binary, "node-b", config("node-b"))
            print(f"node-a at {a.url}, node-b at {b.url}, PostgreSQL :{pg.port}, Redis :{redis.port}")
            check("both nodes announce themselves in the registry",
                  wait_for(lambda: set(registry(redis)) == {"node-a", "node-b"}, 10), registry(redis))
            check("an announcement carries the node's load", registry(redis)["node-a"]["conversations"] == 0)

            identity_a = CommunicationIdentityClient.from_connection_string(a.conn_str, connection_verify=a.ca)
            user, token = identity_a.create_user_and_token(scopes=[CommunicationTokenScope.CHAT])
            check("a token issued by node A works on node B", b.status(token.token, "/chat/threads?api-version=2024-03-07") == 200)

            rooms_a = RoomsClient.from_connection_string(a.conn_str, connection_verify=a.ca)
            rooms_b = RoomsClient.from_connection_string(b.conn_str, connection_verify=b.ca)
            room = rooms_a.create_room()
            check("a room made on node A is read on node B", rooms_b.get_room(room.id).id == room.id)

            # The chat SDK's thread clients verify with REQUESTS_CA_BUNDLE (as chat_compat.py
            # does); each node has its own self-signed CA, so trust both.
            bundle = os.path.join(a.dir, "both-cas.pem")
            with open(bundle, "w") as out:
                out.write(open(a.ca).read() + open(b.ca).read())
            os.environ["REQUESTS_CA_BUNDLE"] = bundle
            chat_a = ChatClient(a.url, CommunicationTokenCredential(token.token))
            chat_b = ChatClient(b.url, CommunicationTokenCredential(token.token))
            thread = chat_a.create_chat_thread("two nodes").chat_thread
            chat_a.get_chat_thread_client(thread.id).send_message("from A")
            seen = [m.content.message for m in chat_b.get_chat_thread_client(thread.id).list_messages() if m.type == "text"]
            check("a chat message sent on node A is read on node B", seen == ["from A"], seen)

            identity_a.revoke_tokens(user)
            revoked_at = time.time()
            refused = wait_for(lambda: b.status(token.token, "/chat/threads?api-version=2024-03-07") == 401, REFUSAL_WAIT_S)
            latency_ms = (time.time() - revoked_at) * 1000
            print(f"  node B refused the token revoked on node A {latency_ms:.0f} ms after the revoke answered")
            check("a token revoked on node A is refused by node B", refused, f"after {latency_ms:.0f} ms")

            b.stop(signal.SIGKILL)
            killed_at = time.time()
            gone = wait_for(lambda: set(registry(redis)) == {"node-a"}, EXPIRY_WAIT_S)
            print(f"  node B left the registry {(time.time() - killed_at) * 1000:.0f} ms after SIGKILL")
            check("a killed node drops out of the registry", gone, registry(redis))
        finally:
            if b is not None:
                b.stop()
            a.stop()
            check("node A stopped on SIGTERM with status 0", a.proc.returncode == 0, a.proc.returncode)
    print(f"two_nodes: all checks passed in {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
